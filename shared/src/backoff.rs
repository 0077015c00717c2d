//! The retry delay of every long-lived peer: 0.5 s doubling to a cap,
//! back to the start after a healthy stretch.

use std::time::{Duration, Instant};

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
