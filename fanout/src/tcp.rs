//! TCP frame protocol v1 server (DESIGN.md): the hello, then a header and
//! a JPEG per frame, each viewer at its own pace through its [`Reader`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use shared::frame::{FrameHeader, HEADER_LEN, HELLO};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::figures::Protocol;
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
    let mut pending = Bytes::from_static(HELLO).chain(Bytes::new());
    let mut in_flight = None;
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
        let header = FrameHeader {
            len: frame.jpeg.len() as u32,
            seq: frame.seq,
            captured_at_us: frame.captured_at_us,
        };
        cap.fit(&stream, HEADER_LEN + frame.jpeg.len(), reader.is_behind());
        pending = Bytes::copy_from_slice(&header.encode()).chain(frame.jpeg.clone());
        in_flight = Some(frame);
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
