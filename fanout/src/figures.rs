//! What the fan-out counts: viewers and skipped frames per protocol, send
//! latency, and whether a camera delivers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

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
    /// Frames and JPEG bytes the ring holds now.
    pub ring_frames: usize,
    pub ring_bytes: usize,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
