//! Sending one frame's RTP packets to one session. The payloads are the
//! camera's, cut once ([`Packets`]); a session adds only its RTP headers.
//! Over TCP the whole frame is one vectored write (the shared payloads are
//! not copied); over UDP, segmentation offload (`UDP_SEGMENT`) hands the
//! kernel up to [`GSO_BATCH`] packets of one size per system call (a whole
//! MJPEG frame's, or each large H.264 NAL unit's fragments:
//! [`Packets::runs`]), with a fallback to one call per packet where the
//! kernel or the device lacks it.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::UdpSocket;

use crate::rtp::{Packets, RtpStream, RTP_HEADER};

/// Packets per segmented UDP send: the kernel takes at most 64 segments
/// and 64 KiB in one datagram; 40 packets of [`crate::rtp::MAX_PACKET`]
/// is 56 000 bytes.
pub const GSO_BATCH: usize = 40;

/// Most buffers one `writev` takes (`IOV_MAX` on Linux).
const MAX_IOV: usize = 1024;

/// Interleaved framing (`$`, channel, length; RFC 2326 10.12) and the
/// session's RTP header, per packet.
pub type Framed = [u8; FRAMED_LEN];
pub const FRAMED_LEN: usize = 4 + RTP_HEADER;

/// The framing and RTP headers of every packet of a frame for one session.
pub fn interleaved_headers(stream: &mut RtpStream, packets: &Packets, channel: u8) -> Vec<Framed> {
    let count = packets.len();
    (0..count)
        .map(|i| {
            let payload = packets.payload_len(i);
            let mut framed = [0u8; 4 + RTP_HEADER];
            framed[0] = b'$';
            framed[1] = channel;
            framed[2..4].copy_from_slice(&((RTP_HEADER + payload) as u16).to_be_bytes());
            framed[4..].copy_from_slice(&stream.header(
                packets.payload_type,
                packets.captured_at_us,
                i + 1 == count,
                payload,
            ));
            framed
        })
        .collect()
}

/// Writes a frame on an interleaved connection: vectored, whole.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    framed: &[Framed],
    packets: &Packets,
) -> io::Result<()> {
    let mut slices = Vec::with_capacity(framed.len() * 3);
    for (i, header) in framed.iter().enumerate() {
        slices.push(IoSlice::new(header));
        for part in packets.payload(i) {
            if !part.is_empty() {
                slices.push(IoSlice::new(part));
            }
        }
    }
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let end = rest.len().min(MAX_IOV);
        let n = writer.write_vectored(&rest[..end]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// A UDP session's sending state. UDP is fire and forget: a vanished
/// client shows as refused sends until its session times out; logged once
/// per run of failures.
#[derive(Debug, Default)]
pub struct UdpSender {
    /// Segmentation offload failed once: one packet per call from then on.
    no_gso: bool,
    failing: bool,
}

impl UdpSender {
    pub async fn send_frame(
        &mut self,
        socket: &UdpSocket,
        stream: &mut RtpStream,
        packets: &Packets,
    ) {
        let count = packets.len();
        let headers: Vec<[u8; RTP_HEADER]> = (0..count)
            .map(|i| {
                stream.header(
                    packets.payload_type,
                    packets.captured_at_us,
                    i + 1 == count,
                    packets.payload_len(i),
                )
            })
            .collect();
        for run in packets.runs(GSO_BATCH) {
            let sent = if self.no_gso || run.len() == 1 {
                self.send_each(socket, &headers, packets, run).await
            } else {
                let segment = (RTP_HEADER + packets.payload_len(run.start)) as u16;
                let slices = gather(&headers, packets, run.clone());
                match send(socket, &slices, Some(segment)).await {
                    Err(e) if gso_unsupported(&e) => {
                        tracing::info!(
                            "UDP segmentation offload unavailable ({e}): sending packet by packet"
                        );
                        self.no_gso = true;
                        self.send_each(socket, &headers, packets, run).await
                    }
                    other => other,
                }
            };
            if !self.outcome(sent) {
                return; // the rest of this frame would fail the same way
            }
        }
    }

    /// An RTCP packet.
    pub async fn send_one(&mut self, socket: &UdpSocket, packet: &[u8]) {
        let sent = send(socket, &[IoSlice::new(packet)], None).await;
        self.outcome(sent);
    }

    async fn send_each(
        &self,
        socket: &UdpSocket,
        headers: &[[u8; RTP_HEADER]],
        packets: &Packets,
        range: std::ops::Range<usize>,
    ) -> io::Result<()> {
        for i in range {
            send(socket, &gather(headers, packets, i..i + 1), None).await?;
        }
        Ok(())
    }

    fn outcome(&mut self, sent: io::Result<()>) -> bool {
        match sent {
            Ok(()) => {
                self.failing = false;
                true
            }
            Err(e) => {
                if !self.failing {
                    tracing::debug!("UDP send failed: {e}");
                    self.failing = true;
                }
                false
            }
        }
    }
}

/// The buffers of packets `range`: each one's RTP header, payload headers
/// and scan data, back to back.
fn gather<'a>(
    headers: &'a [[u8; RTP_HEADER]],
    packets: &'a Packets,
    range: std::ops::Range<usize>,
) -> Vec<IoSlice<'a>> {
    let mut slices = Vec::with_capacity(range.len() * 3);
    for i in range {
        slices.push(IoSlice::new(&headers[i]));
        for part in packets.payload(i) {
            if !part.is_empty() {
                slices.push(IoSlice::new(part));
            }
        }
    }
    slices
}

/// One `sendmsg` on a connected UDP socket, cut into `segment`-byte
/// datagrams by the kernel when given.
async fn send(socket: &UdpSocket, slices: &[IoSlice<'_>], segment: Option<u16>) -> io::Result<()> {
    let size = segment.unwrap_or(0);
    let gso = [ControlMessage::UdpGsoSegments(&size)];
    let cmsgs: &[ControlMessage<'_>] = if segment.is_some() { &gso } else { &[] };
    let fd = socket.as_raw_fd();
    loop {
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            sendmsg::<()>(fd, slices, cmsgs, MsgFlags::empty(), None).map_err(io::Error::from)
        });
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other.map(|_| ()),
        }
    }
}

/// Errors that mean "no segmentation offload here" rather than "the
/// client is gone".
fn gso_unsupported(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EIO | Errno::EINVAL | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// An IDR access unit of `idr` bytes with its SPS and PPS, then a
    /// P slice, in AVCC.
    fn access_unit(idr: usize) -> Bytes {
        let sps = vec![0x67, 0x42, 0xC0, 0x1F, 0xAB, 0x40];
        let pps = vec![0x68, 0xCE, 0x3C, 0x80];
        let slice = |kind: u8, len: usize| -> Vec<u8> {
            std::iter::once(kind)
                .chain((0..len).map(|i| (i % 251) as u8))
                .collect()
        };
        let mut out = Vec::new();
        for n in [sps, pps, slice(0x65, idr), slice(0x01, 3000)] {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(&n);
        }
        Bytes::from(out)
    }

    /// Segmentation offload must take the runs as they are cut: a wrong
    /// segment size would be refused (EINVAL) and quietly turn the session
    /// to one packet per call. Each datagram must arrive as its packet.
    #[tokio::test]
    async fn h264_runs_go_segmented_and_arrive_as_their_packets() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket
            .connect(receiver.local_addr().unwrap())
            .await
            .unwrap();
        // 60 kB: more fragments than one segmented send takes.
        let packets = Packets::h264(&access_unit(60_000), 1, 2);
        let runs: Vec<_> = packets.runs(GSO_BATCH).collect();
        assert!(runs.len() >= 4, "{runs:?}");
        let mut sender = UdpSender::default();
        sender
            .send_frame(&socket, &mut RtpStream::new(), &packets)
            .await;
        assert!(
            !sender.no_gso,
            "the kernel refused a segmented send (UDP_SEGMENT, Linux 4.18 or later)"
        );
        let mut buf = [0u8; 2048];
        for i in 0..packets.len() {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(5), receiver.recv(&mut buf))
                    .await
                    .expect("every packet arrives on loopback")
                    .unwrap();
            assert_eq!(n, RTP_HEADER + packets.payload_len(i), "packet {i}");
            assert_eq!(
                &buf[RTP_HEADER..n],
                packets.payload(i).concat(),
                "packet {i}"
            );
            let marker = buf[1] & 0x80 != 0;
            assert_eq!(marker, i + 1 == packets.len(), "marker of packet {i}");
        }
    }
}
