//! The short history of recent frames that lets every viewer read at its
//! own pace: a viewer that keeps up gets each frame even when the camera
//! hands over several at once, one that falls behind jumps to the newest.
//!
//! Frames are numbered by the order they entered the ring (the *index*,
//! contiguous even when the frames' own sequence numbers have gaps, as on a
//! relay); a viewer's cursor is the index of the next frame it wants.
//!
//! Keyframes: a reader only ever jumps *to* a keyframe (a frame a decoder
//! can start at), so it never gets a picture it cannot decode. Every JPEG
//! is one, so an MJPEG reader that falls behind jumps to the newest frame;
//! an H.264 reader jumps to the newest keyframe after its cursor, or skips
//! until the next one comes. The ring keeps the newest keyframe's group
//! (up to [`GROUP_BYTES`] and [`GROUP_FRAMES`]) so that a reader that
//! joins starts decoding at once, from that keyframe.

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

/// Most bytes of the newest keyframe's group the ring keeps whatever their
/// age: a 1080p30 H.264 stream at 8 Mbit/s with a keyframe every 2 s is
/// 2 MB a group. A group past this is cut from the front, and readers that
/// join then wait for the next keyframe.
pub const GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Most frames of the newest keyframe's group kept: 10 s at 30 fps.
pub const GROUP_FRAMES: usize = 300;

#[derive(Debug, Default)]
pub struct Ring {
    frames: VecDeque<Frame>,
    /// Index of `frames[0]`.
    first: u64,
    bytes: usize,
    /// Index of the newest keyframe, while the ring holds it.
    newest_key: Option<u64>,
    /// Bytes from the newest keyframe on.
    group_bytes: usize,
    /// Index of the last keyframe pushed, held or not.
    last_key: Option<u64>,
    /// Frames from the keyframe before it to it: the stream's group length.
    gop_frames: Option<u64>,
}

/// Where a reader is: its cursor and what it may be sent next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Index of the next frame it wants.
    pub index: u64,
    /// Fell behind and has not caught up since: a newer keyframe wins
    /// over the next frame in order.
    pub behind: bool,
    /// Skipped frames and has not had a keyframe since: only a keyframe
    /// may come next.
    pub need_key: bool,
    /// Frames before this index are sent however old (a joiner's replay
    /// of the keyframe group).
    pub catch_up_until: u64,
}

/// What a reader at a cursor gets.
#[derive(Debug)]
pub struct Next {
    /// `None` when the reader skipped to the end to wait for a keyframe.
    pub frame: Option<Frame>,
    /// The reader's cursor after this.
    pub cursor: Cursor,
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

    /// Frames between the last two keyframes (1 for MJPEG).
    pub fn gop_frames(&self) -> Option<u64> {
        self.gop_frames
    }

    /// The newest keyframe, while the ring holds it.
    pub fn newest_key(&self) -> Option<&Frame> {
        self.newest_key
            .map(|k| &self.frames[(k - self.first) as usize])
    }

    /// Adds a frame and drops the oldest past any bound: before the newest
    /// keyframe the frame count, the byte budget or staleness (nobody would
    /// be sent those); from it on the group's own bounds.
    pub fn push(&mut self, frame: Frame) {
        let len = frame.data.len();
        self.bytes += len;
        if frame.key {
            let index = self.end();
            self.gop_frames = self.last_key.map(|k| index - k);
            self.last_key = Some(index);
            self.newest_key = Some(index);
            self.group_bytes = 0;
        }
        self.group_bytes += len;
        self.frames.push_back(frame);
        let now = Instant::now();
        while self.frames.len() > 1 {
            let oldest = &self.frames[0];
            let in_group = self.newest_key.is_some_and(|k| k <= self.first);
            let drop = if in_group {
                self.frames.len() > GROUP_FRAMES || self.group_bytes > GROUP_BYTES
            } else {
                self.frames.len() > RING_FRAMES || self.bytes > RING_BYTES || is_stale(oldest, now)
            };
            if !drop {
                break;
            }
            let len = oldest.data.len();
            self.bytes -= len;
            if in_group {
                self.group_bytes -= len;
                self.newest_key = None;
            }
            self.frames.pop_front();
            self.first += 1;
        }
    }

    /// What a reader at `at` gets: the next frame in order while it keeps
    /// up (or replays a joiner's group); else the newest keyframe after its
    /// cursor, the frames between counted as skipped; else (no keyframe
    /// after it yet) nothing, the cursor at the end and a keyframe needed.
    /// `None` when it has them all.
    pub fn next(&self, at: Cursor) -> Option<Next> {
        let cursor = at.index;
        if cursor >= self.end() {
            return None;
        }
        let newest = self.end() - 1;
        let newer_key = self.newest_key.filter(|&k| k > cursor);
        if let (true, Some(k)) = (at.behind, newer_key) {
            return Some(self.jump(at, k));
        }
        if let Some(frame) = cursor
            .checked_sub(self.first)
            .map(|offset| &self.frames[offset as usize])
        {
            let in_time =
                cursor == newest || cursor < at.catch_up_until || !is_stale(frame, Instant::now());
            if in_time && (frame.key || !at.need_key) {
                return Some(Next {
                    frame: Some(frame.clone()),
                    cursor: Cursor {
                        index: cursor + 1,
                        need_key: false,
                        ..at
                    },
                    skipped: 0,
                });
            }
        }
        Some(match self.newest_key.filter(|&k| k >= cursor) {
            Some(k) => self.jump(at, k),
            None => Next {
                frame: None,
                cursor: Cursor {
                    index: self.end(),
                    need_key: true,
                    ..at
                },
                skipped: self.end() - cursor,
            },
        })
    }

    fn jump(&self, at: Cursor, to: u64) -> Next {
        Next {
            frame: Some(self.frames[(to - self.first) as usize].clone()),
            cursor: Cursor {
                index: to + 1,
                need_key: false,
                ..at
            },
            skipped: to - at.index,
        }
    }

    /// Where a reader that joins now starts: at the newest keyframe, its
    /// group replayed (for MJPEG: the newest frame); with none held, at the
    /// end, waiting for the next keyframe.
    pub fn join(&self) -> Cursor {
        match self.newest_key {
            Some(k) => Cursor {
                index: k,
                catch_up_until: self.end(),
                ..Cursor::default()
            },
            None => Cursor {
                index: self.end(),
                need_key: true,
                ..Cursor::default()
            },
        }
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
        Frame::jpeg(seq, seq * 33_333, Bytes::from(vec![0u8; len]))
    }

    fn at(index: u64) -> Cursor {
        Cursor {
            index,
            ..Cursor::default()
        }
    }

    fn behind(index: u64) -> Cursor {
        Cursor {
            index,
            behind: true,
            ..Cursor::default()
        }
    }

    /// `(seq, cursor index, skipped)` of what a reader at `cursor` gets.
    fn step(ring: &Ring, cursor: Cursor) -> (u64, u64, u64) {
        let next = ring.next(cursor).unwrap();
        (next.frame.unwrap().seq, next.cursor.index, next.skipped)
    }

    fn take_all(ring: &Ring, mut cursor: Cursor) -> (Vec<u64>, u64) {
        let (mut seqs, mut skipped) = (Vec::new(), 0);
        while let Some(next) = ring.next(cursor) {
            seqs.extend(next.frame.map(|f| f.seq));
            skipped += next.skipped;
            cursor = next.cursor;
        }
        (seqs, skipped)
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_keeps_up_gets_a_whole_burst_in_order() {
        let mut ring = Ring::default();
        ring.push(frame(0, 10));
        let cursor = ring.join();
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
        assert_eq!(step(&ring, at(0)).0, 0);
        tokio::time::advance(STALE_AFTER / 2 + Duration::from_millis(1)).await;
        ring.push(frame(2, 10));
        ring.push(frame(3, 10));
        // Frame 0 went stale and was dropped; frame 1 is stale: jump.
        assert_eq!(step(&ring, at(0)), (3, 4, 3));
        // A reader at frame 2 (fresh) still gets 2 then 3.
        assert_eq!(take_all(&ring, at(2)), (vec![2, 3], 0));
    }

    #[tokio::test(start_paused = true)]
    async fn newest_first_skips_fresh_frames_too() {
        let mut ring = Ring::default();
        for seq in 0..4 {
            ring.push(frame(seq, 10));
        }
        assert_eq!(step(&ring, behind(1)), (3, 4, 2));
        assert!(ring.next(behind(4)).is_none());
        assert_eq!(step(&ring, behind(3)), (3, 4, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_newest_frame_is_served_however_old() {
        let mut ring = Ring::default();
        ring.push(frame(7, 10));
        tokio::time::advance(Duration::from_secs(30)).await;
        let next = ring.next(ring.join()).unwrap();
        assert_eq!((next.frame.unwrap().seq, next.skipped), (7, 0));
        assert!(ring.next(next.cursor).is_none());
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
        assert_eq!(step(&ring, at(0)), (5, 6, 5));
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
        assert_eq!(take_all(&ring, at(0)), (vec![10, 11, 15, 16], 0));
    }

    /// An H.264-like stream: a keyframe every `group` frames from seq 0.
    fn h264(seq: u64, group: u64, len: usize) -> Frame {
        Frame {
            codec: crate::frame::Codec::H264,
            key: seq % group == 0,
            ..frame(seq, len)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_joiner_starts_at_the_newest_keyframe_and_replays_its_group() {
        let mut ring = Ring::default();
        for seq in 0..25 {
            ring.push(h264(seq, 10, 100));
            tokio::time::advance(Duration::from_millis(33)).await;
        }
        // The group of 20 is older than the staleness limit, yet kept whole.
        let join = ring.join();
        assert_eq!(take_all(&ring, join), ((20..25).collect(), 0));
        assert_eq!(ring.newest_key().unwrap().seq, 20);
        // Frames before it went stale and are gone.
        assert!(ring.len() < 12, "{} frames held", ring.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_h264_reader_skips_to_a_keyframe_never_into_a_group() {
        let mut ring = Ring::default();
        for seq in 0..5 {
            ring.push(h264(seq, 10, 100));
        }
        tokio::time::advance(STALE_AFTER * 2).await;
        // Frame 1 is stale and no keyframe came after it: skip to the end
        // and wait, rather than take frame 4 (undecodable without 1..3).
        let next = ring.next(at(1)).unwrap();
        assert!(next.frame.is_none());
        assert_eq!((next.cursor.index, next.skipped), (5, 4));
        assert!(next.cursor.need_key);
        for seq in 5..12 {
            ring.push(h264(seq, 10, 100));
        }
        // Frames 5..9 are not keyframes: skipped; 10 is where it starts.
        let (seqs, skipped) = take_all(&ring, next.cursor);
        assert_eq!((seqs, skipped), (vec![10, 11], 5));
        // A reader behind with a newer keyframe in the ring jumps to it.
        assert_eq!(step(&ring, behind(6)), (10, 11, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversized_group_is_cut_and_joiners_wait_for_the_next_keyframe() {
        let mut ring = Ring::default();
        let big = GROUP_BYTES / 4 + 1;
        for seq in 0..6 {
            ring.push(h264(seq, 100, big));
            assert!(ring.bytes() <= GROUP_BYTES + big, "{} bytes", ring.bytes());
        }
        assert!(ring.newest_key().is_none());
        let join = ring.join();
        assert!(join.need_key);
        assert!(ring.next(join).is_none());
        ring.push(h264(100, 100, 10));
        assert_eq!(step(&ring, join), (100, 7, 0));
        // The group's frame count is bounded too.
        for seq in 101..(101 + GROUP_FRAMES as u64 * 2) {
            ring.push(h264(seq, 1000, 1));
        }
        assert!(ring.len() <= GROUP_FRAMES, "{} frames held", ring.len());
        assert!(ring.newest_key().is_none());
    }
}
