//! One camera's recording in a thread of its own: file writes and syncs
//! never hold up the network side, and a full disk costs the segment being
//! written, not the connection.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::segmenter::{RecFrame, SegmentPlan, Segmenter};
use crate::metrics::WriteStats;

/// Frames queued for the writer. Beyond this the camera task waits, and the
/// node skips frames for this viewer rather than memory growing here.
const QUEUE: usize = 64;
/// After a write error (a full disk), frames are dropped this long before a
/// new segment is tried.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The last recording error of any camera, for the state topic.
pub type ErrorSlot = Arc<Mutex<Option<String>>>;

pub struct Recorder {
    tx: mpsc::Sender<RecFrame>,
    thread: std::thread::JoinHandle<()>,
}

impl Recorder {
    pub fn start(
        plan: SegmentPlan,
        label: String,
        errors: ErrorSlot,
        written: Arc<WriteStats>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name(format!("rec {label}"))
            .spawn(move || write_frames(plan, label, rx, errors, &written))?;
        Ok(Recorder { tx, thread })
    }

    /// Queues a frame; waits while the writer is behind.
    pub async fn record(&self, frame: RecFrame) {
        // Only fails once the writer has stopped; its error is reported there.
        let _ = self.tx.send(frame).await;
    }

    /// Closes the open segment (renamed from .part) and waits for it.
    pub async fn stop(self) {
        drop(self.tx);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// A segment closed cleanly again: this camera's error is over.
fn clear_own_error(errors: &ErrorSlot, label: &str) {
    let mut slot = errors.lock().expect("error slot");
    if slot
        .as_deref()
        .is_some_and(|m| m.starts_with(&format!("{label}:")))
    {
        tracing::info!(camera = %label, "recording again after the write error");
        *slot = None;
    }
}

/// Adds what `segmenter` wrote since it had closed `closed` segments and
/// written `bytes`.
fn account(written: &WriteStats, segmenter: &Segmenter, closed: usize, bytes: u64) {
    let new_segments = segmenter.closed.len().saturating_sub(closed) as u64;
    written.segments.fetch_add(new_segments, Ordering::Relaxed);
    written
        .bytes
        .fetch_add(segmenter.bytes.saturating_sub(bytes), Ordering::Relaxed);
}

fn write_frames(
    plan: SegmentPlan,
    label: String,
    mut rx: mpsc::Receiver<RecFrame>,
    errors: ErrorSlot,
    written: &WriteStats,
) {
    let mut segmenter = Segmenter::new(plan.clone());
    let mut paused_until: Option<Instant> = None;
    tracing::info!(camera = %label, "recording to {}", plan.dir.display());
    while let Some(frame) = rx.blocking_recv() {
        if paused_until.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        paused_until = None;
        let closed = segmenter.closed.len();
        let bytes = segmenter.bytes;
        let started = Instant::now();
        let pushed = segmenter.push(frame);
        written.record_latency(started.elapsed());
        account(written, &segmenter, closed, bytes);
        match pushed {
            Ok(()) if segmenter.closed.len() > closed => clear_own_error(&errors, &label),
            Ok(()) => {}
            Err(e) => {
                let message = format!("{label}: cannot write {}: {e}", plan.dir.display());
                tracing::error!("{message}; retrying in {} s", RETRY_AFTER.as_secs());
                *errors.lock().expect("error slot") = Some(message);
                // Keep what was written: the fragments before the error play.
                let _ = segmenter.finish();
                segmenter = Segmenter::new(plan.clone());
                paused_until = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }
    let (closed, bytes) = (segmenter.closed.len(), segmenter.bytes);
    if let Err(e) = segmenter.finish() {
        tracing::error!(camera = %label, "closing the last segment: {e}");
    }
    account(written, &segmenter, closed, bytes);
    tracing::info!(
        camera = %label,
        "recording closed: {} frames in {} segments",
        segmenter.frames,
        segmenter.closed.len()
    );
}
