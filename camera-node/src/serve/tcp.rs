//! TCP frame protocol v1 server (DESIGN.md): hello, then header + JPEG per
//! frame, newest frame first whenever a viewer falls behind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use shared::frame::{FrameHeader, HELLO};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::hub::{Hub, Protocol, ViewerSlot};

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
        let Some((stream, peer)) = super::accept(&listener, &cancel).await else {
            break;
        };
        let Some(slot) = hub.add_viewer(max_viewers, Protocol::Tcp) else {
            tracing::warn!(%peer, "refusing viewer: {max_viewers} viewers already connected (max_viewers)");
            continue;
        };
        // Nested in the caller's span, which names the camera.
        let span = tracing::info_span!("viewer", %peer);
        let (hub, cancel) = (Arc::clone(&hub), cancel.clone());
        tracker.spawn(
            async move {
                tracing::info!("viewer connected");
                match serve_viewer(stream, &hub, slot, &cancel).await {
                    Ok(sent) => tracing::info!(frames = sent, "viewer left"),
                    Err(e) => tracing::info!("viewer dropped: {e}"),
                }
            }
            .instrument(span),
        );
    }
    tracing::info!("TCP listener closed");
}

/// Streams frames to one viewer; returns the number of frames sent.
async fn serve_viewer(
    mut stream: TcpStream,
    hub: &Hub,
    mut slot: ViewerSlot,
    cancel: &CancellationToken,
) -> std::io::Result<u64> {
    stream.set_nodelay(true)?;
    let mut frames = hub.subscribe();
    let mut pending = Bytes::from_static(HELLO).chain(Bytes::new());
    let mut read_at = None;
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(sent),
            written = tokio::time::timeout(WRITE_STALL_LIMIT, stream.write_all_buf(&mut pending)) => {
                written.map_err(|_| stall(WRITE_STALL_LIMIT))??;
            }
        }
        if let Some(at) = read_at.take() {
            hub.send_latency.record(Instant::elapsed(&at));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(sent),
            changed = frames.changed() => if changed.is_err() { return Ok(sent) },
        }
        let Some(frame) = frames.borrow_and_update().clone() else {
            continue;
        };
        slot.sending(frame.seq);
        read_at = Some(frame.read_at);
        let header = FrameHeader {
            len: frame.jpeg.len() as u32,
            seq: frame.seq,
            captured_at_us: frame.captured_at_us,
        };
        pending = Bytes::copy_from_slice(&header.encode()).chain(frame.jpeg);
        sent += 1;
    }
}

fn stall(limit: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("took over {} s to accept one frame", limit.as_secs()),
    )
}

/// The address a listener is bound to, for logs and NodeInfo.
pub fn local_port(listener: &TcpListener) -> std::io::Result<u16> {
    listener.local_addr().map(|a: SocketAddr| a.port())
}
