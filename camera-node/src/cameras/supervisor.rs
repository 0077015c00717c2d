//! One camera's supervisor: runs its source, restarts it with backoff and
//! jitter when it exits or stalls, feeds the hub, and keeps the camera's
//! [`Status`] (state, runs, restarts, log) for the API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use shared::backoff::Backoff;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::CameraConfig;
use crate::source::Source;
use fanout::Hub;

use super::status::{RunState, Status};

/// The first frame may take longer than the watchdog: `rpicam-vid` tunes
/// exposure for a second or two before it writes anything.
const FIRST_FRAME_GRACE: Duration = Duration::from_secs(10);

pub struct Camera {
    pub config: CameraConfig,
    pub hub: Arc<Hub>,
    /// Longest silence from a running camera before it is restarted.
    pub watchdog: Duration,
    pub status: Arc<Status>,
    /// Ends the current run at once and starts the next without backoff.
    pub restart: Arc<Notify>,
}

/// How one run ended.
struct RunEnd {
    frames: u64,
    /// `None` when it was told to stop.
    error: Option<anyhow::Error>,
    /// It never started (the program is missing, the device is absent).
    not_started: bool,
}

/// Why the supervisor stopped waiting for a run or a delay.
enum Interrupt {
    Cancelled,
    Disabled,
    Restart,
}

impl Camera {
    /// Runs until `cancel`; never returns early. Capture stops while the
    /// hub is disabled (the HTTP control API) and starts again when enabled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut enabled = self.hub.watch_enabled();
        let mut backoff = Backoff::standard().jittered();
        self.status.set_secrets(self.config.source.secrets());
        while !cancel.is_cancelled() {
            if !*enabled.borrow_and_update() {
                self.status.set_state(RunState::Stopped);
                self.status.note("capture stopped through the API");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = until(&mut enabled, true) => {}
                }
                self.status.note("capture started through the API");
                backoff.reset();
            }
            backoff.attempt_started();
            let run = cancel.child_token();
            let once = self.run_once(&run);
            tokio::pin!(once);
            let interrupted = tokio::select! {
                end = &mut once => Err(end),
                why = self.interrupt(&cancel, &mut enabled) => Ok(why),
            };
            let end = match interrupted {
                Ok(why) => {
                    // The run closes its source; how it ended is the interrupt's.
                    run.cancel();
                    once.await;
                    self.status.run_ended(why.name(), None, false);
                    if matches!(why, Interrupt::Restart) {
                        self.status.note("restarting through the API");
                        backoff.reset();
                    }
                    continue;
                }
                Err(end) => end,
            };
            if cancel.is_cancelled() {
                self.status.run_ended("node stopping", None, false);
                break;
            }
            let error = end.error.unwrap_or_else(|| anyhow!("source ended"));
            if self.config.source_waits() && end.frames > 0 {
                // A publisher that left is not a failure: listen again.
                self.status.run_ended(&format!("{error:#}"), None, false);
                self.status.note("the publisher left; waiting for the next");
                backoff.reset();
                continue;
            }
            let delay = backoff.next_delay();
            self.status
                .run_ended(&format!("{error:#}"), Some(&format!("{error:#}")), true);
            self.hub.count_restart();
            self.status.warn(&format!(
                "camera stopped: {error:#}; restarting in {:.1} s",
                delay.as_secs_f64()
            ));
            self.status.set_state(if end.not_started {
                RunState::Failed
            } else {
                RunState::Backoff
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                why = self.interrupt(&cancel, &mut enabled) => {
                    if matches!(why, Interrupt::Restart) {
                        self.status.note("restarting through the API");
                        backoff.reset();
                    }
                }
            }
        }
        self.status.set_state(RunState::Stopped);
        tracing::info!("camera stopped");
    }

    async fn interrupt(
        &self,
        cancel: &CancellationToken,
        enabled: &mut watch::Receiver<bool>,
    ) -> Interrupt {
        tokio::select! {
            _ = cancel.cancelled() => Interrupt::Cancelled,
            _ = until(enabled, false) => Interrupt::Disabled,
            _ = self.restart.notified() => Interrupt::Restart,
        }
    }

    /// One run of the source: frames until it fails, stalls or `cancel`.
    async fn run_once(&self, cancel: &CancellationToken) -> RunEnd {
        let c = &self.config;
        let waits = c.source_waits();
        self.status.run_started();
        self.status.set_state(RunState::Starting);
        let opened = tokio::select! {
            _ = cancel.cancelled() => return RunEnd { frames: 0, error: None, not_started: false },
            opened = Source::open(&c.source, c.capture, c.output, &c.controls, &self.status) => opened,
        };
        let mut source = match opened {
            Ok(source) => source,
            Err(e) => {
                let spawn_failed = format!("{e:#}").contains("cannot start");
                return RunEnd {
                    frames: 0,
                    error: Some(e),
                    not_started: spawn_failed,
                };
            }
        };
        if waits {
            self.status.set_state(RunState::Waiting);
            self.status
                .note(&format!("waiting for a publisher at {}", c.source));
        }
        let mut frames = 0u64;
        let mut silence = Silence::new();
        let result: Result<()> = 'frames: loop {
            let limit = match frames {
                // A listener waits as long as it takes for a publisher.
                0 if waits => Duration::MAX,
                0 => self.watchdog.max(FIRST_FRAME_GRACE),
                _ => self.watchdog,
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
                            self.status.set_state(RunState::Stalled);
                            break 'frames Err(anyhow!("no frame for {:.1} s (watchdog)", limit.as_secs_f64()));
                        }
                    }
                }
            };
            match next {
                Err(e) => break Err(e),
                Ok(picture) => {
                    let len = picture.data.len();
                    self.hub.publish(picture.codec, picture.key, picture.data);
                    if frames == 0 {
                        self.status
                            .note(&format!("first frame from {} ({len} bytes)", c.source));
                        self.status.set_state(RunState::Running);
                    }
                    frames += 1;
                    silence.reset();
                    self.status.count_frame();
                }
            }
        };
        source.close().await;
        RunEnd {
            frames,
            error: result.err(),
            not_started: false,
        }
    }
}

impl Interrupt {
    fn name(&self) -> &'static str {
        match self {
            Interrupt::Cancelled => "node stopping",
            Interrupt::Disabled => "stopped through the API",
            Interrupt::Restart => "restarted through the API",
        }
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
