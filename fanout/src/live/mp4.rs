//! An H.264 camera on one live WebSocket as fragmented MP4, for the page's
//! Media Source Extensions: an init segment (`ftyp`, `moov` with the
//! stream's `avcC`) whenever the stream's parameters are new to the page,
//! then a `moof` and `mdat` per frame, sent the moment the frame arrives.
//!
//! Media time is capture time: a frame spans the interval from the frame
//! before it to its own capture time (less the origin: a frame interval
//! before the first frame this socket sent of the camera). A frame's
//! duration is known only when the next one comes; a frame that begins
//! where the one before it ended leaves the Source Buffer no gap however
//! the capture times jitter (a frame at its own capture time, lasting the
//! interval before it, left one on every longer interval, and Chromium
//! stalls at each until the page jumps past it). The page plays frames at
//! the pace they were taken, a frame skipped (the socket fell behind and
//! jumped to a keyframe) leaves a gap it steps over, and the page knows
//! each drawn frame's capture time (docs/protocol.md, "The live
//! WebSocket").

use bytes::BytesMut;
use shared::fmp4::{fragment, init_segment, ticks, Sample, SampleEntry};

use crate::frame::{Codec, Frame};

/// A frame's duration when the interval before it is not known (the
/// first) or is no frame interval (after a skip, which leaves a gap): 1/30
/// s.
const DEFAULT_FRAME_US: u64 = 33_333;
/// The longest interval taken for a frame's duration.
const LONGEST_FRAME_US: u64 = 200_000;

/// What one socket has told its page of one H.264 camera.
#[derive(Debug, Default)]
pub struct Mp4Track {
    /// The sample entry of the last init segment sent.
    entry: Option<SampleEntry>,
    /// Capture time of media time 0: [`DEFAULT_FRAME_US`] before the
    /// first frame's.
    origin_us: u64,
    /// Capture time of the last frame sent.
    last_us: Option<u64>,
    sequence: u32,
}

impl Mp4Track {
    /// The MP4 bytes that carry `frame`: an init segment first when its
    /// parameters are new (the first keyframe, a new size) or its time
    /// went back (a node restarted with its clock behind: the page starts
    /// a new timeline), then its fragment. `None` for a frame a decoder
    /// cannot reach (before the first keyframe).
    pub fn carry(&mut self, frame: &Frame) -> Option<BytesMut> {
        let mut out = BytesMut::new();
        let went_back = self.last_us.is_some_and(|l| frame.captured_at_us < l);
        let entry = frame
            .key
            .then(|| SampleEntry::of_keyframe(Codec::H264, &frame.data))
            .flatten();
        if let Some(entry) = entry {
            if self.entry.as_ref() != Some(&entry) || went_back {
                out = init_segment(&entry);
                self.entry = Some(entry);
                self.origin_us = frame.captured_at_us.saturating_sub(DEFAULT_FRAME_US);
                self.last_us = None;
            }
        }
        if went_back && out.is_empty() {
            // No timeline to put it on until the next keyframe.
            self.entry = None;
            return None;
        }
        self.entry.as_ref()?;
        let interval = self
            .last_us
            .map(|l| frame.captured_at_us - l)
            .filter(|d| (1..=LONGEST_FRAME_US).contains(d))
            .unwrap_or(DEFAULT_FRAME_US);
        self.last_us = Some(frame.captured_at_us);
        self.sequence = self.sequence.wrapping_add(1);
        let sample = Sample {
            duration: ticks(interval) as u32,
            key: frame.key,
            data: &frame.data,
        };
        let start = frame.captured_at_us.saturating_sub(interval);
        let base = ticks(start.saturating_sub(self.origin_us));
        out.extend_from_slice(&fragment(self.sequence, base, None, &[sample]));
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::time::Instant;

    fn frame(seq: u64, us: u64, key: bool) -> Frame {
        let sps: &[u8] = &[
            0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9, 0x40, 0x50, 0x05, 0xBB, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xC0, 0xF1, 0x83, 0x19, 0x60,
        ];
        let nals: Vec<&[u8]> = if key {
            vec![sps, &[0x68, 0xEE, 0x3C, 0x80], &[0x65, 0x88]]
        } else {
            vec![&[0x41, 0x9A]]
        };
        let mut data = Vec::new();
        for nal in nals {
            data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            data.extend_from_slice(nal);
        }
        Frame {
            seq,
            captured_at_us: us,
            read_at: Instant::now(),
            codec: Codec::H264,
            key,
            data: Bytes::from(data),
        }
    }

    fn boxes(mut data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while data.len() >= 8 {
            let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
            out.push(String::from_utf8_lossy(&data[4..8]).into_owned());
            data = &data[size..];
        }
        out
    }

    fn tfdt(data: &[u8]) -> u64 {
        let at = data.windows(4).position(|w| w == b"tfdt").unwrap();
        u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap())
    }

    /// The `trun` sample's duration (the fragment has one sample).
    fn duration(data: &[u8]) -> u64 {
        let at = data.windows(4).position(|w| w == b"trun").unwrap();
        let flags = u32::from_be_bytes(data[at + 4..at + 8].try_into().unwrap());
        // Sample count, then the data offset and first-sample flags when
        // present; the duration is the first field of the sample.
        let mut field = at + 12;
        field += if flags & 0x1 != 0 { 4 } else { 0 };
        field += if flags & 0x4 != 0 { 4 } else { 0 };
        assert!(flags & 0x100 != 0, "the sample's duration is written");
        u32::from_be_bytes(data[field..field + 4].try_into().unwrap()) as u64
    }

    #[test]
    fn frames_abut_whatever_the_capture_times_jitter_and_a_skip_leaves_a_gap() {
        let mut track = Mp4Track::default();
        let t = 1_800_000_000_000_000;
        let mut ends = Vec::new();
        for (seq, us) in [0u64, 66_000, 140_000, 190_000, 260_000].iter().enumerate() {
            let mp4 = track.carry(&frame(seq as u64, t + us, seq == 0)).unwrap();
            let (start, length) = (tfdt(&mp4), duration(&mp4));
            if let Some(&end) = ends.last() {
                assert_eq!(start, end, "frame {seq} starts where the one before ended");
            }
            ends.push(start + length);
            assert_eq!(
                start + length,
                ticks(DEFAULT_FRAME_US + us),
                "frame {seq} ends at its capture time"
            );
        }
        // A keyframe a second later (the socket skipped a group): a gap.
        let mp4 = track.carry(&frame(9, t + 1_260_000, true)).unwrap();
        assert!(tfdt(&mp4) > *ends.last().unwrap());
        assert_eq!(
            tfdt(&mp4) + duration(&mp4),
            ticks(DEFAULT_FRAME_US + 1_260_000)
        );
    }

    #[test]
    fn an_init_segment_comes_first_and_again_when_time_goes_back() {
        let mut track = Mp4Track::default();
        let t = 1_800_000_000_000_000;
        assert!(
            track.carry(&frame(0, t, false)).is_none(),
            "no keyframe yet"
        );
        let first = track.carry(&frame(1, t + 100_000, true)).unwrap();
        assert_eq!(boxes(&first), ["ftyp", "moov", "moof", "mdat"]);
        assert_eq!(tfdt(&first), 0);
        let next = track.carry(&frame(2, t + 200_000, false)).unwrap();
        assert_eq!(boxes(&next), ["moof", "mdat"]);
        assert_eq!(
            tfdt(&next),
            ticks(DEFAULT_FRAME_US),
            "the first frame's end: media time is capture time"
        );
        let key = track.carry(&frame(3, t + 300_000, true)).unwrap();
        assert_eq!(boxes(&key), ["moof", "mdat"], "the same parameters");
        // A restarted node, its clock a minute back: a P frame cannot
        // start the new timeline, its next keyframe does.
        assert!(track.carry(&frame(0, t - 60_000_000, false)).is_none());
        let again = track.carry(&frame(1, t - 59_900_000, true)).unwrap();
        assert_eq!(boxes(&again), ["ftyp", "moov", "moof", "mdat"]);
        assert_eq!(tfdt(&again), 0);
    }
}
