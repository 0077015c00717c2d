//! Cuts one camera's recording into segments on wall-clock boundaries.
//!
//! A frame belongs to the segment whose window `[k*S, (k+1)*S)` holds its
//! capture time on the fleet's one timeline (the node's clock, or the
//! viewer's when the node's is off: see `clock`), so every camera cuts at the
//! same instants and each frame lands in exactly one segment. A sample's
//! duration is the gap to the next frame, so the last frame of a segment
//! ends exactly where the next segment's first frame starts. Fragments are
//! written (and synced) at least every second; a segment is `<name>.mp4.part`
//! until it closes and is renamed to `<name>.mp4`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::fmp4::{self, Sample, TIMESCALE};

/// Write a fragment once it holds this much media (DESIGN.md: at least every
/// second, so a crash loses at most about a second).
const FRAGMENT_TICKS: u64 = TIMESCALE as u64;

/// A frame to record.
#[derive(Debug, Clone)]
pub struct RecFrame {
    /// Capture time on the timeline: where the sample goes.
    pub captured_at_us: u64,
    /// Capture time by the node's own clock, kept in each fragment's `prft`.
    pub node_us: u64,
    pub jpeg: Bytes,
}

impl RecFrame {
    /// How far the node's clock was from the timeline for this frame.
    fn node_offset(&self) -> i64 {
        self.node_us as i64 - self.captured_at_us as i64
    }
}

/// Where and how one camera records in one session.
#[derive(Debug, Clone)]
pub struct SegmentPlan {
    /// `<recordings>/<session>/<node_id>/<camera_id>`
    pub dir: PathBuf,
    /// Segment length in microseconds.
    pub segment_us: u64,
    pub width: u16,
    pub height: u16,
}

pub struct Segmenter {
    plan: SegmentPlan,
    open: Option<OpenSegment>,
    /// The newest frame: its duration is known only when the next arrives.
    held: Option<RecFrame>,
    /// Frames with known durations, waiting for the next fragment.
    queued: Vec<(RecFrame, u32)>,
    queued_ticks: u64,
    last_duration: u32,
    /// Segments closed so far, for logs and tests.
    pub closed: Vec<PathBuf>,
    /// Frames written to closed segments.
    pub frames: u64,
    /// Bytes written to segment files.
    pub bytes: u64,
}

struct OpenSegment {
    window: u64,
    /// The instant the segment's media time 0 stands for: its name.
    origin_us: u64,
    part: PathBuf,
    done: PathBuf,
    file: File,
    fragments: u32,
}

impl Segmenter {
    pub fn new(plan: SegmentPlan) -> Self {
        Segmenter {
            plan,
            open: None,
            held: None,
            queued: Vec::new(),
            queued_ticks: 0,
            last_duration: TIMESCALE / 30,
            closed: Vec::new(),
            frames: 0,
            bytes: 0,
        }
    }

    /// Records a frame: may close the current segment and open the next.
    pub fn push(&mut self, frame: RecFrame) -> std::io::Result<()> {
        let window = frame.captured_at_us / self.plan.segment_us;
        if let Some(prev) = self.held.take() {
            let origin = self.open.as_ref().map_or(0, |s| s.origin_us);
            let duration = duration_between(prev.captured_at_us, frame.captured_at_us, origin);
            self.last_duration = duration;
            // One fragment's `prft` holds for all its samples: a fragment
            // ends where the node's offset changes.
            if self
                .queued
                .first()
                .is_some_and(|(f, _)| f.node_offset() != prev.node_offset())
            {
                self.write_fragment()?;
            }
            self.queue(prev, duration);
            if self.open.as_ref().is_some_and(|s| window > s.window) {
                self.close_segment()?;
            } else if self.queued_ticks >= FRAGMENT_TICKS {
                self.write_fragment()?;
            }
        }
        if self.open.is_none() {
            self.open_segment(window, frame.captured_at_us)?;
        }
        self.held = Some(frame);
        Ok(())
    }

    /// Ends the recording: the last frame gets the previous frame's duration.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some(last) = self.held.take() {
            self.queue(last, self.last_duration);
        }
        self.close_segment()
    }

    fn queue(&mut self, frame: RecFrame, duration: u32) {
        self.queued_ticks += u64::from(duration);
        self.queued.push((frame, duration));
    }

    fn open_segment(&mut self, window: u64, first_us: u64) -> std::io::Result<()> {
        let boundary = window * self.plan.segment_us;
        // A session starts between boundaries: its first segment is named
        // for its first frame (to the second), the rest for their boundary.
        let origin_us = boundary.max(first_us - first_us % 1_000_000);
        let name = segment_name(origin_us);
        std::fs::create_dir_all(&self.plan.dir)?;
        let part = self.plan.dir.join(format!("{name}.mp4.part"));
        let done = self.plan.dir.join(format!("{name}.mp4"));
        let init = fmp4::init_segment(self.plan.width, self.plan.height);
        let (file, fragments) = match self.reopen(&part, &done, &init)? {
            Some(reopened) => reopened,
            None => {
                let mut file = File::create(&part)?;
                file.write_all(&init)?;
                self.bytes += init.len() as u64;
                (file, 0)
            }
        };
        self.open = Some(OpenSegment {
            window,
            origin_us,
            part,
            done,
            file,
            fragments,
        });
        Ok(())
    }

    /// A segment of this name already exists when the recording restarts
    /// within the second it began: the viewer was killed (its `.part`
    /// stays) or the camera reconnected (its `.mp4` was just closed).
    /// Writing afresh would lose those frames, so the file is kept up to
    /// its last whole fragment and appended to. One that is not ours to
    /// append to (another picture size) is moved aside, never overwritten.
    fn reopen(
        &mut self,
        part: &Path,
        done: &Path,
        init: &[u8],
    ) -> std::io::Result<Option<(File, u32)>> {
        let Some(existing) = [part, done].into_iter().find(|p| p.exists()) else {
            return Ok(None);
        };
        match whole_fragments(existing, init)? {
            Some((len, fragments)) => {
                if existing == done {
                    std::fs::rename(done, part)?;
                }
                let file = std::fs::OpenOptions::new().write(true).open(part)?;
                file.set_len(len)?;
                let mut file = file;
                file.seek(SeekFrom::End(0))?;
                tracing::info!(
                    "{}: recording again within the second it began; appending after its {fragments} fragments",
                    existing.display()
                );
                Ok(Some((file, fragments)))
            }
            None => {
                let aside = existing.with_extension(format!(
                    "{}.{}.aside",
                    existing.extension().and_then(|e| e.to_str()).unwrap_or(""),
                    std::process::id()
                ));
                std::fs::rename(existing, &aside)?;
                tracing::warn!(
                    "{} has another picture size or is not a camfleet segment: moved to {} to start it again",
                    existing.display(),
                    aside.display()
                );
                Ok(None)
            }
        }
    }

    fn write_fragment(&mut self) -> std::io::Result<()> {
        let Some(seg) = self.open.as_mut() else {
            return Ok(());
        };
        let Some((first, _)) = self.queued.first() else {
            return Ok(());
        };
        let base = fmp4::ticks(first.captured_at_us.saturating_sub(seg.origin_us));
        let samples: Vec<Sample> = self
            .queued
            .iter()
            .map(|(f, d)| Sample {
                duration: *d,
                jpeg: &f.jpeg,
            })
            .collect();
        seg.fragments += 1;
        let fragment = fmp4::fragment(seg.fragments, base, first.node_us, &samples);
        seg.file.write_all(&fragment)?;
        self.bytes += fragment.len() as u64;
        seg.file.sync_data()?;
        self.frames += self.queued.len() as u64;
        self.queued.clear();
        self.queued_ticks = 0;
        Ok(())
    }

    fn close_segment(&mut self) -> std::io::Result<()> {
        self.write_fragment()?;
        if let Some(seg) = self.open.take() {
            seg.file.sync_all()?;
            drop(seg.file);
            std::fs::rename(&seg.part, &seg.done)?;
            self.closed.push(seg.done);
        }
        Ok(())
    }

    /// The segment being written, if any.
    pub fn current(&self) -> Option<&Path> {
        self.open.as_ref().map(|s| s.part.as_path())
    }
}

/// The length of `path` up to its last whole fragment, and that fragment's
/// sequence number, when it starts with `init`; `None` when it does not.
fn whole_fragments(path: &Path, init: &[u8]) -> std::io::Result<Option<(u64, u32)>> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = vec![0; init.len()];
    if size < init.len() as u64 || file.read_exact(&mut head).is_err() || head != init {
        return Ok(None);
    }
    let (mut at, mut kept, mut sequence, mut kept_sequence) =
        (init.len() as u64, init.len() as u64, 0, 0);
    loop {
        let mut header = [0u8; 16];
        file.seek(SeekFrom::Start(at))?;
        if at + 8 > size || file.read_exact(&mut header[..8]).is_err() {
            break;
        }
        let len = u64::from(u32::from_be_bytes(header[..4].try_into().expect("4 bytes")));
        if len < 8 || at + len > size {
            break;
        }
        match &header[4..8] {
            // mfhd is moof's first box: size, type, version/flags, sequence.
            b"moof" => {
                let mut mfhd = [0u8; 16];
                if file.read_exact(&mut mfhd).is_err() || &mfhd[4..8] != b"mfhd" {
                    break;
                }
                sequence = u32::from_be_bytes(mfhd[12..16].try_into().expect("4 bytes"));
            }
            b"mdat" => {
                kept = at + len;
                kept_sequence = sequence;
            }
            b"prft" => {}
            _ => break,
        }
        at += len;
    }
    Ok(Some((kept, kept_sequence)))
}

/// Ticks from `a` to `b`, both measured from `origin`, so that rounding never
/// accumulates: sample times stay `ticks(t - origin)` exactly. At least one
/// tick, should the node's clock step back.
fn duration_between(a_us: u64, b_us: u64, origin_us: u64) -> u32 {
    let a = fmp4::ticks(a_us.saturating_sub(origin_us));
    let b = fmp4::ticks(b_us.saturating_sub(origin_us));
    b.saturating_sub(a).clamp(1, u64::from(u32::MAX)) as u32
}

/// `YYYYmmddTHHMMSSZ` (DESIGN.md, recordings).
pub fn segment_name(us: u64) -> String {
    let t = DateTime::<Utc>::from_timestamp_micros(us as i64).unwrap_or_default();
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path) -> SegmentPlan {
        SegmentPlan {
            dir: dir.to_owned(),
            segment_us: 2_000_000,
            width: 16,
            height: 16,
        }
    }

    fn frame(us: u64) -> RecFrame {
        RecFrame {
            captured_at_us: us,
            node_us: us,
            jpeg: Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]),
        }
    }

    #[test]
    fn segments_are_cut_on_boundaries_and_named_for_their_start() {
        let dir = std::env::temp_dir().join(format!("camfleet-seg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Segmenter::new(plan(&dir));
        // 2026-11-21T10:00:01.5Z, then 10 fps for 4 s.
        let start = 1_795_255_201_500_000u64;
        for i in 0..40 {
            s.push(frame(start + i * 100_000)).unwrap();
        }
        assert_eq!(
            s.current().unwrap().file_name().unwrap(),
            "20261121T100004Z.mp4.part"
        );
        s.finish().unwrap();
        let names: Vec<_> = s
            .closed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "20261121T100001Z.mp4",
                "20261121T100002Z.mp4",
                "20261121T100004Z.mp4"
            ]
        );
        assert!(s.closed.iter().all(|p| p.exists()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_segment_begun_again_within_its_second_is_appended_to_not_overwritten() {
        let dir = std::env::temp_dir().join(format!("camfleet-seg-again-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let start = 1_795_255_201_100_000u64; // 10:00:01.1
                                              // A camera that reconnects half a second into its segment: the
                                              // segment is closed, and the next one has the same name.
        let mut first = Segmenter::new(plan(&dir));
        for i in 0..5 {
            first.push(frame(start + i * 100_000)).unwrap();
        }
        first.finish().unwrap();
        let done = dir.join("20261121T100001Z.mp4");
        assert_eq!(first.closed, std::slice::from_ref(&done));
        let whole = std::fs::metadata(&done).unwrap().len();
        // A torn fragment after it (a crash in the middle of a write).
        let mut torn = std::fs::OpenOptions::new()
            .append(true)
            .open(&done)
            .unwrap();
        torn.write_all(&[0, 0, 1, 0, b'm', b'o', b'o', b'f', 1, 2])
            .unwrap();
        drop(torn);
        let mut again = Segmenter::new(plan(&dir));
        again.push(frame(start + 700_000)).unwrap();
        again.push(frame(start + 800_000)).unwrap();
        again.finish().unwrap();
        assert_eq!(again.closed, std::slice::from_ref(&done));
        let len = std::fs::metadata(&done).unwrap().len();
        assert!(len > whole, "the earlier fragment is kept");
        let init = fmp4::init_segment(16, 16);
        assert_eq!(
            whole_fragments(&done, &init).unwrap(),
            Some((len, 2)),
            "the torn fragment is gone and numbering goes on"
        );
        // Another picture size cannot be appended to: moved aside.
        let mut other = Segmenter::new(SegmentPlan {
            width: 32,
            ..plan(&dir)
        });
        other.push(frame(start + 850_000)).unwrap();
        other.finish().unwrap();
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".aside"))
            .count();
        assert_eq!(aside, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations_do_not_drift_and_survive_a_clock_step_back() {
        // 30 fps in µs is not a whole number of ticks apart; the sum of
        // durations must still equal the span.
        let origin = 0;
        let times: Vec<u64> = (0..31).map(|i| i * 1_000_000 / 30).collect();
        let total: u64 = times
            .windows(2)
            .map(|w| u64::from(duration_between(w[0], w[1], origin)))
            .sum();
        assert_eq!(total, fmp4::ticks(1_000_000));
        assert_eq!(duration_between(5_000, 4_000, 0), 1);
    }
}
