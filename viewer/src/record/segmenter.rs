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
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use shared::fmp4::{self, Sample, SampleEntry, TIMESCALE};
use shared::frame::Codec;

use disk::{close_leftovers, newest_on_disk, whole_fragments, OnDisk};

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

mod disk;
#[cfg(test)]
mod tests;
