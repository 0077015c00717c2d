//! RTP for the RTSP server and the push: JPEG frames as RTP/JPEG packets
//! (RFC 2435), RTCP sender reports (RFC 3550), and a depacketiser that
//! checks the round trip in tests and fuzzing.

pub mod depacketise;
pub mod h264;
pub mod jpeg;

use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use shared::time::NTP_UNIX_OFFSET_S;

use self::jpeg::JpegScan;

/// RFC 3551's static payload type for JPEG.
pub const PAYLOAD_TYPE: u8 = 26;
/// The dynamic payload type the SDP gives H.264 (RFC 6184).
pub const H264_PAYLOAD_TYPE: u8 = 96;
pub const CLOCK_RATE: u32 = 90_000;
/// The largest RTP packet sent (header included): fits a 1500-byte
/// Ethernet MTU with IP and UDP headers and room for tunnels.
pub const MAX_PACKET: usize = 1400;

pub const RTP_HEADER: usize = 12;
const JPEG_HEADER: usize = 8;
const RESTART_HEADER: usize = 4;
const QUANT_HEADER: usize = 4 + 128;

/// A fresh random number (SSRCs, first sequence numbers, session ids).
pub fn random_u64() -> u64 {
    RandomState::new().hash_one(SystemTime::now())
}

/// One RTP stream to one client: its SSRC, sequence numbers and the
/// mapping from capture time to RTP time.
#[derive(Debug)]
pub struct RtpStream {
    ssrc: u32,
    next_seq: u16,
    /// RTP time at the Unix epoch; capture times map onto the 90 kHz clock
    /// from there, so RTP time and sender reports agree with the node clock.
    epoch_ts: u32,
    packets: u32,
    octets: u32,
}

impl Default for RtpStream {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpStream {
    pub fn new() -> Self {
        let r = random_u64();
        RtpStream {
            ssrc: r as u32,
            next_seq: (r >> 32) as u16,
            epoch_ts: random_u64() as u32,
            packets: 0,
            octets: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number of the next packet (for RTP-Info).
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// The RTP time of a capture time, microseconds since the Unix epoch.
    pub fn timestamp(&self, us: u64) -> u32 {
        self.epoch_ts.wrapping_add((us * 9 / 100) as u32)
    }

    /// The 12-byte RTP header for the next packet of a frame captured at
    /// `captured_at_us` whose payload is `payload_len` bytes; `last` sets
    /// the marker bit. Counts the packet for the sender reports.
    pub fn header(
        &mut self,
        payload_type: u8,
        captured_at_us: u64,
        last: bool,
        payload_len: usize,
    ) -> [u8; RTP_HEADER] {
        let mut header = [0u8; RTP_HEADER];
        header[0] = 0x80;
        header[1] = payload_type | if last { 0x80 } else { 0 };
        header[2..4].copy_from_slice(&self.next_seq.to_be_bytes());
        header[4..8].copy_from_slice(&self.timestamp(captured_at_us).to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.next_seq = self.next_seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        header
    }

    /// Cuts one frame into RTP packets of at most [`MAX_PACKET`] bytes and
    /// hands each to `packet` as its headers and its slice of scan data
    /// (tests and fuzzing; the server sends [`Packets`]).
    pub fn packetise(
        &mut self,
        frame: &JpegScan<'_>,
        captured_at_us: u64,
        mut packet: impl FnMut(&[u8], &[u8]),
    ) {
        let packets = Packets::build(frame, Bytes::copy_from_slice(frame.scan), 0, captured_at_us);
        let mut headers =
            Vec::with_capacity(RTP_HEADER + JPEG_HEADER + RESTART_HEADER + QUANT_HEADER);
        for i in 0..packets.len() {
            let [head, data] = packets.payload(i);
            let last = i + 1 == packets.len();
            headers.clear();
            headers.extend_from_slice(&self.header(
                packets.payload_type,
                captured_at_us,
                last,
                head.len() + data.len(),
            ));
            headers.extend_from_slice(head);
            packet(&headers, data);
        }
    }

    /// An RTCP compound packet: a sender report for `now` and the CNAME.
    pub fn sender_report(&self, now: SystemTime, cname: &str) -> Vec<u8> {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let ntp_seconds = (since_epoch.as_secs() + NTP_UNIX_OFFSET_S) as u32;
        let ntp_fraction = ((u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000) as u32;
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[0x80, 200, 0, 6]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&ntp_seconds.to_be_bytes());
        out.extend_from_slice(&ntp_fraction.to_be_bytes());
        out.extend_from_slice(&self.timestamp(since_epoch.as_micros() as u64).to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());
        // SDES with one chunk: SSRC, CNAME item, end, padding to 32 bits.
        let cname = &cname.as_bytes()[..cname.len().min(255)];
        let chunk_len = 4 + 2 + cname.len() + 1;
        let padded = chunk_len.div_ceil(4) * 4;
        out.extend_from_slice(&[0x81, 202]);
        out.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[1, cname.len() as u8]);
        out.extend_from_slice(cname);
        out.resize(out.len() + padded - chunk_len + 1, 0);
        out
    }
}

/// One frame cut into RTP payloads once, for every session to send with
/// its own RTP headers: per packet the payload headers and a slice of the
/// frame's data, which is shared, not copied. For RTP/JPEG (RFC 2435 3.1)
/// the headers are the JPEG header, the restart header and the tables in
/// the first, the data the scan; with its RTP header every packet but the
/// last is exactly [`MAX_PACKET`] bytes, as UDP segmentation offload needs.
/// For H.264 ([`h264`]) the headers are FU-A's two bytes, the data the NAL
/// units; a cut NAL unit's fragments are [`MAX_PACKET`] bytes but its last,
/// so [`Packets::runs`] sends them in runs of up to the batch it is given.
#[derive(Debug)]
pub struct Packets {
    /// The frame's sequence number (which frame these are, for caching).
    pub seq: u64,
    pub captured_at_us: u64,
    pub payload_type: u8,
    scan: Bytes,
    heads: Vec<u8>,
    /// Per packet: its range of `heads` and its range of `scan`.
    parts: Vec<(Range<usize>, Range<usize>)>,
}

impl Packets {
    /// `scan` holds the bytes of `frame.scan` (the frame's own buffer,
    /// sliced, on the server).
    pub fn build(frame: &JpegScan<'_>, scan: Bytes, seq: u64, captured_at_us: u64) -> Self {
        let count = scan
            .len()
            .div_ceil(MAX_PACKET - RTP_HEADER - JPEG_HEADER - RESTART_HEADER)
            .max(1)
            + 1;
        let mut heads = Vec::with_capacity(count * (JPEG_HEADER + RESTART_HEADER) + QUANT_HEADER);
        let mut parts = Vec::with_capacity(count);
        let mut offset = 0usize;
        loop {
            let start = heads.len();
            heads.push(0); // type-specific: progressive
            heads.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
            heads.push(frame.kind);
            heads.push(255); // Q: tables in band
            heads.push(frame.width.div_ceil(8) as u8);
            heads.push(frame.height.div_ceil(8) as u8);
            if frame.kind >= 64 {
                heads.extend_from_slice(&frame.restart_interval.to_be_bytes());
                // F = L = 1, count 0x3fff: packets are not aligned to restart intervals.
                heads.extend_from_slice(&[0xff, 0xff]);
            }
            if offset == 0 {
                heads.extend_from_slice(&[0, 0, 0, 128]);
                heads.extend_from_slice(frame.tables[0]);
                heads.extend_from_slice(frame.tables[1]);
            }
            let room = MAX_PACKET - RTP_HEADER - (heads.len() - start);
            let end = scan.len().min(offset + room);
            parts.push((start..heads.len(), offset..end));
            offset = end;
            if offset >= scan.len() {
                break;
            }
        }
        Packets {
            seq,
            captured_at_us,
            payload_type: PAYLOAD_TYPE,
            scan,
            heads,
            parts,
        }
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Packet `i`'s payload: its headers and its scan data.
    pub fn payload(&self, i: usize) -> [&[u8]; 2] {
        let (head, data) = &self.parts[i];
        [&self.heads[head.clone()], &self.scan[data.clone()]]
    }

    /// Payload bytes of every packet together.
    pub fn payload_bytes(&self) -> usize {
        self.heads.len() + self.scan.len()
    }

    pub fn payload_len(&self, i: usize) -> usize {
        let (head, data) = &self.parts[i];
        head.len() + data.len()
    }

    /// The packets cut into runs that UDP segmentation offload sends with
    /// one system call each: a run's packets are as long as its first, but
    /// its last may be shorter (the kernel cuts a datagram so), and a run
    /// holds at most `most` packets. Packets in order, every one in one run.
    /// Nothing is allocated: a session walks them per frame.
    pub fn runs(&self, most: usize) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= self.len() {
                return None;
            }
            let size = self.payload_len(start);
            let mut end = start + 1;
            while end < self.len() && end - start < most {
                let len = self.payload_len(end);
                if len > size {
                    break;
                }
                end += 1;
                if len < size {
                    break;
                }
            }
            let run = start..end;
            start = end;
            Some(run)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::depacketise::Depacketiser;
    use super::*;

    #[tokio::test]
    async fn frames_survive_the_round_trip_in_small_packets() {
        let jpeg = jpeg::tests::pattern_frame(640, 480).await;
        let scan = jpeg::parse(&jpeg).unwrap();
        let mut stream = RtpStream::new();
        let first_seq = stream.next_seq();
        let mut packets = Vec::new();
        stream.packetise(&scan, 1_700_000_000_000_000, |h, d| {
            packets.push([h, d].concat());
        });
        assert!(packets.len() > 3);
        assert!(packets.iter().all(|p| p.len() <= MAX_PACKET));
        let markers: Vec<bool> = packets.iter().map(|p| p[1] & 0x80 != 0).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(markers.last().unwrap());
        assert_eq!(
            u16::from_be_bytes([packets[0][2], packets[0][3]]),
            first_seq
        );

        let mut depacketiser = Depacketiser::default();
        let mut frames = Vec::new();
        for p in &packets {
            if let Some(frame) = depacketiser.push(p).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        assert_eq!(frame.timestamp, stream.timestamp(1_700_000_000_000_000));
        assert_eq!((frame.kind, frame.width, frame.height), (65, 640, 480));
        assert_eq!(frame.scan, scan.scan);
        let rebuilt = frame.to_jpeg();
        let decoded = image::load_from_memory(&rebuilt).unwrap();
        let original = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (640, 480));
        assert_eq!(decoded.to_rgb8().as_raw(), original.to_rgb8().as_raw());
    }

    #[tokio::test]
    async fn every_packet_but_the_last_fills_max_packet() {
        for (w, h) in [(640, 480), (1280, 720)] {
            let jpeg = jpeg::tests::pattern_frame(w, h).await;
            let scan = jpeg::parse(&jpeg).unwrap();
            let packets = Packets::build(&scan, Bytes::copy_from_slice(scan.scan), 0, 0);
            assert!(packets.len() > 2);
            let sizes: Vec<usize> = (0..packets.len())
                .map(|i| RTP_HEADER + packets.payload_len(i))
                .collect();
            let (last, full) = sizes.split_last().unwrap();
            assert!(full.iter().all(|&n| n == MAX_PACKET), "{sizes:?}");
            assert!(*last <= MAX_PACKET);
            let data: Vec<u8> = (0..packets.len())
                .flat_map(|i| packets.payload(i)[1].to_vec())
                .collect();
            assert_eq!(data, scan.scan);
        }
    }

    #[test]
    fn timestamps_follow_capture_time_at_90_khz() {
        let s = RtpStream::new();
        let t0 = 1_763_700_000_000_000u64;
        assert_eq!(
            s.timestamp(t0 + 1_000_000).wrapping_sub(s.timestamp(t0)),
            90_000
        );
        assert_eq!(
            s.timestamp(t0 + 33_333).wrapping_sub(s.timestamp(t0)),
            2_999
        );
    }

    #[test]
    fn sender_reports_are_whole_rtcp_packets() {
        let s = RtpStream::new();
        let sr = s.sender_report(SystemTime::now(), "cam0@pi-door");
        assert_eq!(sr.len() % 4, 0);
        let first = (usize::from(u16::from_be_bytes([sr[2], sr[3]])) + 1) * 4;
        assert_eq!((sr[1], first), (200, 28));
        let second = (usize::from(u16::from_be_bytes([sr[first + 2], sr[first + 3]])) + 1) * 4;
        assert_eq!((sr[first + 1], first + second), (202, sr.len()));
    }
}
