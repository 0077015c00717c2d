//! Cuts one camera's recording into segments on wall-clock boundaries.
//!
//! An MJPEG frame belongs to the segment whose window `[k*S, (k+1)*S)`
//! holds its capture time on the fleet's one timeline (the node's clock, or
//! the viewer's when the node's is off: see `clock`), so every camera cuts
//! at the same instants and each frame lands in exactly one segment. An
//! H.264 segment must start where a decoder can: it is cut at the first
//! keyframe at or after each boundary (and at a keyframe whose SPS/PPS
//! differ from the segment's), named by that keyframe's second; frames
//! before a recording's first keyframe are not written. A sample's
//! duration is the gap to the next frame, so the last frame of a segment
//! ends exactly where the next segment's first frame starts. Fragments are
//! written (and synced) at least every second; a segment is `<name>.mp4.part`
//! until it closes and is renamed to `<name>.mp4`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use shared::fmp4::{self, Sample, SampleEntry, TIMESCALE};
use shared::frame::Codec;

/// Write a fragment once it holds this much media (DESIGN.md: at least every
/// second, so a crash loses at most about a second).
const FRAGMENT_TICKS: u64 = TIMESCALE as u64;
/// A frame this much older than the newest on disk is not that frame again
/// but a node's clock that stepped back (as the link's repeat filter).
const REPEAT_WINDOW_US: u64 = 10_000_000;

/// A frame to record.
#[derive(Debug, Clone)]
pub struct RecFrame {
    /// Capture time on the timeline: where the sample goes.
    pub captured_at_us: u64,
    /// Capture time by the node's own clock, kept in each fragment's `prft`.
    pub node_us: u64,
    /// A decoder can start at it (every JPEG; an H.264 IDR picture).
    pub key: bool,
    pub data: Bytes,
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
    pub codec: Codec,
    /// The size an MJPEG segment says when its first frame does not
    /// (the camera's NodeInfo).
    pub size: (u16, u16),
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
    /// H.264 frames not written because no keyframe had started a segment.
    pub before_key: u64,
    /// Whether segments a crash left open in the folder have been closed
    /// and the newest frame already on disk looked up.
    swept: bool,
    /// A frame the camera's folder already holds: one placed at or before
    /// it is not written again (a viewer that crashed and resumed is sent
    /// frames its last run wrote).
    on_disk: Option<OnDisk>,
    /// Frames not written because the folder already held them.
    pub repeats: u64,
}

/// The newest frame already in a camera's folder.
#[derive(Debug, Clone, Copy)]
struct OnDisk {
    at_us: u64,
    /// A frame placed within this of it is that frame (the two runs'
    /// clock corrections differ a little).
    slack_us: u64,
}

struct OpenSegment {
    window: u64,
    entry: SampleEntry,
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
            before_key: 0,
            swept: false,
            on_disk: None,
            repeats: 0,
        }
    }

    /// Records a frame: may close the current segment and open the next.
    pub fn push(&mut self, frame: RecFrame) -> std::io::Result<()> {
        if !std::mem::replace(&mut self.swept, true) {
            close_leftovers(&self.plan.dir);
            self.on_disk = newest_on_disk(&self.plan.dir);
        }
        if let Some(d) = self.on_disk {
            let t = frame.captured_at_us;
            if t <= d.at_us + d.slack_us && d.at_us.saturating_sub(t) <= REPEAT_WINDOW_US {
                if self.repeats == 0 {
                    tracing::info!(
                        "{}: frames up to {} are already on disk (an earlier run wrote them): not writing them again",
                        self.plan.dir.display(),
                        segment_name(d.at_us)
                    );
                }
                self.repeats += 1;
                return Ok(());
            }
            self.on_disk = None;
        }
        let window = frame.captured_at_us / self.plan.segment_us;
        let h264 = self.plan.codec == Codec::H264;
        // A keyframe's entry: an H.264 segment's SPS/PPS must hold for all
        // of it.
        let entry = frame
            .key
            .then(|| SampleEntry::of_keyframe(self.plan.codec, &frame.data))
            .flatten();
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
            let cut = self.open.as_ref().is_some_and(|s| {
                let boundary = window > s.window && (!h264 || frame.key);
                let new_params = h264 && entry.as_ref().is_some_and(|e| *e != s.entry);
                boundary || new_params
            });
            if cut {
                self.close_segment()?;
            } else if self.queued_ticks >= FRAGMENT_TICKS {
                self.write_fragment()?;
            }
        }
        if self.open.is_none() {
            let entry = match entry {
                Some(entry) => entry,
                None if h264 => {
                    // Nothing a decoder could start at yet.
                    self.before_key += 1;
                    return Ok(());
                }
                None => SampleEntry::Jpeg {
                    width: self.plan.size.0,
                    height: self.plan.size.1,
                },
            };
            self.open_segment(window, frame.captured_at_us, entry)?;
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

    fn open_segment(
        &mut self,
        window: u64,
        first_us: u64,
        entry: SampleEntry,
    ) -> std::io::Result<()> {
        let boundary = window * self.plan.segment_us;
        // A session starts between boundaries: its first segment is named
        // for its first frame (to the second), the rest for their boundary;
        // an H.264 segment for its first keyframe's second. Sample times
        // count from the instant the name says.
        let first_second = first_us - first_us % 1_000_000;
        let origin_us = match self.plan.codec {
            Codec::Mjpeg => boundary.max(first_second),
            Codec::H264 => first_second,
        };
        let name = segment_name(origin_us);
        std::fs::create_dir_all(&self.plan.dir)?;
        let part = self.plan.dir.join(format!("{name}.mp4.part"));
        let done = self.plan.dir.join(format!("{name}.mp4"));
        let init = fmp4::init_segment(&entry);
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
            entry,
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
                    "{} has another picture size or codec, or is not a camfleet segment: moved to {} to start it again",
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
                key: f.key,
                data: &f.data,
            })
            .collect();
        seg.fragments += 1;
        let fragment = fmp4::fragment(seg.fragments, base, Some(first.node_us), &samples);
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
    walk_fragments(&mut file, init.len() as u64, size).map(Some)
}

/// The length of a segment up to its last whole fragment (`None`: it does
/// not start with `ftyp` and `moov`, so it is not one to mend).
fn whole_length(path: &Path) -> std::io::Result<Option<u64>> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut at = 0;
    for kind in [b"ftyp", b"moov"] {
        let mut header = [0u8; 8];
        file.seek(SeekFrom::Start(at))?;
        if at + 8 > size || file.read_exact(&mut header).is_err() || &header[4..8] != kind {
            return Ok(None);
        }
        let len = u64::from(u32::from_be_bytes(header[..4].try_into().expect("4 bytes")));
        if len < 8 || at + len > size {
            return Ok(None);
        }
        at += len;
    }
    Ok(Some(walk_fragments(&mut file, at, size)?.0))
}

/// From `at`, where the fragments begin, to the end of the last whole one:
/// that end and its sequence number.
fn walk_fragments(file: &mut File, mut at: u64, size: u64) -> std::io::Result<(u64, u32)> {
    let (mut kept, mut sequence, mut kept_sequence) = (at, 0, 0);
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
    Ok((kept, kept_sequence))
}

/// The newest frame in the camera folder `dir`: the last sample of its
/// newest segment (closed or left open), if it has one.
fn newest_on_disk(dir: &Path) -> Option<OnDisk> {
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name
                .strip_suffix(".mp4")
                .or_else(|| name.strip_suffix(".mp4.part"))?
                .to_owned();
            Some((stem, e.path()))
        })
        .max()?;
    let origin = chrono::NaiveDateTime::parse_from_str(&newest.0, "%Y%m%dT%H%M%SZ").ok()?;
    let index =
        crate::playback::index::read(&newest.1, origin.and_utc().timestamp_micros()).ok()?;
    let last = index.samples.last()?;
    Some(OnDisk {
        at_us: u64::try_from(last.at_us).ok()?,
        slack_us: (last.duration_us.max(0) as u64 / 4).max(1_000),
    })
}

/// Closes the `.mp4.part` files a crashed viewer left in `dir` (a camera's
/// recorder runs it before it writes): each is cut after its last whole
/// fragment and renamed to `.mp4`, so it plays to its end, and retention
/// (which never takes an open segment) may delete it in its turn. One the
/// recording goes on with (begun again within its second) is reopened
/// from its `.mp4`.
fn close_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let part = entry.path();
        let Some(name) = part.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".mp4.part") else {
            continue;
        };
        let done = dir.join(format!("{stem}.mp4"));
        if done.exists() {
            continue;
        }
        let mended = whole_length(&part).and_then(|len| {
            let Some(len) = len else {
                return Ok(false);
            };
            let file = std::fs::OpenOptions::new().write(true).open(&part)?;
            file.set_len(len)?;
            file.sync_all()?;
            std::fs::rename(&part, &done)?;
            Ok(true)
        });
        match mended {
            Ok(true) => tracing::info!(
                "{}: left open by a viewer that stopped without closing it; closed after its last whole fragment",
                done.display()
            ),
            Ok(false) => tracing::warn!(
                "{} is not a camfleet segment; left as it is",
                part.display()
            ),
            Err(e) => tracing::warn!("cannot close {}: {e}", part.display()),
        }
    }
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
            codec: Codec::Mjpeg,
            size: (16, 16),
        }
    }

    fn frame(us: u64) -> RecFrame {
        RecFrame {
            captured_at_us: us,
            node_us: us,
            key: true,
            data: Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]),
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
        let init = fmp4::init_segment(&SampleEntry::Jpeg {
            width: 16,
            height: 16,
        });
        assert_eq!(
            whole_fragments(&done, &init).unwrap(),
            Some((len, 2)),
            "the torn fragment is gone and numbering goes on"
        );
        // Another picture size cannot be appended to: moved aside.
        let mut other = Segmenter::new(SegmentPlan {
            size: (32, 16),
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

    /// An H.264 access unit in AVCC: a keyframe with an SPS (whose level
    /// byte is `level`: another level is another stream) and a PPS, or a
    /// P picture.
    fn h264(us: u64, key: bool, level: u8) -> RecFrame {
        let sps: &[u8] = &[
            0x67, 0x64, 0x00, level, 0xAC, 0xD9, 0x40, 0x50, 0x05, 0xBB, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xC0, 0xF1, 0x83, 0x19, 0x60,
        ];
        let mut data = Vec::new();
        let nals: Vec<&[u8]> = if key {
            vec![sps, &[0x68, 0xEE, 0x3C, 0x80], &[0x65, 0x88, 0x84]]
        } else {
            vec![&[0x41, 0x9A, 0x02]]
        };
        for nal in nals {
            data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            data.extend_from_slice(nal);
        }
        RecFrame {
            captured_at_us: us,
            node_us: us,
            key,
            data: Bytes::from(data),
        }
    }

    #[test]
    fn h264_segments_start_at_keyframes_after_each_boundary_and_at_new_parameters() {
        let dir = std::env::temp_dir().join(format!("camfleet-seg-h264-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Segmenter::new(SegmentPlan {
            codec: Codec::H264,
            ..plan(&dir)
        });
        // 10:00:01.55 at 10 fps, a keyframe at .85 of every second; the one
        // at 03.85 has another SPS.
        let start = 1_795_255_201_550_000u64;
        for i in 0..45u64 {
            let key = i % 10 == 3;
            let level = if (23..33).contains(&i) { 0x20 } else { 0x1F };
            s.push(h264(start + i * 100_000, key, level)).unwrap();
        }
        s.finish().unwrap();
        assert_eq!(
            s.before_key, 3,
            "the three frames before the first keyframe"
        );
        let names: Vec<_> = s
            .closed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "20261121T100001Z.mp4", // its first keyframe, 01.85
                "20261121T100002Z.mp4", // the first keyframe after 02.00
                "20261121T100003Z.mp4", // new parameters at 03.85
                "20261121T100004Z.mp4", // the first keyframe after 04.00
            ]
        );
        let mut count = 0;
        let mut end_of_previous = None;
        for (path, frames) in s.closed.iter().zip([10, 10, 10, 12]) {
            let origin = (name_us(path)) as i64;
            let index = crate::playback::index::read(path, origin).unwrap();
            assert!(matches!(index.entry, Some(SampleEntry::Avc(_))));
            assert_eq!(index.samples.len(), frames, "{}", path.display());
            assert!(
                index.samples[0].key,
                "{} starts at a keyframe",
                path.display()
            );
            let keys: Vec<bool> = index.samples.iter().map(|s| s.key).collect();
            let want: Vec<bool> = (0..frames).map(|i| i % 10 == 0).collect();
            assert_eq!(keys, want, "sync samples flagged");
            let first = start + (3 + count) * 100_000;
            assert_eq!(index.samples[0].at_us, first as i64, "named by its second");
            if let Some(end) = end_of_previous {
                assert_eq!(index.samples[0].at_us, end, "gapless");
            }
            let last = index.samples[frames - 1];
            end_of_previous = Some(last.at_us + last.duration_us);
            count += frames as u64;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn name_us(path: &Path) -> u64 {
        let stem = path.file_name().unwrap().to_string_lossy();
        let t = chrono::NaiveDateTime::parse_from_str(&stem[..16], "%Y%m%dT%H%M%SZ").unwrap();
        t.and_utc().timestamp_micros() as u64
    }

    #[test]
    fn a_run_after_a_crash_closes_what_it_left_open_and_writes_no_frame_twice() {
        let dir = std::env::temp_dir().join(format!("camfleet-seg-crash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let start = 1_795_255_201_100_000u64; // 10:00:01.1
        let mut crashed = Segmenter::new(plan(&dir));
        for i in 0..25 {
            crashed.push(frame(start + i * 100_000)).unwrap();
        }
        // Killed: its segment stays a .part, with a torn fragment at the end.
        let part = crashed.current().unwrap().to_owned();
        std::mem::forget(crashed);
        let whole = std::fs::metadata(&part).unwrap().len();
        let mut torn = std::fs::OpenOptions::new()
            .append(true)
            .open(&part)
            .unwrap();
        torn.write_all(&[0, 0, 1, 0, b'm', b'o', b'o', b'f'])
            .unwrap();
        drop(torn);
        // Its last whole fragment ends at 2.9 s; the next run is sent the
        // frames from 2.6 s on.
        let mut next = Segmenter::new(plan(&dir));
        for i in 15..40 {
            next.push(frame(start + i * 100_000)).unwrap();
        }
        next.finish().unwrap();
        let closed = part.with_extension("");
        assert!(
            !part.exists() && closed.exists(),
            "the crash's .part is closed"
        );
        assert_eq!(
            std::fs::metadata(&closed).unwrap().len(),
            whole,
            "cut after its last whole fragment"
        );
        let on_disk: Vec<i64> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .flat_map(|e| {
                let name = e.file_name().into_string().unwrap();
                let origin = chrono::NaiveDateTime::parse_from_str(&name[..16], "%Y%m%dT%H%M%SZ")
                    .unwrap()
                    .and_utc()
                    .timestamp_micros();
                crate::playback::index::read(&e.path(), origin)
                    .unwrap()
                    .samples
            })
            .map(|s| s.at_us)
            .collect();
        let mut unique = on_disk.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), on_disk.len(), "no frame twice: {on_disk:?}");
        assert_eq!(next.repeats, 4, "2.6 to 2.9 s were not written again");
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
