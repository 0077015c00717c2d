//! The short history of recent frames that lets every viewer read at its
//! own pace: a viewer that keeps up gets each frame even when the camera
//! hands over several at once, one that falls behind jumps to the newest.
//!
//! Frames are numbered by the order they entered the ring (the *index*,
//! contiguous even when the frames' own sequence numbers have gaps, as on a
//! relay); a viewer's cursor is the index of the next frame it wants.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::frame::Frame;

/// Most frames the ring holds. A camera pipe hands over a burst of a few
/// frames at most; within the staleness limit a 120 fps camera produces
/// 30. Past this a viewer has fallen behind whatever its reason.
pub const RING_FRAMES: usize = 64;

/// Most JPEG bytes the ring holds (the newest frame is kept even when it
/// alone is larger). At 1080p30 the staleness limit keeps about 0.8 MB;
/// this bounds a camera of huge frames (4K stills, a bad quality setting)
/// on a Pi with little memory.
pub const RING_BYTES: usize = 8 * 1024 * 1024;

/// A viewer whose next frame is older than this has fallen behind and
/// jumps to the newest frame. A reader that takes each frame promptly
/// sees frames a burst old at most (tens of milliseconds); a fifth of a
/// second leaves room for a busy machine's scheduling without letting a
/// slow link watch the past.
pub const STALE_AFTER: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub struct Ring {
    frames: VecDeque<Frame>,
    /// Index of `frames[0]`.
    first: u64,
    bytes: usize,
}

/// What a reader at a cursor gets.
#[derive(Debug)]
pub struct Next {
    pub frame: Frame,
    /// The reader's cursor after this frame.
    pub cursor: u64,
    /// Frames the reader jumped over to get here.
    pub skipped: u64,
}

impl Ring {
    /// Index the next pushed frame will have.
    pub fn end(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn newest(&self) -> Option<&Frame> {
        self.frames.back()
    }

    /// Adds a frame and drops the oldest past any bound: the frame count,
    /// the byte budget, or staleness (nobody would be sent those).
    pub fn push(&mut self, frame: Frame) {
        self.bytes += frame.jpeg.len();
        self.frames.push_back(frame);
        let now = Instant::now();
        while self.frames.len() > 1 {
            let oldest = &self.frames[0];
            let over = self.frames.len() > RING_FRAMES || self.bytes > RING_BYTES;
            if !over && !is_stale(oldest, now) {
                break;
            }
            self.bytes -= oldest.jpeg.len();
            self.frames.pop_front();
            self.first += 1;
        }
    }

    /// The frame for a reader whose cursor is `cursor`: the next one in
    /// order while it keeps up, else the newest; `None` when it has them all.
    /// `newest_first` takes the newest whatever the age of the next (a
    /// reader that fell behind and has not caught up since).
    pub fn next(&self, cursor: u64, newest_first: bool) -> Option<Next> {
        if cursor >= self.end() {
            return None;
        }
        let newest = self.end() - 1;
        let at = cursor
            .checked_sub(self.first)
            .map(|offset| &self.frames[offset as usize]);
        let in_order = |frame| !newest_first && !is_stale(frame, Instant::now());
        match at {
            Some(frame) if cursor == newest || in_order(frame) => Some(Next {
                frame: frame.clone(),
                cursor: cursor + 1,
                skipped: 0,
            }),
            _ => Some(Next {
                frame: self.frames.back().expect("not empty").clone(),
                cursor: newest + 1,
                skipped: newest - cursor,
            }),
        }
    }

    /// A cursor at the newest frame (a reader that joins now gets it first).
    pub fn newest_cursor(&self) -> u64 {
        self.end().saturating_sub(1)
    }
}

fn is_stale(frame: &Frame, now: Instant) -> bool {
    now.saturating_duration_since(frame.read_at) > STALE_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(seq: u64, len: usize) -> Frame {
        Frame {
            seq,
            captured_at_us: seq * 33_333,
            read_at: Instant::now(),
            jpeg: Bytes::from(vec![0u8; len]),
        }
    }

    fn take_all(ring: &Ring, mut cursor: u64) -> (Vec<u64>, u64) {
        let (mut seqs, mut skipped) = (Vec::new(), 0);
        while let Some(next) = ring.next(cursor, false) {
            seqs.push(next.frame.seq);
            skipped += next.skipped;
            cursor = next.cursor;
        }
        (seqs, skipped)
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_keeps_up_gets_a_whole_burst_in_order() {
        let mut ring = Ring::default();
        ring.push(frame(0, 10));
        let cursor = ring.newest_cursor();
        for seq in 1..=3 {
            ring.push(frame(seq, 10));
        }
        assert_eq!(take_all(&ring, cursor), (vec![0, 1, 2, 3], 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_whose_next_frame_is_stale_jumps_to_the_newest() {
        let mut ring = Ring::default();
        ring.push(frame(0, 10));
        tokio::time::advance(STALE_AFTER / 2).await;
        ring.push(frame(1, 10));
        // Frame 0 is now just within the limit: still delivered in order.
        assert_eq!(ring.next(0, false).unwrap().frame.seq, 0);
        tokio::time::advance(STALE_AFTER / 2 + Duration::from_millis(1)).await;
        ring.push(frame(2, 10));
        ring.push(frame(3, 10));
        // Frame 0 went stale and was dropped; frame 1 is stale: jump.
        let next = ring.next(0, false).unwrap();
        assert_eq!((next.frame.seq, next.cursor, next.skipped), (3, 4, 3));
        // A reader at frame 2 (fresh) still gets 2 then 3.
        assert_eq!(take_all(&ring, 2), (vec![2, 3], 0));
    }

    #[tokio::test(start_paused = true)]
    async fn newest_first_skips_fresh_frames_too() {
        let mut ring = Ring::default();
        for seq in 0..4 {
            ring.push(frame(seq, 10));
        }
        let next = ring.next(1, true).unwrap();
        assert_eq!((next.frame.seq, next.cursor, next.skipped), (3, 4, 2));
        assert!(ring.next(4, true).is_none());
        assert_eq!(ring.next(3, true).unwrap().skipped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_newest_frame_is_served_however_old() {
        let mut ring = Ring::default();
        ring.push(frame(7, 10));
        tokio::time::advance(Duration::from_secs(30)).await;
        let next = ring.next(ring.newest_cursor(), false).unwrap();
        assert_eq!((next.frame.seq, next.skipped), (7, 0));
        assert!(ring.next(next.cursor, false).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn oversize_frames_keep_the_byte_budget_but_never_the_newest() {
        let mut ring = Ring::default();
        let big = RING_BYTES / 3 + 1;
        for seq in 0..5 {
            ring.push(frame(seq, big));
            assert!(ring.bytes() <= RING_BYTES, "{} bytes held", ring.bytes());
        }
        assert_eq!(ring.len(), 2);
        // One frame over the whole budget is still kept, alone.
        ring.push(frame(5, RING_BYTES * 2));
        assert_eq!((ring.len(), ring.newest().unwrap().seq), (1, 5));
        // A reader left at frame 0 fell out of the ring: newest, with the skip counted.
        let next = ring.next(0, false).unwrap();
        assert_eq!((next.frame.seq, next.skipped), (5, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_frame_count_is_bounded() {
        let mut ring = Ring::default();
        for seq in 0..(RING_FRAMES as u64 * 3) {
            ring.push(frame(seq, 1));
        }
        assert_eq!(ring.len(), RING_FRAMES);
        assert_eq!(ring.end(), RING_FRAMES as u64 * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn sequence_gaps_from_the_source_are_not_skips() {
        let mut ring = Ring::default();
        for seq in [10, 11, 15, 16] {
            ring.push(frame(seq, 1));
        }
        assert_eq!(take_all(&ring, 0), (vec![10, 11, 15, 16], 0));
    }
}
