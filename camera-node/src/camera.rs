//! One camera's supervisor: runs its source, restarts it with backoff when
//! it exits or stalls, and feeds the hub.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use shared::backoff::run_with_backoff;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::CameraConfig;
use crate::source::Source;
use fanout::Hub;

/// The first frame may take longer than the watchdog: `rpicam-vid` tunes
/// exposure for a second or two before it writes anything.
const FIRST_FRAME_GRACE: Duration = Duration::from_secs(10);

pub struct Camera {
    pub config: CameraConfig,
    pub hub: Arc<Hub>,
    /// Longest silence from a running camera before it is restarted.
    pub watchdog: Duration,
}

impl Camera {
    /// Runs until `cancel`; never returns early. Capture stops while the
    /// hub is disabled (the HTTP control API) and starts again when enabled.
    pub async fn run(self, cancel: CancellationToken) {
        let hub = Arc::clone(&self.hub);
        let mut enabled = hub.watch_enabled();
        let on_failure = |error: Option<anyhow::Error>, delay: Duration| {
            let error = error.unwrap_or_else(|| anyhow!("source ended"));
            tracing::warn!(
                "camera stopped: {error:#}; restarting in {:.1} s",
                delay.as_secs_f64()
            );
            hub.count_restart();
        };
        while !cancel.is_cancelled() {
            let on = *enabled.borrow_and_update();
            if !on {
                tracing::info!("capture stopped through the API");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = until(&mut enabled, true) => {}
                }
                tracing::info!("capture started through the API");
            }
            let run = cancel.child_token();
            let capture = run_with_backoff(&run, || self.run_once(&run), &on_failure);
            tokio::pin!(capture);
            tokio::select! {
                _ = &mut capture => {}
                _ = until(&mut enabled, false) => {
                    run.cancel();
                    capture.await;
                }
            }
        }
        tracing::info!("camera stopped");
    }

    /// One run of the source: frames until it fails, stalls or `cancel`.
    async fn run_once(&self, cancel: &CancellationToken) -> Result<()> {
        let c = &self.config;
        let mut source = Source::open(&c.source, c.capture).await?;
        let mut first = true;
        let mut silence = Silence::new();
        let result = 'frames: loop {
            let limit = if first {
                self.watchdog.max(FIRST_FRAME_GRACE)
            } else {
                self.watchdog
            };
            // The read stays the same future across watchdog ticks: a
            // source's read is not cancel-safe.
            let next = source.next_frame();
            tokio::pin!(next);
            let next = loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break 'frames Ok(()),
                    next = &mut next => break next,
                    _ = silence.tick() => {
                        if silence.awake() > limit {
                            break 'frames Err(anyhow!("no frame for {:.1} s (watchdog)", limit.as_secs_f64()));
                        }
                    }
                }
            };
            match next {
                Err(e) => break Err(e),
                Ok(jpeg) => {
                    if first {
                        tracing::info!(bytes = jpeg.len(), "first frame from {}", c.source);
                        first = false;
                    }
                    silence.reset();
                    self.hub.publish(jpeg);
                }
            }
        };
        source.close().await;
        result
    }
}

/// How long a camera has been silent while the node was running. A node
/// that was stopped (SIGSTOP, a suspended VM, a long debugger pause) has
/// frames waiting in the pipe when it runs again: the time it was stopped
/// counts as one tick at most, so the camera gets its full watchdog
/// interval afresh instead of a restart at once.
struct Silence {
    ticker: tokio::time::Interval,
    awake: Duration,
    last: tokio::time::Instant,
}

/// How often the watchdog looks; also the most a pause adds to the silence.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);

impl Silence {
    fn new() -> Self {
        let mut ticker = tokio::time::interval(WATCHDOG_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Silence {
            ticker,
            awake: Duration::ZERO,
            last: tokio::time::Instant::now(),
        }
    }

    async fn tick(&mut self) {
        self.ticker.tick().await;
        let now = tokio::time::Instant::now();
        let gap = now.saturating_duration_since(self.last);
        if gap > WATCHDOG_TICK * 4 {
            tracing::info!(
                "the node did not run for {:.1} s (stopped or starved): the camera gets its watchdog interval afresh",
                gap.as_secs_f64()
            );
        }
        self.awake += gap.min(WATCHDOG_TICK * 2);
        self.last = now;
    }

    fn awake(&self) -> Duration {
        self.awake
    }

    fn reset(&mut self) {
        self.awake = Duration::ZERO;
        self.last = tokio::time::Instant::now();
    }
}

/// Waits until capture is turned on (or off); the watch guard is dropped
/// here, so callers stay `Send`.
async fn until(enabled: &mut watch::Receiver<bool>, on: bool) {
    let _ = enabled.wait_for(|now| *now == on).await;
}
