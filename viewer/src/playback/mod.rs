//! Reading a session back: the segment index cache ([`SegmentCache`]:
//! each segment's index is built once and kept, at most
//! [`CACHED_SEGMENTS`]; a `.part` being written is indexed again when it
//! has grown, so a session can be watched while it records), and finding
//! in a camera's folder of a session the frame shown at an instant
//! ([`find`]) and the stretches it recorded ([`spans`]).
//!
//! Below it: [`index`] (one segment's samples), [`export`] (a range as
//! one MP4, for `viewer export` and downloads), [`zip`] (a streamed
//! session zip), [`h264`] (the H.264 export jobs) and [`pictures`] (an
//! H.264 camera's recorded pictures decoded for `frame.jpg`). Their HTTP API
//! (`frame.jpg?at=`, `export.mp4`, `export.zip`, `timeline`, the H.264
//! jobs) is the dashboard's, in `dashboard/playback.rs` and
//! `dashboard/exports.rs`; this module never calls back into it, and
//! within the crate uses nothing else (the MP4 boxes are `shared::fmp4`).

pub mod export;
pub mod h264;
pub mod index;
pub mod pictures;
pub mod zip;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use chrono::NaiveDateTime;

use index::{SampleRef, SegmentIndex};

/// Segment indexes kept; the least recently used goes first.
pub const CACHED_SEGMENTS: usize = 256;

/// The segment indexes built so far.
#[derive(Debug, Default)]
pub struct SegmentCache {
    kept: Mutex<HashMap<PathBuf, Cached>>,
}

#[derive(Debug)]
struct Cached {
    /// The file's length when indexed: a `.part` that grew is read again.
    len: u64,
    index: Arc<SegmentIndex>,
    used: u64,
}

impl SegmentCache {
    /// The index of `path` (whose samples count from `origin_us`).
    pub fn index(&self, path: &Path, origin_us: i64) -> Result<Arc<SegmentIndex>> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let mut kept = self.kept.lock().expect("segment cache");
        let tick = kept.values().map(|c| c.used).max().unwrap_or(0) + 1;
        if let Some(cached) = kept.get_mut(path) {
            if cached.len == len {
                cached.used = tick;
                return Ok(Arc::clone(&cached.index));
            }
        }
        let index = Arc::new(index::read(path, origin_us)?);
        if kept.len() >= CACHED_SEGMENTS {
            let oldest = kept
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(p, _)| p.clone());
            if let Some(oldest) = oldest {
                kept.remove(&oldest);
            }
        }
        let cached = Cached {
            len,
            index: Arc::clone(&index),
            used: tick,
        };
        kept.insert(path.to_owned(), cached);
        Ok(index)
    }
}

/// Names that may stand in a recordings path: no separators, no `..`.
pub(crate) fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A segment's start from its name (`YYYYmmddTHHMMSSZ.mp4[.part]`).
fn origin_us(name: &str) -> Option<i64> {
    let stamp = name
        .strip_suffix(".mp4")
        .or_else(|| name.strip_suffix(".mp4.part"))?;
    let t = NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok()?;
    Some(t.and_utc().timestamp_micros())
}

/// A camera's segments (closed and open) by start, oldest first.
pub(crate) fn segments(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((origin_us(&name)?, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Whether the segment at `path` is H.264 (its picture must be decoded).
pub fn is_h264(cache: &SegmentCache, path: &Path) -> Result<bool> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let origin = origin_us(name).context("not a segment name")?;
    let index = cache.index(path, origin)?;
    Ok(matches!(
        index.entry,
        Some(shared::fmp4::SampleEntry::Avc(_))
    ))
}

/// The sample of the camera in `dir` shown at `at_us`, and its file.
pub fn find(cache: &SegmentCache, dir: &Path, at_us: i64) -> Result<Option<(PathBuf, SampleRef)>> {
    let all = segments(dir);
    // The segment begun last before the instant; the one before it in
    // case the instant falls in its last sample's interval.
    let after = all.partition_point(|(origin, _)| *origin <= at_us);
    for (origin, path) in all[..after].iter().rev().take(2) {
        let index = cache.index(path, *origin)?;
        if let Some(sample) = index.at(at_us) {
            return Ok(Some((path.clone(), sample)));
        }
    }
    Ok(None)
}

/// When the camera in `dir` has its first frame after `at_us`, if it has
/// one: a player that lands between two frames (where a segment ended a
/// little before the next began) goes on from there.
pub fn next_after(cache: &SegmentCache, dir: &Path, at_us: i64) -> Result<Option<i64>> {
    let all = segments(dir);
    let after = all.partition_point(|(origin, _)| *origin <= at_us);
    for (origin, path) in &all[after.saturating_sub(1)..] {
        if let Some(sample) = cache.index(path, *origin)?.first_after(at_us) {
            return Ok(Some(sample.at_us));
        }
    }
    Ok(None)
}

/// The JPEG of `sample` in the segment at `path`.
pub(crate) fn read_sample(path: &Path, sample: SampleRef) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(sample.offset))?;
    let mut jpeg = vec![0u8; sample.len as usize];
    file.read_exact(&mut jpeg)?;
    Ok(jpeg)
}

/// A camera's stretches of recording: `[from, to)` in µs, a new stretch
/// wherever frames stop for more than [`GAP`].
pub fn spans(cache: &SegmentCache, dir: &Path) -> Result<Vec<(i64, i64)>> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (origin, path) in segments(dir) {
        for s in &cache.index(&path, origin)?.samples {
            let end = s.at_us + s.duration_us.max(1);
            match out.last_mut() {
                Some(last) if s.at_us - last.1 <= GAP => last.1 = last.1.max(end),
                _ => out.push((s.at_us, end)),
            }
        }
    }
    Ok(out)
}

/// Frames further apart than this are drawn as a gap.
pub const GAP: i64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_and_segment_names_count() {
        assert!(plain("20261127T101500Z") && plain("pi-door") && plain("cam0"));
        assert!(!plain("..") && !plain("a/b") && !plain("") && !plain("%2e%2e"));
        assert_eq!(origin_us("19700101T000001Z.mp4"), Some(1_000_000));
        assert_eq!(origin_us("19700101T000001Z.mp4.part"), Some(1_000_000));
        assert_eq!(origin_us("sensors.csv"), None);
        assert_eq!(origin_us("19700101T000001Z.mp4.aside"), None);
    }
}
