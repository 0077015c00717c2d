//! The latest-frame fan-out of one camera.
//!
//! The hub keeps only the newest frame (a `watch` channel): a viewer that
//! keeps up sees every frame, a slow one wakes to the newest and skips the
//! rest. The camera never waits, and memory is one frame per viewer at most.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// How a viewer is served, for the per-protocol figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Rtsp,
    Http,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Rtsp, Protocol::Http];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Rtsp => "rtsp",
            Protocol::Http => "http",
        }
    }
}

#[derive(Debug)]
pub struct Hub {
    camera_id: String,
    tx: watch::Sender<Option<CapturedFrame>>,
    /// Capture on or off (the HTTP control API); cameras start on.
    enabled: watch::Sender<bool>,
    next_seq: AtomicU64,
    bytes: AtomicU64,
    /// Viewers of every protocol together, for the cap.
    viewers: AtomicUsize,
    viewers_by: [AtomicUsize; 3],
    dropped_by: [AtomicU64; 3],
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
            enabled: watch::Sender::new(true),
            next_seq: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            viewers: AtomicUsize::new(0),
            viewers_by: Default::default(),
            dropped_by: Default::default(),
            restarts: AtomicU64::new(0),
            last_frame_at: Mutex::new(None),
            send_latency: LatencyHistogram::default(),
        })
    }

    pub fn camera_id(&self) -> &str {
        &self.camera_id
    }

    pub fn is_enabled(&self) -> bool {
        *self.enabled.borrow()
    }

    /// Turns capture on or off; false when it already was.
    pub fn set_enabled(&self, on: bool) -> bool {
        self.enabled
            .send_if_modified(|now| std::mem::replace(now, on) != on)
    }

    /// Follows [`Hub::set_enabled`].
    pub fn watch_enabled(&self) -> watch::Receiver<bool> {
        self.enabled.subscribe()
    }

    /// The newest frame, if the camera delivered one.
    pub fn latest(&self) -> Option<CapturedFrame> {
        self.tx.borrow().clone()
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
        self.bytes.fetch_add(jpeg.len() as u64, Ordering::Relaxed);
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

    /// Takes a viewer slot, or `None` when `max` viewers (of every
    /// protocol together) are connected.
    pub fn add_viewer(self: &Arc<Self>, max: usize, protocol: Protocol) -> Option<ViewerSlot> {
        self.viewers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.viewers_by[protocol as usize].fetch_add(1, Ordering::AcqRel);
        Some(ViewerSlot {
            hub: Arc::clone(self),
            protocol,
            last_seq: None,
        })
    }

    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Fresh frames within `watchdog`, stale, or stopped on purpose.
    pub fn health(&self, watchdog: Duration) -> Health {
        if !self.is_enabled() {
            return Health::Stopped;
        }
        match *self.last_frame_at.lock().expect("hub lock") {
            Some(at) if at.elapsed() <= watchdog => Health::Ok(at.elapsed()),
            Some(at) => Health::Stale(Some(at.elapsed())),
            None => Health::Stale(None),
        }
    }

    pub fn snapshot(&self) -> HubFigures {
        HubFigures {
            frames: self.next_seq.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            viewers: self.viewers.load(Ordering::Relaxed),
            viewers_by: self
                .viewers_by
                .each_ref()
                .map(|v| v.load(Ordering::Relaxed)),
            dropped: self
                .dropped_by
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .sum(),
            dropped_by: self
                .dropped_by
                .each_ref()
                .map(|d| d.load(Ordering::Relaxed)),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_frame_at: *self.last_frame_at.lock().expect("hub lock"),
        }
    }
}

/// Whether a camera is doing its job, for `/healthz` and systemd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Health {
    /// A frame within the watchdog interval; how long ago.
    Ok(Duration),
    /// Enabled, but no frame within the watchdog interval (or none ever).
    Stale(Option<Duration>),
    /// Capture turned off through the API.
    Stopped,
}

impl Health {
    /// Stopped cameras are fine: nobody expects frames from them.
    pub fn is_fine(self) -> bool {
        !matches!(self, Health::Stale(_))
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Ok(age) => write!(f, "ok (last frame {:.2} s ago)", age.as_secs_f64()),
            Health::Stale(Some(age)) => write!(f, "no frame for {:.1} s", age.as_secs_f64()),
            Health::Stale(None) => write!(f, "no frame yet"),
            Health::Stopped => write!(f, "stopped"),
        }
    }
}

/// The hub's counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct HubFigures {
    pub frames: u64,
    pub bytes: u64,
    pub viewers: usize,
    /// Indexed by `Protocol as usize`.
    pub viewers_by: [usize; 3],
    pub dropped: u64,
    pub dropped_by: [u64; 3],
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
    pub fn record(&self, elapsed: Duration) {
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
    protocol: Protocol,
    last_seq: Option<u64>,
}

impl ViewerSlot {
    /// Notes a frame about to be sent to this viewer and counts the frames
    /// it skipped since the last one because it was slower than the camera.
    pub fn sending(&mut self, seq: u64) {
        if let Some(last) = self.last_seq {
            let missed = seq.saturating_sub(last + 1);
            if missed > 0 {
                self.hub.dropped_by[self.protocol as usize].fetch_add(missed, Ordering::Relaxed);
            }
        }
        self.last_seq = Some(seq);
    }
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        self.hub.viewers.fetch_sub(1, Ordering::AcqRel);
        self.hub.viewers_by[self.protocol as usize].fetch_sub(1, Ordering::AcqRel);
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
        let a = hub.add_viewer(2, Protocol::Tcp).unwrap();
        let mut b = hub.add_viewer(2, Protocol::Http).unwrap();
        assert!(hub.add_viewer(2, Protocol::Rtsp).is_none());
        drop(a);
        assert!(hub.add_viewer(2, Protocol::Rtsp).is_some());
        let figures = hub.snapshot();
        assert_eq!((figures.viewers, figures.viewers_by), (1, [0, 0, 1]));
        b.sending(3);
        b.sending(7);
        assert_eq!(hub.snapshot().dropped_by, [0, 0, 3]);
    }

    #[test]
    fn enabling_reports_changes_only() {
        let hub = Hub::new("cam0");
        assert!(hub.is_enabled());
        assert!(!hub.set_enabled(true));
        assert!(hub.set_enabled(false));
        assert!(!hub.is_enabled());
    }
}
