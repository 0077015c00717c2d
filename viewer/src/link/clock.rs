//! Each node's clock: how far it is from the viewer's, measured over the
//! node's HTTP API (the timeline module places the frames with it).
//!
//! A Pi has no real-time clock; until network time arrives it may be hours
//! off, and it steps when NTP comes. The viewer measures each node's offset
//! with an NTP-style exchange over the node's HTTP API (`GET /api/v1/time`,
//! several requests on one kept-alive connection, the reply with the
//! smallest round trip kept): a direct TCP path to the node, so the error is
//! at most half a LAN round trip, where an exchange over MQTT would carry
//! the broker's queueing twice. It measures again every
//! [`REFRESH_EVERY`], and at once when a frame's capture time does not fit
//! the offset it has (a node whose clock just stepped).
//!
//! A node off by more than [`CORRECT_OVER`] has its frames placed on the
//! viewer's clock (capture time minus offset): sample times, segment names
//! and cuts then agree across the fleet and with sensor rows. The node's
//! own capture time stays in the file (`prft` box of each fragment).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use shared::messages::{ClockFigures, TimeReply};
use tokio::io::BufReader;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use shared::time::now_us;

use crate::node_http::{self, NodeHttp};

/// A node whose clock is off by more than this has its frames placed on
/// the viewer's clock; one that comes back within half of it keeps its own
/// capture times again (so an offset near the limit does not flap).
pub const CORRECT_OVER: Duration = Duration::from_millis(50);
/// An offset this large is shown as a warning on the state topic and the
/// dashboard.
pub const WARN_OVER: Duration = Duration::from_secs(1);
/// A change of the offset larger than this between two measurements, beyond
/// what their errors allow, is a step of the node's clock: logged, and
/// shown as a warning for [`STEP_SHOWN_FOR`].
pub const STEP_OVER: Duration = Duration::from_millis(50);
/// How fast a kept measurement's error grows (parts per million): a Pi's
/// crystal without network time drifts by up to this.
const DRIFT_PPM: u64 = 50;
pub const STEP_SHOWN_FOR: Duration = Duration::from_secs(300);
/// How often an offset is measured again; a Pi's crystal drifts by at most
/// a few milliseconds in that time.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Exchanges per measurement; the one with the smallest round trip counts.
const EXCHANGES: usize = 8;
/// A measurement that takes longer than this has failed.
const MEASURE_LIMIT: Duration = Duration::from_secs(3);
/// Measurements asked for by frames are at least this far apart.
const FORCED_GAP: Duration = Duration::from_secs(1);
/// One measurement of a node's clock.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    /// Node clock minus viewer clock.
    pub offset_us: i64,
    pub rtt_us: u64,
    pub synchronized: Option<bool>,
    /// When it was taken.
    pub at: Instant,
}

impl Estimate {
    /// How far the offset may be from the truth now: half the round trip
    /// (the reply came somewhere in it) plus the drift since it was taken.
    pub fn error_us(&self, now: Instant) -> u64 {
        let age_us = now.saturating_duration_since(self.at).as_micros() as u64;
        self.rtt_us / 2 + age_us * DRIFT_PPM / 1_000_000
    }
}

/// What the viewer knows of one node's clock; shared by its cameras.
#[derive(Debug)]
pub struct NodeClock {
    node: String,
    /// `host:port` of the node's HTTP server, if it has one.
    pub(super) http: Option<String>,
    pub(super) estimate: watch::Sender<Option<Estimate>>,
    /// Whether frames are placed on the viewer's clock.
    corrected: AtomicBool,
    /// The last step: when, and by how much (µs).
    step: Mutex<Option<(DateTime<Utc>, Instant, i64)>>,
    measuring: AtomicBool,
    last_forced: Mutex<Option<Instant>>,
    /// Failures are logged once per run of them.
    pub(super) failing: AtomicBool,
}

impl NodeClock {
    pub fn new(node: &str, http: Option<String>) -> Arc<Self> {
        Arc::new(NodeClock {
            node: node.to_owned(),
            http,
            estimate: watch::Sender::new(None),
            corrected: AtomicBool::new(false),
            step: Mutex::new(None),
            measuring: AtomicBool::new(false),
            last_forced: Mutex::new(None),
            failing: AtomicBool::new(false),
        })
    }

    pub fn estimate(&self) -> Option<Estimate> {
        *self.estimate.borrow()
    }

    /// The offset frames are corrected by: zero while within the threshold.
    pub fn applied_offset_us(&self) -> i64 {
        match self.estimate() {
            Some(e) if self.corrected.load(Ordering::Relaxed) => e.offset_us,
            _ => 0,
        }
    }

    /// Measures every [`REFRESH_EVERY`] until `cancel`.
    pub async fn refresh(self: Arc<Self>, cancel: CancellationToken) {
        let Some(http) = self.http.clone() else {
            tracing::warn!(node = %self.node, "the node advertises no HTTP address: its clock cannot be measured, its frames keep the node's capture times");
            return;
        };
        let mut ticker = tokio::time::interval(REFRESH_EVERY);
        while cancel.run_until_cancelled(ticker.tick()).await.is_some() {
            self.measure_now(&http).await;
        }
    }

    /// Starts a measurement in the background unless one is running or one
    /// was asked for less than [`FORCED_GAP`] ago.
    pub(super) fn ask(self: &Arc<Self>) {
        let Some(http) = self.http.clone() else {
            return;
        };
        {
            let mut last = self.last_forced.lock().expect("clock lock");
            if last.is_some_and(|at| at.elapsed() < FORCED_GAP) {
                return;
            }
            *last = Some(Instant::now());
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.measure_now(&http).await });
    }

    async fn measure_now(&self, http: &str) {
        if self.measuring.swap(true, Ordering::AcqRel) {
            return;
        }
        let result = tokio::time::timeout(MEASURE_LIMIT, measure(http))
            .await
            .map_err(|_| anyhow!("no answer within {} s", MEASURE_LIMIT.as_secs()))
            .and_then(|r| r);
        self.measuring.store(false, Ordering::Release);
        match result {
            Ok(e) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(node = %self.node, "measuring the node's clock again");
                }
                self.update(e);
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(node = %self.node, "cannot measure the node's clock at {http}/api/v1/time: {e:#}");
                }
            }
        }
    }

    /// Takes a new measurement: logs a step, decides whether to correct.
    ///
    /// A measurement is only as good as its round trip: on a busy Wi-Fi
    /// link one takes 200 ms and may be 100 ms off. One within the errors
    /// of the last and less precise than it is not taken (its
    /// synchronisation flag is); one beyond them is a step of the node's
    /// clock.
    pub fn update(&self, e: Estimate) {
        let before = self.estimate();
        let e = match before {
            None => e,
            Some(b) => {
                let now = Instant::now();
                let step = e.offset_us - b.offset_us;
                let allowed = STEP_OVER.as_micros() as u64 + e.error_us(now) + b.error_us(now);
                if step.unsigned_abs() > allowed {
                    tracing::warn!(
                        node = %self.node,
                        "the node's clock stepped by {:+.3} s (now {}, {} ms round trip); frames stay in order on the viewer's clock",
                        step as f64 / 1e6,
                        describe_offset(e.offset_us),
                        e.rtt_us as f64 / 1000.0,
                    );
                    *self.step.lock().expect("clock lock") =
                        Some((Utc::now(), Instant::now(), step));
                    e
                } else if b.error_us(now) < e.error_us(now) {
                    Estimate {
                        synchronized: e.synchronized,
                        ..b
                    }
                } else {
                    e
                }
            }
        };
        let off = e.offset_us.unsigned_abs();
        let limit = CORRECT_OVER.as_micros() as u64;
        let was = self.corrected.load(Ordering::Relaxed);
        // Corrected once surely over the limit, left once under half of it.
        let corrected = if was {
            off > limit / 2
        } else {
            off > limit + e.error_us(Instant::now())
        };
        if before.is_none() {
            self.first(&e, corrected);
        }
        if corrected != was {
            self.corrected.store(corrected, Ordering::Relaxed);
            if before.is_some() {
                tracing::info!(
                    node = %self.node,
                    "{} its frames' capture times",
                    if corrected { "correcting" } else { "no longer correcting" }
                );
            }
        }
        self.estimate.send_replace(Some(e));
    }

    /// Logs the first measurement.
    fn first(&self, e: &Estimate, corrected: bool) {
        let off = e.offset_us.unsigned_abs();
        let text = format!(
            "clock {} ({} ms round trip){}",
            describe_offset(e.offset_us),
            e.rtt_us as f64 / 1000.0,
            if corrected {
                "; its frames are placed on this viewer's clock"
            } else {
                ""
            }
        );
        if off >= WARN_OVER.as_micros() as u64 {
            tracing::warn!(node = %self.node, synchronized = ?e.synchronized, "{text}");
        } else {
            tracing::info!(node = %self.node, synchronized = ?e.synchronized, "{text}");
        }
    }

    /// For the state topic, the dashboard and /metrics.
    pub fn figures(&self) -> Option<ClockFigures> {
        let e = self.estimate()?;
        let mut warnings = Vec::new();
        if e.offset_us.unsigned_abs() >= WARN_OVER.as_micros() as u64 {
            warnings.push(format!("clock {}", describe_offset(e.offset_us)));
            // Said only with an offset: a node in step with the viewer
            // without NTP (a LAN with no time server) is no cause for alarm.
            if e.synchronized == Some(false) {
                warnings.push("the node says its clock is not synchronised".to_owned());
            }
        }
        if let Some((when, at, by)) = *self.step.lock().expect("clock lock") {
            if at.elapsed() < STEP_SHOWN_FOR {
                warnings.push(format!(
                    "clock stepped by {:+.3} s at {}",
                    by as f64 / 1e6,
                    when.format("%H:%M:%SZ")
                ));
            }
        }
        Some(ClockFigures {
            // `+ 0.0` turns a rounded -0.0 into 0.
            offset_ms: (e.offset_us as f64 / 100.0).round() / 10.0 + 0.0,
            rtt_ms: (e.rtt_us as f64 / 1000.0 * 100.0).round() / 100.0,
            corrected: self.corrected.load(Ordering::Relaxed),
            synchronized: e.synchronized,
            warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        })
    }
}

fn describe_offset(offset_us: i64) -> String {
    let s = offset_us.unsigned_abs() as f64 / 1e6;
    let side = if offset_us < 0 { "behind" } else { "ahead of" };
    if s >= 1.0 {
        format!("{s:.3} s {side} the viewer's")
    } else {
        format!("{:.1} ms {side} the viewer's", s * 1000.0)
    }
}

/// `http://host:port` (or `https://`) of a node's camera URL: where its
/// HTTP server is.
pub fn http_authority(url: &str) -> Option<String> {
    let node = NodeHttp::parse(url)?;
    let scheme = if node.tls { "https" } else { "http" };
    Some(format!("{scheme}://{}", node.authority))
}

/// Largest `/api/v1/time` reply body read; a TimeReply is under 100 bytes.
const TIME_BODY_LIMIT: usize = 4 * 1024;

/// [`EXCHANGES`] requests on one connection; the reply with the smallest
/// round trip gives the offset (its error is at most half that trip).
pub async fn measure(http: &str) -> Result<Estimate> {
    let node = NodeHttp::parse(http).with_context(|| format!("{http:?} is not an http(s) URL"))?;
    let mut stream = BufReader::new(node.connect().await?);
    let request = format!(
        "GET /api/v1/time HTTP/1.1\r\nHost: {}\r\nUser-Agent: camfleet-viewer\r\n\r\n",
        node.authority
    );
    let mut best: Option<Estimate> = None;
    for _ in 0..EXCHANGES {
        let sent = now_us();
        let reply = node_http::request(&mut stream, request.as_bytes(), TIME_BODY_LIMIT).await?;
        let back = now_us();
        if reply.status != 200 {
            bail!(
                "HTTP {} (a node too old for /api/v1/time?): {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            );
        }
        let reply: TimeReply = serde_json::from_slice(&reply.body)
            .context("the node's /api/v1/time reply is not TimeReply JSON")?;
        let rtt_us = back.saturating_sub(sent);
        let midpoint = sent + rtt_us / 2;
        let e = Estimate {
            offset_us: reply.unix_us as i64 - midpoint as i64,
            rtt_us,
            synchronized: reply.synchronized,
            at: Instant::now(),
        };
        if best.is_none_or(|b| e.rtt_us < b.rtt_us) {
            best = Some(e);
        }
    }
    best.ok_or_else(|| anyhow!("no exchange"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(offset_us: i64) -> Estimate {
        Estimate {
            offset_us,
            rtt_us: 200,
            synchronized: Some(true),
            at: Instant::now(),
        }
    }

    #[test]
    fn small_offsets_are_left_alone_and_large_ones_corrected_without_flapping() {
        let clock = NodeClock::new("pi", None);
        clock.update(estimate(20_000));
        assert_eq!(clock.applied_offset_us(), 0);
        clock.update(estimate(-60_000));
        assert_eq!(clock.applied_offset_us(), -60_000);
        // Between half the threshold and the threshold: stays corrected.
        clock.update(estimate(-40_000));
        assert_eq!(clock.applied_offset_us(), -40_000);
        clock.update(estimate(-10_000));
        assert_eq!(clock.applied_offset_us(), 0);
        let f = clock.figures().unwrap();
        assert!(!f.corrected);
        assert!(
            f.warning.unwrap().contains("stepped by"),
            "steps of 80 ms were seen"
        );
    }

    #[test]
    fn a_measurement_over_a_slow_round_trip_is_no_step_and_no_correction() {
        let clock = NodeClock::new("pi", None);
        // 150 ms round trips: each may be 75 ms off.
        let slow = |offset_us| Estimate {
            rtt_us: 150_000,
            ..estimate(offset_us)
        };
        clock.update(slow(60_000));
        assert_eq!(clock.applied_offset_us(), 0, "60 ms within its error");
        clock.update(estimate(1_000));
        clock.update(slow(-70_000));
        let e = clock.estimate().unwrap();
        assert_eq!(e.offset_us, 1_000, "the more precise measurement is kept");
        assert_eq!(clock.applied_offset_us(), 0);
        assert_eq!(clock.figures().unwrap().warning, None, "no step seen");
        // Beyond the errors it is a step.
        clock.update(slow(-200_000));
        assert_eq!(clock.applied_offset_us(), -200_000);
        assert!(clock
            .figures()
            .unwrap()
            .warning
            .unwrap()
            .contains("stepped by"));
    }

    #[test]
    fn a_kept_measurements_error_grows_with_its_age() {
        let e = Estimate {
            at: Instant::now() - Duration::from_secs(100),
            ..estimate(0)
        };
        // 100 µs of round trip, then 50 ppm of 100 s.
        let err = e.error_us(Instant::now());
        assert!((5_100..5_200).contains(&err), "{err}");
    }

    #[test]
    fn a_large_offset_warns_and_names_its_side() {
        let clock = NodeClock::new("pi", None);
        clock.update(Estimate {
            synchronized: Some(false),
            ..estimate(-5_400_000_000)
        });
        let f = clock.figures().unwrap();
        assert_eq!(f.offset_ms, -5_400_000.0);
        assert!(f.corrected);
        let warning = f.warning.unwrap();
        assert!(warning.contains("5400.000 s behind"), "{warning}");
        assert!(warning.contains("not synchronised"), "{warning}");
    }

    #[test]
    fn the_http_authority_comes_from_a_camera_url() {
        assert_eq!(
            http_authority("http://10.0.0.7:8080/cameras/cam0/stream.mjpg").as_deref(),
            Some("http://10.0.0.7:8080")
        );
        assert_eq!(
            http_authority("https://[fe80::1]:80/x").as_deref(),
            Some("https://[fe80::1]:80")
        );
        assert_eq!(http_authority("rtsp://h/x"), None);
    }
}
