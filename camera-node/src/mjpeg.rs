//! Splits a camera's MJPEG byte stream into JPEG frames.
//!
//! The splitter walks JPEG marker segments (ITU T.81, B.1) rather than
//! searching for `FFD9`: a segment is skipped by its length, so an EXIF
//! thumbnail inside APP1 never ends a frame, and only entropy-coded data
//! after SOS is scanned byte by byte (where `FF00` is a stuffed byte and
//! `FFD0`..`FFD7` are restart markers). The scan position survives between
//! reads, so no byte is looked at twice, and every frame leaves the buffer
//! as one `Bytes` without a copy.

use bytes::{Buf, Bytes, BytesMut};

/// Largest JPEG the splitter accepts before it gives up on a frame and
/// resynchronises. The same cap as the frame protocol, so every frame the
/// node accepts can be sent.
pub const MAX_JPEG_LEN: usize = shared::frame::MAX_FRAME_LEN;
/// Spare room made before each read: one pipe buffer and more, so a typical
/// 100 KB frame arrives in a handful of reads.
pub const READ_CHUNK: usize = 128 * 1024;

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const TEM: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames, looking for SOI from `pos`; nothing before `pos` is kept.
    Seek,
    /// In a frame (which starts at `buf[0]`), a marker is expected at `pos`.
    Marker,
    /// In entropy-coded data after SOS; scanning from `pos`.
    Entropy,
}

/// Incremental MJPEG splitter. Feed it with [`Splitter::read_buf`] (or
/// [`Splitter::push`]), then call [`Splitter::next_frame`] until `None`.
#[derive(Debug)]
pub struct Splitter {
    buf: BytesMut,
    pos: usize,
    state: State,
    max_len: usize,
    /// Garbage skipped since it was last reported.
    garbage: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new(MAX_JPEG_LEN)
    }
}

impl Splitter {
    pub fn new(max_len: usize) -> Self {
        Splitter {
            buf: BytesMut::new(),
            pos: 0,
            state: State::Seek,
            max_len,
            garbage: 0,
        }
    }

    /// The buffer to read into, with at least [`READ_CHUNK`] bytes spare.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.buf.reserve(READ_CHUNK);
        &mut self.buf
    }

    /// Appends bytes (tests, fuzzing, in-memory sources).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for a frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, a warning about bytes thrown away, or `None`
    /// when more input is needed.
    pub fn next_frame(&mut self) -> Option<Result<Bytes, SplitError>> {
        loop {
            let step = match self.state {
                State::Seek => self.seek(),
                State::Marker => self.marker(),
                State::Entropy => self.entropy(),
            };
            match step {
                Step::Continue => {}
                Step::NeedMore => return None,
                Step::Done(result) => return Some(result),
            }
        }
    }

    fn seek(&mut self) -> Step {
        let hay = &self.buf[self.pos..];
        match memchr::memmem::find(hay, &[0xFF, SOI]) {
            Some(i) => {
                let skipped = self.pos + i;
                self.buf.advance(skipped);
                self.garbage += skipped;
                self.pos = 2;
                self.state = State::Marker;
                match std::mem::take(&mut self.garbage) {
                    0 => Step::Continue,
                    bytes => Step::Done(Err(SplitError::Garbage { bytes })),
                }
            }
            None => {
                // Keep a trailing FF: it may be the first half of an SOI.
                let keep = usize::from(self.buf.last() == Some(&0xFF));
                let drop = self.buf.len() - keep;
                self.buf.advance(drop);
                self.garbage += drop;
                self.pos = 0;
                if self.garbage > self.max_len {
                    Step::Done(Err(SplitError::Garbage {
                        bytes: std::mem::take(&mut self.garbage),
                    }))
                } else {
                    Step::NeedMore
                }
            }
        }
    }

    fn marker(&mut self) -> Step {
        // Fill bytes: any number of FF may precede a marker.
        while self.pos + 1 < self.buf.len()
            && self.buf[self.pos] == 0xFF
            && self.buf[self.pos + 1] == 0xFF
        {
            self.pos += 1;
        }
        if self.pos > self.max_len {
            return self.too_large();
        }
        if self.pos + 2 > self.buf.len() {
            return Step::NeedMore;
        }
        if self.buf[self.pos] != 0xFF {
            return self.resync(self.pos, "a marker was expected");
        }
        match self.buf[self.pos + 1] {
            SOI => {
                // A new frame began before this one ended.
                let len = self.pos;
                self.buf.advance(len);
                self.pos = 2;
                Step::Done(Err(SplitError::Truncated { len }))
            }
            EOI => {
                let frame = self.buf.split_to(self.pos + 2).freeze();
                self.pos = 0;
                self.state = State::Seek;
                Step::Done(Ok(frame))
            }
            0xD0..=0xD7 | TEM => {
                self.pos += 2;
                Step::Continue
            }
            0x00 => self.resync(self.pos, "FF00 is not a marker"),
            code => {
                let Some(len) = self.buf.get(self.pos + 2..self.pos + 4) else {
                    return Step::NeedMore;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len < 2 {
                    return self.resync(self.pos, "a segment length under 2");
                }
                self.pos += 2 + len;
                if code == SOS {
                    self.state = State::Entropy;
                }
                Step::Continue
            }
        }
    }

    fn entropy(&mut self) -> Step {
        loop {
            if self.pos > self.max_len {
                return self.too_large();
            }
            let Some(rest) = self.buf.get(self.pos..) else {
                return Step::NeedMore; // still inside the SOS header
            };
            let Some(i) = memchr::memchr(0xFF, rest) else {
                self.pos = self.buf.len();
                return if self.pos > self.max_len {
                    self.too_large()
                } else {
                    Step::NeedMore
                };
            };
            let at = self.pos + i;
            let Some(&next) = self.buf.get(at + 1) else {
                self.pos = at;
                return Step::NeedMore;
            };
            match next {
                0x00 | 0xD0..=0xD7 => self.pos = at + 2,
                0xFF => self.pos = at + 1,
                _ => {
                    self.pos = at;
                    self.state = State::Marker;
                    return Step::Continue;
                }
            }
        }
    }

    /// Throws the broken frame away and looks for the next SOI right after
    /// its own: a frame cut inside a segment makes that segment's length
    /// jump over the next frame's start, so the bytes already walked are
    /// searched again (only on this error path).
    fn resync(&mut self, at: usize, reason: &'static str) -> Step {
        self.buf.advance(2);
        self.pos = 0;
        self.state = State::Seek;
        Step::Done(Err(SplitError::Corrupt { len: at, reason }))
    }

    fn too_large(&mut self) -> Step {
        let len = self.pos;
        self.buf.advance(len.min(self.buf.len()));
        self.pos = 0;
        self.state = State::Seek;
        Step::Done(Err(SplitError::TooLarge {
            len,
            max: self.max_len,
        }))
    }
}

enum Step {
    Continue,
    NeedMore,
    Done(Result<Bytes, SplitError>),
}

/// Bytes the splitter threw away, reported as warnings; none stops the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("skipped {bytes} bytes that are not JPEG")]
    Garbage { bytes: usize },
    #[error("dropped a truncated JPEG of {len} bytes (a new frame began before its end)")]
    Truncated { len: usize },
    #[error("dropped a corrupt JPEG after {len} bytes: {reason}")]
    Corrupt { len: usize, reason: &'static str },
    #[error("dropped a JPEG over the {max} byte cap ({len} bytes without an end)")]
    TooLarge { len: usize, max: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A structurally valid JPEG: SOI, APP0, DQT-like segment, SOS, entropy
    /// data with a stuffed byte and a restart marker, EOI.
    fn jpeg(fill: u8) -> Vec<u8> {
        let mut j = vec![0xFF, SOI];
        j.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x06, b'J', b'F', b'I', b'F']);
        j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x04, 0xFF, 0xD9]); // an FFD9 inside a segment
        j.extend_from_slice(&[0xFF, SOS, 0x00, 0x03, 0x01]);
        j.extend_from_slice(&[fill, 0xFF, 0x00, fill, 0xFF, 0xD3, fill, fill]);
        j.extend_from_slice(&[0xFF, EOI]);
        j
    }

    fn split_all(s: &mut Splitter) -> (Vec<Bytes>, Vec<SplitError>) {
        let (mut frames, mut errors) = (Vec::new(), Vec::new());
        while let Some(r) = s.next_frame() {
            match r {
                Ok(f) => frames.push(f),
                Err(e) => errors.push(e),
            }
        }
        (frames, errors)
    }

    #[test]
    fn splits_back_to_back_frames() {
        let mut s = Splitter::default();
        let (a, b) = (jpeg(1), jpeg(2));
        s.push(&[a.clone(), b.clone()].concat());
        let (frames, errors) = split_all(&mut s);
        assert_eq!(frames, [Bytes::from(a), Bytes::from(b)]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn exif_thumbnail_inside_app1_does_not_split() {
        let thumb = jpeg(9);
        let mut j = vec![0xFF, SOI, 0xFF, 0xE1];
        j.extend_from_slice(&((thumb.len() + 2 + 6) as u16).to_be_bytes());
        j.extend_from_slice(b"Exif\0\0");
        j.extend_from_slice(&thumb);
        j.extend_from_slice(&jpeg(3)[2..]);
        let mut s = Splitter::default();
        s.push(&j);
        let (frames, errors) = split_all(&mut s);
        assert_eq!(frames, [Bytes::from(j)]);
        assert!(errors.is_empty());
    }

    #[test]
    fn byte_at_a_time_gives_the_same_frames() {
        let stream = [jpeg(1), b"junk".to_vec(), jpeg(2), jpeg(3)].concat();
        let mut s = Splitter::default();
        let mut frames = Vec::new();
        for b in &stream {
            s.push(&[*b]);
            while let Some(r) = s.next_frame() {
                if let Ok(f) = r {
                    frames.push(f);
                }
            }
        }
        assert_eq!(frames, [jpeg(1), jpeg(2), jpeg(3)].map(Bytes::from));
    }

    #[test]
    fn a_frame_cut_in_its_scan_data_is_reported_as_truncated() {
        let cut = &jpeg(1)[..24];
        let mut s = Splitter::default();
        s.push(&[cut, &jpeg(2)].concat());
        let (frames, errors) = split_all(&mut s);
        assert_eq!(frames, [Bytes::from(jpeg(2))]);
        assert_eq!(errors, [SplitError::Truncated { len: 24 }]);
    }

    #[test]
    fn garbage_between_frames_is_skipped_and_reported() {
        let mut s = Splitter::default();
        s.push(&[b"\x00\x01garbage\xFF".to_vec(), jpeg(1)].concat());
        let (frames, errors) = split_all(&mut s);
        assert_eq!(frames.len(), 1);
        assert_eq!(errors, [SplitError::Garbage { bytes: 10 }]);
    }

    #[test]
    fn a_truncated_frame_is_dropped_and_the_next_one_kept() {
        let cut = &jpeg(1)[..15];
        let mut s = Splitter::default();
        s.push(&[cut, &jpeg(2)].concat());
        let (frames, errors) = split_all(&mut s);
        assert_eq!(frames, [Bytes::from(jpeg(2))]);
        // Cut inside a segment, the frame reads as corrupt; cut in the scan
        // data, as truncated. Either way only the broken frame is lost.
        assert!(
            matches!(
                errors[0],
                SplitError::Truncated { .. } | SplitError::Corrupt { .. }
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn a_frame_over_the_cap_is_dropped_and_the_splitter_resyncs() {
        let mut big = vec![0xFF, SOI, 0xFF, SOS, 0x00, 0x02];
        big.extend(std::iter::repeat_n(0x11, 5000));
        let mut s = Splitter::new(1000);
        s.push(&big);
        let (frames, errors) = split_all(&mut s);
        assert!(frames.is_empty());
        assert!(
            matches!(errors[..], [SplitError::TooLarge { max: 1000, .. }]),
            "{errors:?}"
        );
        assert!(
            s.buffered() < 1000,
            "the oversized frame must not stay buffered"
        );
        // The rest of the oversized frame is garbage; the next frame comes out.
        s.push(&[vec![0x22; 3000], jpeg(4)].concat());
        let (frames, _) = split_all(&mut s);
        assert_eq!(frames, [Bytes::from(jpeg(4))]);
    }

    #[test]
    fn endless_garbage_is_reported_and_never_buffered() {
        let mut s = Splitter::new(1000);
        let mut reported = 0;
        for _ in 0..50 {
            s.push(&[0x42; 100]);
            let (_, errors) = split_all(&mut s);
            reported += errors.len();
            assert!(s.buffered() <= 1);
        }
        assert!(
            reported >= 4,
            "garbage should be reported as it passes the cap"
        );
    }

    #[test]
    fn a_broken_marker_resyncs_on_the_next_soi() {
        let mut bad = vec![0xFF, SOI, 0x12, 0x34];
        bad.extend_from_slice(&jpeg(5));
        let mut s = Splitter::default();
        s.push(&bad);
        let (frames, errors) = split_all(&mut s);
        assert_eq!(frames, [Bytes::from(jpeg(5))]);
        assert!(
            matches!(errors[0], SplitError::Corrupt { .. }),
            "{errors:?}"
        );
    }

    #[test]
    fn frames_are_not_copied() {
        let mut s = Splitter::default();
        s.push(&[jpeg(1), jpeg(2)].concat());
        let base = s.buf.as_ptr() as usize;
        let (frames, _) = split_all(&mut s);
        assert_eq!(frames[0].as_ptr() as usize, base);
        assert_eq!(frames[1].as_ptr() as usize, base + frames[0].len());
    }

    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        // A small deterministic fuzz; cargo-fuzz (fuzz/) goes further.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut s = Splitter::new(4096);
        for round in 0..2000 {
            let mut chunk = Vec::new();
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Bias towards FF and marker bytes so the state machine is exercised.
                let b = match x % 8 {
                    0 | 1 => 0xFF,
                    2 => [SOI, EOI, SOS, 0x00, 0xD3, 0xE1][(x >> 8) as usize % 6],
                    _ => (x >> 16) as u8,
                };
                chunk.push(b);
            }
            if round % 100 == 0 {
                chunk.extend_from_slice(&jpeg(7));
            }
            s.push(&chunk);
            while s.next_frame().is_some() {}
            assert!(
                s.buffered() <= 4096 + 64 + 64,
                "buffer grew to {}",
                s.buffered()
            );
        }
    }
}
