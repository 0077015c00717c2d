//! How much a live WebSocket may have in flight (pure: the caller passes
//! the time).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// The unacknowledged bytes a socket may have are what its link delivered
/// in this long, so a picture waits at most about this long for the ones
/// sent before it. A quarter of a second keeps a throttled phone well
/// under a second behind while a LAN still carries dozens of tiles.
pub const QUEUE_TIME: Duration = Duration::from_millis(250);
/// The window of a socket whose rate is not known yet, or is low: a few
/// 640x480 pictures. One frame may always go when nothing is in flight,
/// however large.
pub const MIN_WINDOW: usize = 64 * 1024;
/// The largest window, whatever the link: about 40 1080p pictures.
pub const MAX_WINDOW: usize = 8 * 1024 * 1024;
/// The link's rate is what was acknowledged over this span.
const RATE_SPAN: Duration = Duration::from_secs(1);

/// What a socket has in flight: at most one frame per camera, and bytes
/// within what its link delivers in [`QUEUE_TIME`] (pure: the caller
/// passes the time).
#[derive(Debug, Default)]
pub struct Window {
    unacked: BTreeMap<u32, InFlight>,
    in_flight: usize,
    /// Acknowledged bytes with their time, over [`RATE_SPAN`].
    delivered: VecDeque<(Instant, usize)>,
    delivered_bytes: usize,
    next_number: u32,
}

#[derive(Debug)]
struct InFlight {
    camera: String,
    bytes: usize,
    sent_at: Instant,
}

impl Window {
    /// The bytes that may be in flight now.
    pub fn limit(&mut self, now: Instant) -> usize {
        self.forget_before(now);
        let rate = self.delivered_bytes as f64 / RATE_SPAN.as_secs_f64();
        ((rate * QUEUE_TIME.as_secs_f64()) as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    /// Whether `camera` may be sent a frame now.
    pub fn allows(&mut self, camera: &str, now: Instant) -> bool {
        let waiting = self.unacked.values().any(|f| f.camera == camera);
        !waiting && (self.in_flight == 0 || self.in_flight < self.limit(now))
    }

    /// Notes a frame of `bytes` sent to `camera`; its message number.
    pub fn sent(&mut self, camera: &str, bytes: usize, now: Instant) -> u32 {
        let number = self.next_number;
        self.next_number = self.next_number.wrapping_add(1);
        self.in_flight += bytes;
        self.unacked.insert(
            number,
            InFlight {
                camera: camera.to_owned(),
                bytes,
                sent_at: now,
            },
        );
        number
    }

    /// The page is done with message `number`; false when none was in flight.
    pub fn ack(&mut self, number: u32, now: Instant) -> bool {
        let Some(done) = self.unacked.remove(&number) else {
            return false;
        };
        self.in_flight -= done.bytes;
        self.delivered.push_back((now, done.bytes));
        self.delivered_bytes += done.bytes;
        self.forget_before(now);
        true
    }

    /// A camera that is no longer shown: its frame in flight no longer
    /// holds the others back.
    pub fn forget(&mut self, camera: &str) {
        let gone: Vec<u32> = (self.unacked.iter())
            .filter(|(_, f)| f.camera == camera)
            .map(|(n, _)| *n)
            .collect();
        for number in gone {
            if let Some(f) = self.unacked.remove(&number) {
                self.in_flight -= f.bytes;
            }
        }
    }

    /// When the oldest unacknowledged frame was sent.
    pub fn oldest(&self) -> Option<Instant> {
        self.unacked.values().map(|f| f.sent_at).min()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(at, bytes)) = self.delivered.front() {
            if now.saturating_duration_since(at) <= RATE_SPAN {
                break;
            }
            self.delivered.pop_front();
            self.delivered_bytes -= bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_per_camera_in_flight_and_bytes_within_the_window() {
        let now = Instant::now();
        let mut window = Window::default();
        assert!(window.allows("a", now));
        let a = window.sent("a", 200_000, now);
        assert!(!window.allows("a", now), "a's frame is in flight");
        assert!(!window.allows("b", now), "200 kB is past the first window");
        assert!(window.ack(a, now));
        assert!(!window.ack(a, now), "acked once");
        assert!(window.allows("a", now) && window.allows("b", now));
        let b = window.sent("b", 10_000, now);
        assert!(window.allows("c", now), "10 kB is within the window");
        window.forget("b");
        assert_eq!(window.in_flight(), 0);
        assert!(!window.ack(b, now), "forgotten with its camera");
    }

    #[test]
    fn the_window_is_what_the_link_delivers_in_a_quarter_second() {
        let start = Instant::now();
        let mut window = Window::default();
        assert_eq!(window.limit(start), MIN_WINDOW);
        // 4 MB acknowledged within a second: 1 MB may be in flight.
        for i in 0..40 {
            let at = start + Duration::from_millis(i * 20);
            let n = window.sent("a", 100_000, at);
            window.ack(n, at);
        }
        let late = start + Duration::from_millis(800);
        assert_eq!(window.limit(late), 1_000_000);
        // A second later nothing was delivered: back to the smallest.
        assert_eq!(window.limit(late + Duration::from_secs(2)), MIN_WINDOW);
        assert_eq!(window.oldest(), None);
    }
}
