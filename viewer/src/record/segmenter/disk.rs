//! What a camera's folder already holds when its recording starts: the
//! newest frame on disk (so a frame is never recorded twice across a
//! restart), the `.mp4.part` files a crashed viewer left (closed after
//! their last whole fragment), and how much of a segment is whole.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The newest frame already in a camera's folder.
#[derive(Debug, Clone, Copy)]
pub(super) struct OnDisk {
    pub at_us: u64,
    /// A frame placed within this of it is that frame (the two runs'
    /// clock corrections differ a little).
    pub slack_us: u64,
}

/// The length of `path` up to its last whole fragment, and that fragment's
/// sequence number, when it starts with `init`; `None` when it does not.
pub(super) fn whole_fragments(path: &Path, init: &[u8]) -> std::io::Result<Option<(u64, u32)>> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = vec![0; init.len()];
    if size < init.len() as u64 || file.read_exact(&mut head).is_err() || head != init {
        return Ok(None);
    }
    walk_fragments(&mut file, init.len() as u64, size).map(Some)
}

/// What a crashed viewer's `.part` holds.
enum Leftover {
    /// Not `ftyp` and `moov` first: not one to mend.
    Foreign,
    /// Its header and no whole fragment: no frame to keep.
    Empty,
    /// Whole fragments up to this length.
    Whole(u64),
}

/// How much of a segment is whole.
fn leftover(path: &Path) -> std::io::Result<Leftover> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut at = 0;
    for kind in [b"ftyp", b"moov"] {
        let mut header = [0u8; 8];
        file.seek(SeekFrom::Start(at))?;
        if at + 8 > size || file.read_exact(&mut header).is_err() || &header[4..8] != kind {
            return Ok(Leftover::Foreign);
        }
        let len = u64::from(u32::from_be_bytes(header[..4].try_into().expect("4 bytes")));
        if len < 8 || at + len > size {
            return Ok(Leftover::Foreign);
        }
        at += len;
    }
    let whole = walk_fragments(&mut file, at, size)?.0;
    Ok(if whole == at {
        Leftover::Empty
    } else {
        Leftover::Whole(whole)
    })
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
pub(super) fn newest_on_disk(dir: &Path) -> Option<OnDisk> {
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
/// from its `.mp4`. One killed before its first fragment holds no frame
/// and is removed: a segment of no samples would not play, and would hide
/// the frames before it from [`newest_on_disk`].
pub(super) fn close_leftovers(dir: &Path) {
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
        let mended = leftover(&part).and_then(|kind| {
            match kind {
                Leftover::Whole(len) => {
                    let file = std::fs::OpenOptions::new().write(true).open(&part)?;
                    file.set_len(len)?;
                    file.sync_all()?;
                    std::fs::rename(&part, &done)?;
                }
                Leftover::Empty => std::fs::remove_file(&part)?,
                Leftover::Foreign => {}
            }
            Ok(kind)
        });
        match mended {
            Ok(Leftover::Whole(_)) => tracing::info!(
                "{}: left open by a viewer that stopped without closing it; closed after its last whole fragment",
                done.display()
            ),
            Ok(Leftover::Empty) => tracing::info!(
                "{}: left open by a viewer that stopped before its first fragment; removed (it held no frame)",
                part.display()
            ),
            Ok(Leftover::Foreign) => tracing::warn!(
                "{} is not a camfleet segment; left as it is",
                part.display()
            ),
            Err(e) => tracing::warn!("cannot close {}: {e}", part.display()),
        }
    }
}
