//! The retry delay of every long-lived peer: 0.5 s doubling to a cap,
//! back to the start after a healthy stretch.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long a peer must have run without error for its next failure to be
/// treated as a first one again.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    started: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
            started: None,
        }
    }

    /// The default for cameras, connections and the MQTT loop: 0.5 s to 30 s.
    pub fn standard() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }

    /// Call when an attempt starts (a process spawned, a connection made).
    pub fn attempt_started(&mut self) {
        self.started = Some(Instant::now());
    }

    /// The delay before the next attempt, after a failure.
    pub fn next_delay(&mut self) -> Duration {
        if self
            .started
            .take()
            .is_some_and(|t| t.elapsed() >= HEALTHY_AFTER)
        {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Forget earlier failures (a connection came up).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// The loop of every long-lived peer (STYLE.md, convention 4): runs
/// `run_once` until `cancel`, and after each run that ends on its own waits
/// the backoff before the next; `on_failure` gets the run's error (`None`
/// when it simply ended) and the delay, to log and count it.
pub async fn run_with_backoff<E, F>(
    cancel: &CancellationToken,
    mut run_once: impl FnMut() -> F,
    mut on_failure: impl FnMut(Option<E>, Duration),
) where
    F: Future<Output = Result<(), E>>,
{
    let mut backoff = Backoff::standard();
    loop {
        backoff.attempt_started();
        let result = run_once().await;
        if cancel.is_cancelled() {
            return;
        }
        let delay = backoff.next_delay();
        on_failure(result.err(), delay);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 3000, 3000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn a_short_run_does_not_reset() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        b.next_delay();
        b.attempt_started();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
