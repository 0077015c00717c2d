//! TCP frame protocol server: v1 (DESIGN.md) for an MJPEG camera, the
//! hello then a header and a JPEG per frame; v2 (docs/protocol.md) for an
//! H.264 camera, the codec configuration then access units. Each viewer
//! goes at its own pace through its [`Reader`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use shared::frame::{
    flags, kind, Codec, FrameHeader, MessageHeader, HEADER_LEN_V2, HELLO, HELLO_V2,
};
use shared::h264::Params;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::figures::Protocol;
use crate::frame::Frame;
use crate::hub::{Hub, Reader};
use crate::socket;

/// A viewer that takes longer than this to accept one frame is dropped, so
/// a vanished peer cannot hold a viewer slot (and a frame) forever.
pub const WRITE_STALL_LIMIT: Duration = Duration::from_secs(20);

/// Accepts viewers of one camera until `cancel`; each gets its own task on
/// `tracker`. Run it in a span that names the camera.
pub async fn run(
    listener: TcpListener,
    hub: Arc<Hub>,
    max_viewers: usize,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let Some((stream, peer)) = accept(&listener, &cancel).await else {
            break;
        };
        let Some(reader) = hub.add_viewer(max_viewers, Protocol::Tcp) else {
            tracing::warn!(%peer, "refusing viewer: {max_viewers} viewers already connected (max_viewers)");
            continue;
        };
        // Nested in the caller's span, which names the camera.
        let span = tracing::info_span!("viewer", %peer);
        let cancel = cancel.clone();
        tracker.spawn(
            async move {
                tracing::info!("viewer connected");
                let mut reader = reader;
                reader.name(&peer.to_string());
                match serve_viewer(stream, &mut reader, &cancel).await {
                    Ok(sent) => {
                        tracing::info!(frames = sent, skipped = reader.skipped(), "viewer left")
                    }
                    Err(e) => tracing::info!(skipped = reader.skipped(), "viewer dropped: {e}"),
                }
            }
            .instrument(span),
        );
    }
    tracing::info!("TCP listener closed");
}

/// Streams frames to one viewer until it leaves or `cancel`; returns the
/// number of frames sent.
pub async fn serve_viewer(
    mut stream: TcpStream,
    reader: &mut Reader,
    cancel: &CancellationToken,
) -> std::io::Result<u64> {
    let mut cap = socket::prepare_viewer(&stream);
    let mut sent = 0u64;
    // The hello says the codec: the newest frame's, or the first one's.
    let mut in_flight = None;
    let codec = match reader.hub().latest() {
        Some(frame) => frame.codec,
        None => {
            let first = tokio::select! {
                _ = cancel.cancelled() => return Ok(0),
                frame = reader.next() => frame,
            };
            let codec = first.codec;
            in_flight = Some(first);
            codec
        }
    };
    let mut conn = Connection::new(codec);
    let mut pending = Bytes::from_static(conn.hello()).chain(Bytes::new().chain(Bytes::new()));
    if let Some(frame) = &in_flight {
        let head = conn.head(frame, reader)?;
        pending =
            Bytes::from_static(conn.hello()).chain(Bytes::from(head).chain(frame.data.clone()));
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(sent),
            written = tokio::time::timeout(WRITE_STALL_LIMIT, stream.write_all_buf(&mut pending)) => {
                written.map_err(|_| stall(WRITE_STALL_LIMIT))??;
            }
        }
        if let Some(frame) = in_flight.take() {
            reader.sent(&frame);
            sent += 1;
        }
        let frame = tokio::select! {
            _ = cancel.cancelled() => return Ok(sent),
            frame = reader.next() => frame,
        };
        let head = conn.head(&frame, reader)?;
        cap.fit(&stream, head.len() + frame.data.len(), reader.is_behind());
        pending = Bytes::new().chain(Bytes::from(head).chain(frame.data.clone()));
        in_flight = Some(frame);
    }
}

/// One viewer's protocol: v1 for an MJPEG camera, v2 for an H.264 one,
/// and what it has told the viewer of the codec configuration.
#[derive(Debug)]
struct Connection {
    codec: Codec,
    config_sent: Option<Params>,
}

impl Connection {
    fn new(codec: Codec) -> Self {
        Connection {
            codec,
            config_sent: None,
        }
    }

    fn hello(&self) -> &'static [u8] {
        match self.codec {
            Codec::Mjpeg => HELLO,
            Codec::H264 => HELLO_V2,
        }
    }

    /// What goes before `frame`'s payload: for v1 its header; for v2 a
    /// configuration message when a keyframe's SPS/PPS are new to this
    /// viewer, then the frame's header. The payload itself is the shared
    /// `Bytes`, never copied per viewer.
    fn head(&mut self, frame: &Frame, reader: &Reader) -> std::io::Result<Vec<u8>> {
        if frame.codec != self.codec {
            return Err(std::io::Error::other(format!(
                "the camera changed from {} to {}; reconnect",
                self.codec, frame.codec
            )));
        }
        if self.codec == Codec::Mjpeg {
            let header = FrameHeader {
                len: frame.data.len() as u32,
                seq: frame.seq,
                captured_at_us: frame.captured_at_us,
            };
            return Ok(header.encode().to_vec());
        }
        let mut out = Vec::with_capacity(HEADER_LEN_V2);
        let mut flag = 0;
        if frame.key {
            flag |= flags::KEY;
            if let Ok(params) = Params::of_keyframe(&frame.data) {
                if self.config_sent.as_ref() != Some(&params) {
                    let record = params.avc_config_record();
                    let header = MessageHeader {
                        len: record.len() as u32,
                        kind: kind::CONFIG,
                        flags: 0,
                        seq: frame.seq,
                        captured_at_us: frame.captured_at_us,
                    };
                    out.extend_from_slice(&header.encode());
                    out.extend_from_slice(&record);
                    flag |= flags::CONFIG;
                    self.config_sent = Some(params);
                }
            }
        }
        if reader.after_skip() {
            flag |= flags::DISCONTINUITY;
        }
        if reader.catching_up() {
            flag |= flags::CATCH_UP;
        }
        let header = MessageHeader {
            len: frame.data.len() as u32,
            kind: kind::H264,
            flags: flag,
            seq: frame.seq,
            captured_at_us: frame.captured_at_us,
        };
        out.extend_from_slice(&header.encode());
        Ok(out)
    }
}

fn stall(limit: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("took over {} s to accept one frame", limit.as_secs()),
    )
}

/// The next connection, or `None` once `cancel` fires.
pub async fn accept(
    listener: &TcpListener,
    cancel: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        pair = accept_retrying(listener) => Some(pair),
    }
}

/// The next connection. Accept errors (EMFILE and friends) are logged and
/// retried after a pause, not spun on.
pub async fn accept_retrying(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The port a listener is bound to, for logs and NodeInfo.
pub fn local_port(listener: &TcpListener) -> std::io::Result<u16> {
    listener.local_addr().map(|a: SocketAddr| a.port())
}
