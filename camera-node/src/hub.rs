//! The latest-frame fan-out of one camera.
//!
//! The hub keeps only the newest frame (a `watch` channel): a viewer that
//! keeps up sees every frame, a slow one wakes to the newest and skips the
//! rest. The camera never waits, and memory is one frame per viewer at most.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

/// A frame as the node holds it: one shared `Bytes`, never copied per viewer.
#[derive(Debug, Clone)]
pub struct CapturedFrame {
    /// Frames since the node started (not since the camera process started).
    pub seq: u64,
    /// When the frame's last byte was read, microseconds since the Unix epoch.
    pub captured_at_us: u64,
    /// When the frame was read in full, for the send latency figures.
    pub read_at: Instant,
    pub jpeg: Bytes,
}

#[derive(Debug)]
pub struct Hub {
    camera_id: String,
    tx: watch::Sender<Option<CapturedFrame>>,
    next_seq: AtomicU64,
    viewers: AtomicUsize,
    dropped: AtomicU64,
    restarts: AtomicU64,
    last_frame_at: Mutex<Option<Instant>>,
    /// From a frame's last byte read to its last byte written to a viewer.
    pub send_latency: LatencyHistogram,
}

impl Hub {
    pub fn new(camera_id: &str) -> Arc<Self> {
        Arc::new(Hub {
            camera_id: camera_id.to_owned(),
            tx: watch::Sender::new(None),
            next_seq: AtomicU64::new(0),
            viewers: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            last_frame_at: Mutex::new(None),
            send_latency: LatencyHistogram::default(),
        })
    }

    pub fn camera_id(&self) -> &str {
        &self.camera_id
    }

    /// Stamps a frame that has just been read in full and hands it to every
    /// viewer. Never blocks.
    pub fn publish(&self, jpeg: Bytes) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let captured_at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let read_at = Instant::now();
        *self.last_frame_at.lock().expect("hub lock") = Some(read_at);
        self.tx.send_replace(Some(CapturedFrame {
            seq,
            captured_at_us,
            read_at,
            jpeg,
        }));
        seq
    }

    /// A receiver that sees the current frame at once, then each newer one.
    pub fn subscribe(&self) -> watch::Receiver<Option<CapturedFrame>> {
        let mut rx = self.tx.subscribe();
        rx.mark_changed();
        rx
    }

    /// Takes a viewer slot, or `None` when `max` viewers are connected.
    pub fn add_viewer(self: &Arc<Self>, max: usize) -> Option<ViewerSlot> {
        self.viewers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ViewerSlot {
                hub: Arc::clone(self),
            })
    }

    /// Frames a viewer skipped because it was slower than the camera.
    pub fn count_dropped(&self, frames: u64) {
        self.dropped.fetch_add(frames, Ordering::Relaxed);
    }

    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HubFigures {
        HubFigures {
            frames: self.next_seq.load(Ordering::Relaxed),
            viewers: self.viewers.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_frame_at: *self.last_frame_at.lock().expect("hub lock"),
        }
    }
}

/// The hub's counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct HubFigures {
    pub frames: u64,
    pub viewers: usize,
    pub dropped: u64,
    pub restarts: u64,
    pub last_frame_at: Option<Instant>,
}

/// Upper bounds of the latency buckets, in microseconds; one more bucket
/// counts everything slower.
const LATENCY_BOUNDS_US: [u64; 16] = [
    50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 50_000,
    100_000,
];

/// Lock-free latency counts; read and reset by the stats task.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counts: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: std::time::Duration) {
        let us = elapsed.as_micros() as u64;
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last call, zeroing them.
    pub fn take(&self) -> LatencyCounts {
        LatencyCounts(self.counts.each_ref().map(|c| c.swap(0, Ordering::Relaxed)))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LatencyCounts([u64; LATENCY_BOUNDS_US.len() + 1]);

impl LatencyCounts {
    /// The bucket bound under which a fraction `q` of the samples fell, in
    /// milliseconds; `None` without samples (or past the last bound).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.0.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= want {
                return LATENCY_BOUNDS_US.get(i).map(|&us| us as f64 / 1000.0);
            }
        }
        None
    }
}

/// A connected viewer; the slot frees itself when dropped.
#[derive(Debug)]
pub struct ViewerSlot {
    hub: Arc<Hub>,
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        self.hub.viewers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_receiver_skips_to_the_newest_frame() {
        let hub = Hub::new("cam0");
        let mut rx = hub.subscribe();
        for i in 0..5u8 {
            hub.publish(Bytes::from(vec![i]));
        }
        rx.changed().await.unwrap();
        let frame = rx.borrow_and_update().clone().unwrap();
        assert_eq!((frame.seq, &frame.jpeg[..]), (4, &[4u8][..]));
        assert!(!rx.has_changed().unwrap());
    }

    #[test]
    fn latency_quantiles_are_bucket_bounds() {
        let h = LatencyHistogram::default();
        for _ in 0..98 {
            h.record(std::time::Duration::from_micros(120));
        }
        h.record(std::time::Duration::from_micros(1_800));
        h.record(std::time::Duration::from_millis(500));
        let counts = h.take();
        assert_eq!(counts.quantile_ms(0.5), Some(0.2));
        assert_eq!(counts.quantile_ms(0.99), Some(2.0));
        assert_eq!(counts.quantile_ms(1.0), None, "past the last bound");
        assert_eq!(h.take().quantile_ms(0.5), None, "take() resets");
    }

    #[test]
    fn viewer_slots_are_capped_and_freed() {
        let hub = Hub::new("cam0");
        let a = hub.add_viewer(2).unwrap();
        let _b = hub.add_viewer(2).unwrap();
        assert!(hub.add_viewer(2).is_none());
        drop(a);
        assert!(hub.add_viewer(2).is_some());
        assert_eq!(hub.snapshot().viewers, 1);
    }
}
