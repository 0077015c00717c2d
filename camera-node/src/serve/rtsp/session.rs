//! An RTSP session: one client watching one camera over one transport, and
//! the task that streams to it between PLAY and PAUSE or TEARDOWN.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fanout::socket::UnsentCap;
use fanout::tcp::WRITE_STALL_LIMIT;
use fanout::{Frame, Reader};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::send::{self, UdpSender};
use super::{RtspCamera, RtspServer};
use crate::rtp::{Packets, RtpStream};

/// How often a playing session gets an RTCP sender report.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The write half of a client connection, shared by replies and the
/// interleaved RTP of its sessions; each holds it for one whole message.
pub type SharedWriter = Arc<tokio::sync::Mutex<ConnWriter>>;

/// An RTSP connection's writing half with its socket's unsent cap: one of
/// each per connection, whichever of its sessions writes.
#[derive(Debug)]
pub struct ConnWriter {
    pub half: OwnedWriteHalf,
    pub cap: UnsentCap,
}

#[derive(Debug, Clone)]
pub enum Transport {
    /// RTP and RTCP interleaved in the RTSP connection (`$` framing).
    Tcp {
        writer: SharedWriter,
        channel: u8,
        /// Cancelled when the stream cannot be written: ends the connection.
        conn_closing: CancellationToken,
    },
    /// RTP and RTCP to the client's ports from a pair of our own.
    Udp {
        rtp: Arc<UdpSocket>,
        rtcp: Arc<UdpSocket>,
    },
}

#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub camera: Arc<RtspCamera>,
    /// The connection that set it up.
    pub conn: u64,
    /// The URL SETUP named, for RTP-Info.
    pub track_url: String,
    /// The Transport header of the SETUP reply.
    pub transport_reply: String,
    transport: Transport,
    last_seen: Arc<Mutex<Instant>>,
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug)]
struct Parts {
    stream: RtpStream,
    reader: Reader,
}

#[derive(Debug)]
enum State {
    Ready(Parts),
    Playing {
        stop: CancellationToken,
        task: JoinHandle<Parts>,
    },
    Closed,
}

impl Session {
    pub fn new(
        id: String,
        camera: Arc<RtspCamera>,
        conn: u64,
        track_url: String,
        transport: Transport,
        reader: Reader,
    ) -> Self {
        let stream = RtpStream::new();
        let transport_reply = match &transport {
            Transport::Tcp { channel, .. } => format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08X}",
                channel,
                channel.wrapping_add(1),
                stream.ssrc()
            ),
            Transport::Udp { rtp, rtcp } => {
                let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
                let peer = |s: &UdpSocket| s.peer_addr().map(|a| a.port()).unwrap_or(0);
                format!(
                    "RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={:08X}",
                    peer(rtp),
                    peer(rtcp),
                    port(rtp),
                    port(rtcp),
                    stream.ssrc()
                )
            }
        };
        Session {
            id,
            camera,
            conn,
            track_url,
            transport_reply,
            transport,
            last_seen: Arc::new(Mutex::new(Instant::now())),
            state: tokio::sync::Mutex::new(State::Ready(Parts { stream, reader })),
        }
    }

    pub fn camera_id(&self) -> &str {
        self.camera.hub.camera_id()
    }

    pub fn is_udp(&self) -> bool {
        matches!(self.transport, Transport::Udp { .. })
    }

    /// A request or RTCP packet from the client: the session is alive.
    pub fn touch(&self) {
        *self.last_seen.lock().expect("session lock") = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        self.last_seen.lock().expect("session lock").elapsed()
    }

    /// The frame a PLAY starts with (the newest, waiting up to `wait` for
    /// a camera that is starting) and the RTP-Info for it: the sequence
    /// number and RTP time of its first packet.
    pub async fn prepare_play(&self, wait: Duration) -> Prepared {
        let mut state = self.state.lock().await;
        let State::Ready(parts) = &mut *state else {
            return Prepared::Playing;
        };
        parts.reader.seek_newest();
        match tokio::time::timeout(wait, parts.reader.next()).await {
            Err(_) => Prepared::NoFrame,
            Ok(first) => Prepared::Ready {
                rtp_seq: parts.stream.next_seq(),
                rtp_time: parts.stream.timestamp(first.captured_at_us),
                first,
            },
        }
    }

    /// Starts streaming with `first`, then each frame after it.
    pub async fn play(&self, server: Arc<RtspServer>, first: Frame) {
        let mut state = self.state.lock().await;
        let State::Ready(_) = &*state else {
            return;
        };
        let State::Ready(parts) = std::mem::replace(&mut *state, State::Closed) else {
            unreachable!("checked above");
        };
        let stop = CancellationToken::new();
        let out = Out {
            transport: self.transport.clone(),
            udp: UdpSender::default(),
        };
        let streaming = Streaming {
            server,
            camera: Arc::clone(&self.camera),
            out,
            last_seen: Arc::clone(&self.last_seen),
        };
        let span = tracing::info_span!("session", id = %self.id, camera = %self.camera_id());
        let task = tokio::spawn(streaming.run(parts, first, stop.clone()).instrument(span));
        *state = State::Playing { stop, task };
    }

    /// Stops streaming; the session can PLAY again.
    pub async fn pause(&self) {
        let mut state = self.state.lock().await;
        if let Some(parts) = stop_playing(&mut state).await {
            *state = State::Ready(parts);
        }
    }

    /// Stops streaming for good and frees the viewer slot.
    pub async fn close(&self) {
        let mut state = self.state.lock().await;
        stop_playing(&mut state).await;
        *state = State::Closed;
    }
}

/// What a PLAY request finds.
pub enum Prepared {
    Ready {
        first: Frame,
        rtp_seq: u16,
        rtp_time: u32,
    },
    /// The session plays already.
    Playing,
    /// The camera delivered no frame in time.
    NoFrame,
}

/// Ends the streaming task, if there is one, and returns what it held.
async fn stop_playing(state: &mut State) -> Option<Parts> {
    if !matches!(state, State::Playing { .. }) {
        return None;
    }
    let State::Playing { stop, task } = std::mem::replace(state, State::Closed) else {
        unreachable!("checked above");
    };
    stop.cancel();
    task.await
        .map_err(|e| tracing::error!("RTSP streaming task failed: {e}"))
        .ok()
}

/// Where a playing session's packets go.
struct Out {
    transport: Transport,
    udp: UdpSender,
}

struct Streaming {
    server: Arc<RtspServer>,
    camera: Arc<RtspCamera>,
    out: Out,
    last_seen: Arc<Mutex<Instant>>,
}

impl Streaming {
    async fn run(mut self, mut parts: Parts, first: Frame, stop: CancellationToken) -> Parts {
        let server = Arc::clone(&self.server);
        let camera = Arc::clone(&self.camera);
        let cname = format!("{}@{}", camera.hub.camera_id(), server.node_id);
        let mut report = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_millis(200),
            REPORT_EVERY,
        );
        let mut rtcp_in = vec![0u8; 2048];
        let mut next = Some(first);
        let mut sent = 0u64;
        loop {
            let frame = match next.take() {
                Some(frame) => frame,
                None => tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    frame = parts.reader.next() => frame,
                    _ = report.tick() => {
                        let sr = parts.stream.sender_report(SystemTime::now(), &cname);
                        if self.send_rtcp(&sr).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    got = recv_rtcp(&self.out, &mut rtcp_in) => {
                        if got.is_ok() {
                            *self.last_seen.lock().expect("session lock") = Instant::now();
                        }
                        continue;
                    }
                },
            };
            let Ok(packets) = camera.packets(&frame) else {
                continue;
            };
            let behind = parts.reader.is_behind();
            if self
                .send_rtp(&mut parts.stream, &packets, behind)
                .await
                .is_err()
            {
                break;
            }
            parts.reader.sent(&frame);
            sent += 1;
        }
        tracing::debug!(
            frames = sent,
            skipped = parts.reader.skipped(),
            "streaming stopped"
        );
        parts
    }

    async fn send_rtp(
        &mut self,
        stream: &mut RtpStream,
        packets: &Packets,
        behind: bool,
    ) -> Result<(), ()> {
        let Out { transport, udp } = &mut self.out;
        match transport {
            Transport::Tcp {
                writer,
                channel,
                conn_closing,
            } => {
                let framed = send::interleaved_headers(stream, packets, *channel);
                let mut w = writer.lock().await;
                let ConnWriter { half, cap } = &mut *w;
                let socket: &tokio::net::TcpStream = half.as_ref();
                let len = framed.len() * send::FRAMED_LEN + packets.payload_bytes();
                cap.fit(socket, len, behind);
                let written = send::write_frame(half, &framed, packets);
                finish_tcp(
                    tokio::time::timeout(WRITE_STALL_LIMIT, written).await,
                    conn_closing,
                )
            }
            Transport::Udp { rtp, .. } => {
                udp.send_frame(rtp, stream, packets).await;
                Ok(())
            }
        }
    }

    async fn send_rtcp(&mut self, packet: &[u8]) -> Result<(), ()> {
        match &self.out.transport {
            Transport::Tcp {
                writer,
                channel,
                conn_closing,
            } => {
                let mut framed = vec![b'$', channel.wrapping_add(1)];
                framed.extend_from_slice(&(packet.len() as u16).to_be_bytes());
                framed.extend_from_slice(packet);
                let mut w = writer.lock().await;
                let written = w.half.write_all(&framed);
                finish_tcp(
                    tokio::time::timeout(WRITE_STALL_LIMIT, written).await,
                    conn_closing,
                )
            }
            Transport::Udp { rtcp, .. } => {
                self.out.udp.send_one(rtcp, packet).await;
                Ok(())
            }
        }
    }
}

/// A write to an interleaved connection ended: a failure or a stall ends
/// the connection.
fn finish_tcp(
    written: Result<std::io::Result<()>, tokio::time::error::Elapsed>,
    conn_closing: &CancellationToken,
) -> Result<(), ()> {
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::info!("client gone: {e}");
            conn_closing.cancel();
            Err(())
        }
        Err(_) => {
            tracing::info!(
                "client dropped: took over {} s to accept one frame",
                WRITE_STALL_LIMIT.as_secs()
            );
            conn_closing.cancel();
            Err(())
        }
    }
}

async fn recv_rtcp(out: &Out, buf: &mut [u8]) -> std::io::Result<usize> {
    match &out.transport {
        Transport::Udp { rtcp, .. } => rtcp.recv(buf).await,
        Transport::Tcp { .. } => std::future::pending().await,
    }
}

/// A pair of UDP sockets on consecutive ports (even RTP, odd RTCP, as
/// RFC 3550 11 asks) on `ip`, connected to the client's two ports.
pub async fn bind_udp_pair(
    ip: IpAddr,
    client_rtp: SocketAddr,
    client_rtcp: SocketAddr,
) -> std::io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..32 {
        let rtp = UdpSocket::bind((ip, 0)).await?;
        let port = rtp.local_addr()?.port();
        if port % 2 == 1 || port == u16::MAX {
            continue;
        }
        let Ok(rtcp) = UdpSocket::bind((ip, port + 1)).await else {
            continue;
        };
        rtp.connect(client_rtp).await?;
        rtcp.connect(client_rtcp).await?;
        return Ok((rtp, rtcp));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free pair of UDP ports",
    ))
}
