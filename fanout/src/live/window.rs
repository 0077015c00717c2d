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
/// The smallest window of a stream (an H.264 camera's frames) once one
/// frame is in flight: a few frames of a 1080p stream.
pub const MIN_STREAM_WINDOW: usize = 16 * 1024;
/// The largest window, whatever the link: about 40 1080p pictures.
pub const MAX_WINDOW: usize = 8 * 1024 * 1024;
/// The link's rate is what was acknowledged over this span.
const RATE_SPAN: Duration = Duration::from_secs(1);
/// The link's round trip is the quickest acknowledgement over this span.
const RTT_SPAN: Duration = Duration::from_secs(5);

/// What a socket has in flight: at most one picture per MJPEG camera (an
/// H.264 camera's stream may have several frames in flight), and bytes
/// within what its link delivers in [`QUEUE_TIME`] (pure: the caller
/// passes the time).
#[derive(Debug, Default)]
pub struct Window {
    unacked: BTreeMap<u32, InFlight>,
    in_flight: usize,
    /// Acknowledged messages over [`RATE_SPAN`]: when, their bytes and
    /// the time the link took to carry them.
    delivered: VecDeque<Delivered>,
    delivered_bytes: usize,
    delivered_time: Duration,
    /// When the last acknowledgement came.
    last_ack: Option<Instant>,
    /// When each recent acknowledgement came and how long it took.
    round_trips: VecDeque<(Instant, Duration)>,
    next_number: u32,
}

#[derive(Debug)]
struct Delivered {
    at: Instant,
    bytes: usize,
    took: Duration,
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
        let rate = self.rate(now);
        ((rate * QUEUE_TIME.as_secs_f64()) as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    /// Whether `camera` may be sent a picture now: its last one was
    /// acknowledged and the window has room.
    pub fn allows(&mut self, camera: &str, now: Instant) -> bool {
        let waiting = self.unacked.values().any(|f| f.camera == camera);
        !waiting && (self.in_flight == 0 || self.in_flight < self.limit(now))
    }

    /// Whether the window has room for one more frame of a stream (whose
    /// frames all count, so several may be in flight): what the link
    /// delivers in [`QUEUE_TIME`] and its round trip, with a smaller floor
    /// than a picture's window, so that on a slow link a stream's frames
    /// wait in the hub (where a reader that falls behind skips to a
    /// keyframe) rather than in the link.
    pub fn has_room(&mut self, now: Instant) -> bool {
        if self.in_flight == 0 {
            return true;
        }
        let rate = self.rate(now);
        let span = QUEUE_TIME + self.round_trip(now);
        let limit = ((rate * span.as_secs_f64()) as usize).clamp(MIN_STREAM_WINDOW, MAX_WINDOW);
        self.in_flight < limit
    }

    /// The link's round trip: the quickest acknowledgement lately, less
    /// the time its bytes took at the link's rate (zero before the first).
    pub fn round_trip(&mut self, now: Instant) -> Duration {
        while let Some(&(at, _)) = self.round_trips.front() {
            if now.saturating_duration_since(at) <= RTT_SPAN {
                break;
            }
            self.round_trips.pop_front();
        }
        self.round_trips
            .iter()
            .map(|(_, rtt)| *rtt)
            .min()
            .unwrap_or_default()
    }

    /// Bytes a second the link carried, from the messages acknowledged
    /// over the last [`RATE_SPAN`]: their bytes over the time their
    /// transfers took. Each took from when it went, or from the
    /// acknowledgement before it if that came later (it waited behind
    /// the messages before it), to its own acknowledgement; so a large
    /// message that took seconds counts as the slow link it crossed,
    /// not as a burst of bytes at the instant of its acknowledgement.
    fn rate(&mut self, now: Instant) -> f64 {
        self.forget_before(now);
        if self.delivered_bytes == 0 {
            return 0.0;
        }
        let took = self.delivered_time.max(Duration::from_millis(1));
        self.delivered_bytes as f64 / took.as_secs_f64()
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
        let started = self.last_ack.map_or(done.sent_at, |l| l.max(done.sent_at));
        self.last_ack = Some(now);
        self.delivered.push_back(Delivered {
            at: now,
            bytes: done.bytes,
            took: now.saturating_duration_since(started),
        });
        self.delivered_bytes += done.bytes;
        self.delivered_time += now.saturating_duration_since(started);
        let rate = self.rate(now);
        let took = now.saturating_duration_since(done.sent_at);
        let carried = if rate > 0.0 {
            Duration::from_secs_f64(done.bytes as f64 / rate)
        } else {
            Duration::ZERO
        };
        self.round_trips
            .push_back((now, took.saturating_sub(carried)));
        if self.round_trips.len() > 1024 {
            self.round_trips.pop_front();
        }
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
        while let Some(front) = self.delivered.front() {
            if now.saturating_duration_since(front.at) <= RATE_SPAN {
                break;
            }
            self.delivered_bytes -= front.bytes;
            self.delivered_time -= front.took;
            self.delivered.pop_front();
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
    fn a_stream_has_what_the_link_carries_in_a_quarter_second_and_its_round_trip() {
        let start = Instant::now();
        let mut window = Window::default();
        let ms = Duration::from_millis;
        assert!(window.has_room(start));
        window.sent("a", 20_000, start);
        assert!(!window.has_room(start), "the floor: one 20 kB frame");
        // Each 10 kB frame acknowledged 100 ms after it went: 100 kB a
        // second, all of the time its bytes, so no round trip.
        let mut window = Window::default();
        for i in 0..10 {
            let at = start + ms(i * 200);
            let n = window.sent("a", 10_000, at);
            window.ack(n, at + ms(100));
        }
        let now = start + ms(1960);
        assert_eq!(window.round_trip(now), Duration::ZERO);
        window.sent("a", 20_000, now);
        assert!(window.has_room(now), "25 kB may be in flight");
        window.sent("a", 10_000, now);
        assert!(!window.has_room(now));
        assert!(window.allows("b", now), "a picture's floor is higher");
    }

    #[test]
    fn the_window_is_what_the_link_delivers_in_a_quarter_second() {
        let start = Instant::now();
        let mut window = Window::default();
        assert_eq!(window.limit(start), MIN_WINDOW);
        // 100 kB messages back to back, each acknowledged 25 ms after the
        // one before: 4 MB a second, so 1 MB may be in flight.
        for i in 0..40 {
            let at = start + Duration::from_millis(i * 25);
            let n = window.sent("a", 100_000, at);
            window.ack(n, at + Duration::from_millis(25));
        }
        let late = start + Duration::from_millis(1000);
        assert_eq!(window.limit(late), 1_000_000);
        // A second later nothing was delivered: back to the smallest.
        assert_eq!(window.limit(late + Duration::from_secs(2)), MIN_WINDOW);
        assert_eq!(window.oldest(), None);
    }

    #[test]
    fn a_large_message_that_took_seconds_counts_as_the_slow_link_it_crossed() {
        // A joiner's replay of a 464 kB group over a 65 kB/s link: its
        // acknowledgement is no burst of 464 kB/s that would let the next
        // frames pile up in the link.
        let start = Instant::now();
        let mut window = Window::default();
        let big = window.sent("a", 464_000, start);
        let acked = start + Duration::from_secs(7);
        window.ack(big, acked);
        let rate = window.rate(acked);
        assert!((rate - 464_000.0 / 7.0).abs() < 1.0, "{rate}");
        window.sent("a", 23_000, acked);
        assert!(!window.has_room(acked), "one keyframe in flight fills it");
        // Frames sent while one was in flight wait behind it: each took
        // from the acknowledgement before it.
        let mut window = Window::default();
        let ms = Duration::from_millis;
        let (a, b) = (
            window.sent("a", 10_000, start),
            window.sent("a", 10_000, start),
        );
        window.ack(a, start + ms(100));
        window.ack(b, start + ms(200));
        assert!((window.rate(start + ms(200)) - 100_000.0).abs() < 1.0);
    }
}
