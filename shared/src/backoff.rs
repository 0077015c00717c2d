//! The retry delay of every long-lived peer: 0.5 s doubling to a cap,
//! back to the start after a healthy stretch, optionally spread by a
//! jitter. On tokio's clock, so a paused test runtime drives it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

/// How long a peer must have run without error for its next failure to be
/// treated as a first one again.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// The spread of a jittered delay: each is the schedule's times a factor
/// in `[1 - JITTER, 1 + JITTER)`, so peers that failed together (cameras
/// after a network outage) do not all come back in the same instant.
pub const JITTER: f64 = 0.2;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    started: Option<Instant>,
    jitter: bool,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
            started: None,
            jitter: false,
        }
    }

    /// The same schedule, each delay spread by [`JITTER`].
    pub fn jittered(mut self) -> Self {
        self.jitter = true;
        self
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
        if self.jitter {
            spread(delay)
        } else {
            delay
        }
    }

    /// Forget earlier failures (a connection came up).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// `delay` times a factor in `[1 - JITTER, 1 + JITTER)`; the wall
/// clock's low bits are noise enough for spreading retries.
fn spread(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let unit = f64::from(nanos % 4096) / 4096.0;
    delay.mul_f64(1.0 - JITTER + unit * 2.0 * JITTER)
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

    #[tokio::test(start_paused = true)]
    async fn a_short_run_does_not_reset_and_a_healthy_one_does() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        b.next_delay();
        b.attempt_started();
        tokio::time::advance(HEALTHY_AFTER - Duration::from_millis(1)).await;
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        b.next_delay(); // 2 s
        b.attempt_started();
        tokio::time::advance(HEALTHY_AFTER).await;
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_each_delay_around_the_schedule() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4)).jittered();
        for planned in [500.0, 1000.0, 2000.0, 4000.0, 4000.0] {
            let got = b.next_delay().as_secs_f64() * 1000.0;
            let (low, high) = (planned * (1.0 - JITTER), planned * (1.0 + JITTER));
            assert!(low <= got && got < high, "{got} ms outside {low}..{high}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_with_backoff_waits_the_schedule_between_runs() {
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let mut runs = Vec::new();
        let stop = cancel.clone();
        run_with_backoff(
            &cancel,
            || {
                runs.push(started.elapsed());
                if runs.len() == 4 {
                    stop.cancel();
                }
                async { Err::<(), &str>("refused") }
            },
            |error, _| assert_eq!(error, Some("refused")),
        )
        .await;
        let ms: Vec<u128> = runs.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [0, 500, 1500, 3500]);
    }
}
