//! One camera's frames on the viewer's timeline: each capture time
//! corrected by its node's measured offset ([`super::clock`]), and never
//! out of order, also across a step of the node's clock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use shared::time::now_us;

use super::clock::NodeClock;

/// A frame stamped later than its arrival by more than this (plus the
/// offset) means the node's clock moved forward; one stamped earlier by
/// more than [`LATE_LIMIT_US`] that it may have moved back. Either way the
/// offset is measured again before the frame is placed.
const EARLY_SLACK_US: i64 = 100_000;
const LATE_LIMIT_US: i64 = 2_000_000;
/// How long a frame waits for a measurement it asked for: the first frame
/// of a camera waits for the first measurement, later ones briefly.
const FIRST_WAIT: Duration = Duration::from_secs(3);
const RECHECK_WAIT: Duration = Duration::from_millis(300);

/// One camera's frames on the viewer's timeline: corrected by its node's
/// offset, never out of order.
#[derive(Debug)]
pub struct Timeline {
    clock: Arc<NodeClock>,
    last_us: Option<u64>,
    /// Frames moved later than their corrected time to keep the order.
    pub held_back: u64,
}

impl Timeline {
    pub fn new(clock: Arc<NodeClock>) -> Self {
        Timeline {
            clock,
            last_us: None,
            held_back: 0,
        }
    }

    /// Where a frame the node stamped `node_us` and that arrived now goes on
    /// the viewer's clock. May wait for a measurement of the node's clock:
    /// the camera's first frame up to [`FIRST_WAIT`], a frame that does not
    /// fit the offset up to [`RECHECK_WAIT`].
    pub async fn place(&mut self, node_us: u64) -> u64 {
        let arrived_us = now_us();
        let measurable = self.clock.http.is_some() && !self.clock.failing.load(Ordering::Relaxed);
        let wait = match self.clock.estimate() {
            None if self.last_us.is_none() && measurable => Some(FIRST_WAIT),
            None => None,
            Some(e) => {
                let seen = node_us as i64 - arrived_us as i64;
                let fits =
                    seen <= e.offset_us + EARLY_SLACK_US && seen >= e.offset_us - LATE_LIMIT_US;
                (!fits).then_some(RECHECK_WAIT)
            }
        };
        if let Some(wait) = wait {
            let mut changes = self.clock.estimate.subscribe();
            changes.mark_unchanged();
            self.clock.ask();
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
        let t = (node_us as i64 - self.clock.applied_offset_us()).max(0) as u64;
        let t = match self.last_us {
            Some(last) if t <= last => {
                self.held_back += 1;
                last + 1
            }
            _ => t,
        };
        self.last_us = Some(t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::super::clock::Estimate;
    use super::*;

    fn estimate(offset_us: i64) -> Estimate {
        Estimate {
            offset_us,
            rtt_us: 500,
            synchronized: Some(true),
            at: std::time::Instant::now(),
        }
    }

    #[tokio::test]
    async fn frames_are_placed_in_order_across_a_step() {
        let clock = NodeClock::new("pi", None);
        let now = now_us();
        clock.update(estimate(-5_400_000_000));
        let mut line = Timeline::new(Arc::clone(&clock));
        let node_now = now - 5_400_000_000;
        let a = line.place(node_now).await;
        assert!(a.abs_diff(now) < 1_000_000);
        // The estimate moves back by 10 s (a step seen late): order holds.
        clock.update(estimate(-5_390_000_000));
        let b = line.place(node_now + 33_000).await;
        assert_eq!(b, a + 1);
        assert_eq!(line.held_back, 1);
    }
}
