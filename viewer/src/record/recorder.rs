//! One camera's recording in a thread of its own: file writes and syncs
//! never hold up the network side, and a full disk costs the segment being
//! written, not the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::segmenter::{RecFrame, SegmentPlan, Segmenter};

/// Frames queued for the writer. Beyond this the camera task waits, and the
/// node skips frames for this viewer rather than memory growing here.
const QUEUE: usize = 64;
/// After a write error (a full disk), frames are dropped this long before a
/// new segment is tried.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Events the control loop can hold back before the writers drop some: a
/// few per camera and segment, so only a stalled loop fills it.
pub const EVENT_QUEUE: usize = 256;

/// What the writers tell the control loop, which republishes the state and
/// runs retention on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordEvent {
    /// The camera writes segments now (its link says so once counted).
    Started { camera: String },
    /// The camera closed its last segment and stopped.
    Stopped { camera: String },
    /// A segment was closed (renamed from .part): the budget may be
    /// exceeded, and an error of this camera's is over.
    SegmentClosed { camera: String },
    /// A write failed (a full disk); frames are dropped for a while.
    Failed { camera: String, message: String },
}

/// The writers' side of the event channel; never waits (an event that does
/// not fit is dropped with a warning: the state is republished every 10 s).
#[derive(Debug, Clone)]
pub struct Events(mpsc::Sender<RecordEvent>);

impl Events {
    pub fn channel() -> (Events, mpsc::Receiver<RecordEvent>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        (Events(tx), rx)
    }

    pub fn send(&self, event: RecordEvent) {
        if let Err(mpsc::error::TrySendError::Full(e)) = self.0.try_send(event) {
            tracing::warn!("recording event dropped (the control loop is behind): {e:?}");
        }
    }
}

/// Upper bounds of the write latency buckets, in seconds: one frame handed
/// to the segmenter, including the fragment write and `fsync` it may cause.
pub const WRITE_BOUNDS_S: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// What one camera's recorder wrote, across all its sessions.
#[derive(Debug, Default)]
pub struct WriteStats {
    pub segments: AtomicU64,
    pub bytes: AtomicU64,
    /// Cumulative counts per bound of [`WRITE_BOUNDS_S`], then the count of all.
    buckets: [AtomicU64; WRITE_BOUNDS_S.len() + 1],
    /// Sum of all latencies, microseconds.
    sum_us: AtomicU64,
}

impl WriteStats {
    pub fn record_latency(&self, took: Duration) {
        let s = took.as_secs_f64();
        for (i, bound) in WRITE_BOUNDS_S.iter().enumerate() {
            if s <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.buckets[WRITE_BOUNDS_S.len()].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The cumulative count per bound of [`WRITE_BOUNDS_S`] and then of
    /// all, and the sum of all latencies in seconds.
    pub fn latency(&self) -> ([u64; WRITE_BOUNDS_S.len() + 1], f64) {
        let buckets = self.buckets.each_ref().map(|b| b.load(Ordering::Relaxed));
        (buckets, self.sum_us.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

pub struct Recorder {
    tx: mpsc::Sender<RecFrame>,
    thread: std::thread::JoinHandle<()>,
}

impl Recorder {
    pub fn start(
        plan: SegmentPlan,
        label: String,
        events: Events,
        written: Arc<WriteStats>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name(format!("rec {label}"))
            .spawn(move || write_frames(plan, label, rx, events, &written))?;
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
    events: Events,
    written: &WriteStats,
) {
    // Whether the last write failed (the next closed segment says it is over).
    let mut failed = false;
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
            Ok(()) if segmenter.closed.len() > closed => {
                events.send(RecordEvent::SegmentClosed {
                    camera: label.clone(),
                });
                if std::mem::take(&mut failed) {
                    tracing::info!(camera = %label, "recording again after the write error");
                }
            }
            Ok(()) => {}
            Err(e) => {
                let message = format!("{label}: cannot write {}: {e}", plan.dir.display());
                tracing::error!("{message}; retrying in {} s", RETRY_AFTER.as_secs());
                failed = true;
                events.send(RecordEvent::Failed {
                    camera: label.clone(),
                    message,
                });
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
    if segmenter.closed.len() > closed {
        events.send(RecordEvent::SegmentClosed {
            camera: label.clone(),
        });
    }
}
