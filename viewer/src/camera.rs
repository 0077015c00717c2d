//! One camera of one node: connect, read frames (protocol v1), reconnect
//! with backoff, restart on a silent stream; record while a session is on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_lite::StreamExt;
use shared::backoff::run_with_backoff;
use shared::frame::FrameDecoder;
use shared::messages::CameraInfo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::record::recorder::{ErrorSlot, Recorder};
use crate::record::segmenter::{RecFrame, SegmentPlan};
use crate::screens::Screens;

/// A stream that stays open but sends nothing for this long is reconnected.
pub const STREAM_WATCHDOG: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A recording session as every camera task sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `YYYYmmddTHHMMSSZ`
    pub name: String,
    /// `<recordings>/<name>`
    pub dir: PathBuf,
}

/// Counters of one camera link, read by the state publisher.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub frames: AtomicU64,
    /// Frames the node skipped for us (gaps in sequence numbers).
    pub missed: AtomicU64,
    pub reconnects: AtomicU64,
}

pub struct CameraLink {
    /// `node/camera`, for the display and the recorder thread's name.
    pub label: String,
    pub node_id: String,
    pub camera: CameraInfo,
    pub session: watch::Receiver<Option<Session>>,
    pub segment: Duration,
    pub stats: Arc<LinkStats>,
    pub recording: Arc<AtomicUsize>,
    pub errors: ErrorSlot,
    /// Where the display takes frames from, when there is one.
    pub screens: Option<Arc<Screens>>,
}

impl CameraLink {
    pub async fn run(self, cancel: CancellationToken) {
        let stats = Arc::clone(&self.stats);
        let on_failure = |error: Option<anyhow::Error>, delay: Duration| {
            let error = error.unwrap_or_else(|| anyhow!("stream ended"));
            tracing::warn!("{error:#}; reconnecting in {:.1} s", delay.as_secs_f64());
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        };
        run_with_backoff(&cancel, || self.run_once(&cancel), on_failure).await;
    }

    async fn run_once(&self, cancel: &CancellationToken) -> Result<()> {
        let tcp = self.camera.tcp.clone();
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&tcp))
            .await
            .map_err(|_| anyhow!("connecting to {tcp} timed out"))?
            .with_context(|| format!("connecting to {tcp}"))?;
        tracing::info!("connected to {tcp}");
        let mut frames = FramedRead::new(stream, FrameDecoder::new());
        // Read afresh for every frame (this run's own receiver).
        let mut session = self.session.clone();
        let mut recorder: Option<(Session, Recorder)> = None;
        let mut last_seq: Option<u64> = None;
        let result = loop {
            let frame = tokio::select! {
                _ = cancel.cancelled() => break Ok(()),
                next = tokio::time::timeout(STREAM_WATCHDOG, frames.next()) => match next {
                    Err(_) => break Err(anyhow!("no frame from {tcp} for {} s", STREAM_WATCHDOG.as_secs())),
                    Ok(None) => break Err(anyhow!("{tcp} closed the stream")),
                    Ok(Some(Err(e))) => break Err(anyhow!("{tcp}: {e}")),
                    Ok(Some(Ok(frame))) => frame,
                },
            };
            self.stats.frames.fetch_add(1, Ordering::Relaxed);
            if last_seq.is_none() {
                tracing::info!(seq = frame.seq, bytes = frame.jpeg.len(), "first frame");
            }
            if let Some(last) = last_seq {
                self.stats
                    .missed
                    .fetch_add(frame.seq.saturating_sub(last + 1), Ordering::Relaxed);
            }
            last_seq = Some(frame.seq);
            // Follow the session: start, switch or stop before this frame.
            let wanted = session.borrow_and_update().clone();
            if recorder.as_ref().map(|(s, _)| s) != wanted.as_ref() {
                if let Some((_, old)) = recorder.take() {
                    self.stop_recorder(old).await;
                }
                if let Some(session) = wanted {
                    match self.start_recorder(&session, &frame.jpeg) {
                        Ok(r) => recorder = Some((session, r)),
                        Err(e) => bail!("cannot start recording: {e}"),
                    }
                }
            }
            if let Some(screens) = &self.screens {
                screens.update(
                    &self.label,
                    frame.seq,
                    frame.jpeg.clone(),
                    recorder.is_some(),
                );
            }
            if let Some((_, r)) = &recorder {
                r.record(RecFrame {
                    captured_at_us: frame.captured_at_us,
                    jpeg: frame.jpeg,
                })
                .await;
            }
        };
        if let Some((_, r)) = recorder.take() {
            self.stop_recorder(r).await;
        }
        result
    }

    fn start_recorder(&self, session: &Session, jpeg: &[u8]) -> std::io::Result<Recorder> {
        let (width, height) =
            jpeg_size(jpeg).unwrap_or((self.camera.width as u16, self.camera.height as u16));
        let plan = SegmentPlan {
            dir: session.dir.join(&self.node_id).join(&self.camera.id),
            segment_us: self.segment.as_micros() as u64,
            width,
            height,
        };
        let recorder = Recorder::start(plan, self.label.clone(), Arc::clone(&self.errors))?;
        self.recording.fetch_add(1, Ordering::Relaxed);
        Ok(recorder)
    }

    async fn stop_recorder(&self, recorder: Recorder) {
        recorder.stop().await;
        self.recording.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Width and height from a JPEG's SOF marker.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    let mut i = 2;
    while i + 9 < jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}
