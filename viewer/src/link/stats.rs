//! What is counted of each camera link while the viewer runs: the link's
//! own counters, the repeat filter that keeps a frame from being recorded
//! (or passed on) twice, and the registry that keeps both across the
//! camera's tasks. A leaf: the state topic, the metrics page and the
//! supervisor read it; it reads nothing of theirs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::record::recorder::WriteStats;

use super::clock::NodeClock;

/// Counters of one camera link, read by the state publisher.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub frames: AtomicU64,
    /// Frames the node skipped for us (gaps in sequence numbers).
    pub missed: AtomicU64,
    pub reconnects: AtomicU64,
    /// The relay the camera arrives through now (`None`: its node).
    pub via: Mutex<Option<String>>,
}

/// A frame at most this much older than the newest admitted one of its
/// camera, with a sequence number no newer, is one already admitted: a
/// reconnect starts with the node's newest frame, which the connection
/// before may have had. A frame older than that by more is from a node
/// that restarted with its clock set back, and is admitted.
pub const REPEAT_WINDOW_US: u64 = 10_000_000;

/// The newest frame of one camera let through, so that none is let through
/// twice: the recorder's (kept by the registry while the viewer runs, across
/// reconnects and node restarts: DESIGN.md, nothing lost or doubled) and the
/// live hub's (a switch of relay parent may bring a frame again).
#[derive(Debug, Default)]
pub struct RepeatFilter {
    /// Sequence number and capture time of that frame.
    last: Mutex<Option<(u64, u64)>>,
    /// Frames not let through because they already were.
    pub duplicates: AtomicU64,
}

impl RepeatFilter {
    /// Whether a frame is new; if so it becomes the newest.
    pub fn admit(&self, seq: u64, captured_at_us: u64) -> bool {
        let mut last = self.last.lock().expect("repeat filter lock");
        if let Some((last_seq, last_us)) = *last {
            let repeat = seq <= last_seq
                && captured_at_us <= last_us
                && last_us - captured_at_us <= REPEAT_WINDOW_US;
            if repeat {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        *last = Some((seq, captured_at_us));
        true
    }
}

/// Everything counted for one camera while the viewer runs: kept when a
/// camera's task ends, so counters only grow and the next task never
/// records a frame again.
#[derive(Debug, Default)]
pub struct CameraCounters {
    pub link: Arc<LinkStats>,
    pub recorded: Arc<RepeatFilter>,
    /// H.264 frames not recorded for want of a keyframe before them (after
    /// a connect or a gap).
    pub before_key: AtomicU64,
    pub written: Arc<WriteStats>,
    /// Held by the task writing the camera's segments.
    pub writer: Arc<tokio::sync::Mutex<()>>,
    /// The clock of the camera's node, once the camera has run.
    pub clock: Mutex<Option<Arc<NodeClock>>>,
}

/// Every camera's counters, by `node/camera`.
#[derive(Debug, Default)]
pub struct Counters {
    cameras: Mutex<BTreeMap<String, Arc<CameraCounters>>>,
    /// Cameras writing segments now.
    pub recording: AtomicUsize,
}

impl Counters {
    /// The counters of camera `label` (`node/camera`), made on first use.
    pub fn camera(&self, label: &str) -> Arc<CameraCounters> {
        let mut cameras = self.cameras.lock().expect("counters lock");
        Arc::clone(cameras.entry(label.to_owned()).or_default())
    }

    /// Every camera's counters, in label order.
    pub fn all(&self) -> Vec<(String, Arc<CameraCounters>)> {
        self.cameras
            .lock()
            .expect("counters lock")
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// Cameras recording right now.
    pub fn recording(&self) -> usize {
        self.recording.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_admitted_once_across_reconnects_restarts_and_clock_steps() {
        let filter = RepeatFilter::default();
        let t = 1_800_000_000_000_000u64;
        assert!(filter.admit(100, t));
        assert!(filter.admit(101, t + 33_333));
        // A reconnect re-sends the newest frame, or an older one.
        assert!(!filter.admit(101, t + 33_333));
        assert!(!filter.admit(100, t));
        // A restarted node counts from 0 again, later.
        assert!(filter.admit(0, t + 5_000_000));
        // Its clock stepped back by a second: newer sequence numbers still count.
        assert!(filter.admit(1, t + 4_000_000));
        // A node restarted with its clock an hour back is admitted too.
        assert!(filter.admit(0, t - 3_600_000_000));
        assert_eq!(filter.duplicates.load(Ordering::Relaxed), 2);
    }
}
