//! A time range of a camera's recording as one MP4: the samples copied
//! from the segments that hold them (no decoding, no re-encoding) into a
//! fragmented MP4 whose clock starts at the range's first frame, so it
//! plays in VLC and ffplay like any recording. An H.264 range starts at
//! the keyframe at or before its start (so its first picture decodes) and
//! ends where the stream's SPS/PPS change (one sample entry per file).
//! Used by `viewer export` and by the dashboard's download.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::index::SampleRef;
use super::{segments, SegmentCache};
use shared::fmp4::{fragment, init_segment, ticks, Sample, SampleEntry};
use shared::frame::Codec;

/// Samples per fragment of an export (a second or two of video).
const FRAGMENT_SAMPLES: usize = 30;
/// Largest export of one camera, in bytes of JPEG: a day of 1080p30 is
/// about 250 GB, far past what a download or a disk should take at once.
pub const MAX_EXPORT_BYTES: u64 = 64 << 30;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    pub frames: u64,
    pub bytes: u64,
    /// Timeline times of the first and last frames (µs since the epoch).
    pub first_us: i64,
    pub last_us: i64,
    pub codec: Option<Codec>,
}

/// The samples of the camera in `dir` that begin in `[from_us, to_us)`,
/// in time order, with the file each is in.
pub fn samples_in(
    cache: &SegmentCache,
    dir: &Path,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<(PathBuf, SampleRef)>> {
    let all = segments(dir);
    let mut out = Vec::new();
    for (i, (origin, path)) in all.iter().enumerate() {
        let next = all.get(i + 1).map_or(i64::MAX, |(o, _)| *o);
        // A segment holds its origin's second up to the next one's start
        // (a last sample may run a little past; its start does not).
        if *origin >= to_us || next < from_us {
            continue;
        }
        let index = cache.index(path, *origin)?;
        let first = index.samples.partition_point(|s| s.at_us < from_us);
        // A picture decodes only from the keyframe before it (a segment
        // starts with one).
        let first = index.samples[..first.min(index.samples.len())]
            .iter()
            .rposition(|s| s.key)
            .filter(|_| index.samples.get(first).is_some_and(|s| !s.key))
            .unwrap_or(first);
        out.extend(
            index.samples[first..]
                .iter()
                .filter(|s| s.at_us < to_us)
                .map(|s| (path.clone(), *s)),
        );
    }
    out.sort_by_key(|(_, s)| s.at_us);
    out.dedup_by_key(|(_, s)| s.at_us);
    Ok(out)
}

/// The sample entry of the segment at `path` (its `moov`).
fn entry_of(path: &Path) -> Result<SampleEntry> {
    super::index::read(path, 0)?
        .entry
        .with_context(|| format!("{}: not a camfleet segment", path.display()))
}

/// Writes `samples` to `out` as one MP4; `progress` hears the frames done
/// and the total after each fragment.
pub fn write_mp4(
    samples: &[(PathBuf, SampleRef)],
    out: &mut impl Write,
    mut progress: impl FnMut(u64, u64),
) -> Result<Exported> {
    let Some((first_path, first)) = samples.first() else {
        bail!("no frame in the range");
    };
    let total: u64 = samples.iter().map(|(_, s)| u64::from(s.len)).sum();
    if total > MAX_EXPORT_BYTES {
        bail!(
            "the range holds {} GB of video; export at most {} GB at once (a shorter --from/--to)",
            total >> 30,
            MAX_EXPORT_BYTES >> 30
        );
    }
    let entry = match entry_of(first_path)? {
        // An MJPEG segment's size is its first frame's.
        SampleEntry::Jpeg { .. } => {
            SampleEntry::of_keyframe(Codec::Mjpeg, &bytes::Bytes::from(read(first_path, first)?))
                .context("the first frame is not a JPEG with a size")?
        }
        avc => avc,
    };
    // One sample entry per file: an H.264 range ends where its SPS/PPS change.
    let mut same = samples.len();
    if let SampleEntry::Avc(_) = entry {
        let mut checked: Option<&PathBuf> = None;
        for (i, (path, _)) in samples.iter().enumerate() {
            if checked != Some(path) {
                checked = Some(path);
                if entry_of(path)? != entry {
                    tracing::warn!(
                        "{}: the stream's SPS/PPS change here; the export ends before it",
                        path.display()
                    );
                    same = i;
                    break;
                }
            }
        }
    }
    let samples = &samples[..same];
    out.write_all(&init_segment(&entry))?;
    let mut done = Exported {
        first_us: first.at_us,
        codec: Some(entry.codec()),
        ..Exported::default()
    };
    let mut files: Option<(PathBuf, std::fs::File)> = None;
    for (n, chunk) in samples.chunks(FRAGMENT_SAMPLES).enumerate() {
        let mut jpegs = Vec::with_capacity(chunk.len());
        for (path, sample) in chunk {
            if files.as_ref().is_none_or(|(p, _)| p != path) {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                files = Some((path.clone(), file));
            }
            let (_, file) = files.as_mut().expect("opened above");
            jpegs.push((sample.key, read_from(file, sample)?));
        }
        let start = chunk[0].1.at_us;
        let fragment_samples: Vec<Sample<'_>> = chunk
            .iter()
            .zip(&jpegs)
            .enumerate()
            .map(|(i, ((_, s), (key, data)))| {
                // Continuous time: each frame lasts until the next begins,
                // counted from the first frame so rounding never adds up.
                let next = samples
                    .get(n * FRAGMENT_SAMPLES + i + 1)
                    .map_or(s.at_us + s.duration_us, |(_, t)| t.at_us);
                let since = |us: i64| ticks((us - first.at_us) as u64);
                Sample {
                    duration: (since(next) - since(s.at_us)).max(1) as u32,
                    key: *key,
                    data,
                }
            })
            .collect();
        let base = ticks((start - first.at_us) as u64);
        out.write_all(&fragment(
            n as u32 + 1,
            base,
            Some(start as u64),
            &fragment_samples,
        ))?;
        done.frames += chunk.len() as u64;
        done.bytes += jpegs.iter().map(|(_, j)| j.len() as u64).sum::<u64>();
        done.last_us = chunk[chunk.len() - 1].1.at_us;
        progress(done.frames, samples.len() as u64);
    }
    out.flush()?;
    Ok(done)
}

fn read(path: &Path, sample: &SampleRef) -> Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    read_from(&mut file, sample)
}

fn read_from(file: &mut std::fs::File, sample: &SampleRef) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(sample.offset))?;
    let mut jpeg = vec![0u8; sample.len as usize];
    file.read_exact(&mut jpeg)?;
    Ok(jpeg)
}

/// The cameras of a session: `(node, camera, folder)`, in name order.
pub fn cameras_of(session_dir: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    for node in read_dirs(session_dir) {
        for camera in read_dirs(&node) {
            let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
            if let (Some(n), Some(c)) = (name(&node), name(&camera)) {
                out.push((n, c, camera));
            }
        }
    }
    out.sort();
    out
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// `viewer export`: what to write.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub session: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `node/camera`; empty: every camera of the session.
    pub cameras: Vec<String>,
    pub out: PathBuf,
    /// Also an H.264 copy of each MP4 (`<name>.h264.mp4`), through ffmpeg.
    pub h264: bool,
}

fn instant(text: &Option<String>, what: &str) -> Result<Option<i64>> {
    text.as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_micros())
                .with_context(|| {
                    format!("--{what} {t:?} is not an RFC 3339 time (2026-11-27T10:17:42Z)")
                })
        })
        .transpose()
}

/// Runs `viewer export`: one MP4 per camera in `request.out`, a progress
/// line per camera on stderr. Returns the files written.
pub fn run(recordings: &Path, request: &ExportRequest) -> Result<Vec<PathBuf>> {
    if !super::plain(&request.session) {
        bail!(
            "{:?} is not a session name (YYYYmmddTHHMMSSZ)",
            request.session
        );
    }
    let session_dir = recordings.join(&request.session);
    if !session_dir.is_dir() {
        bail!("no session {} in {}", request.session, recordings.display());
    }
    let from = instant(&request.from, "from")?.unwrap_or(i64::MIN);
    let to = instant(&request.to, "to")?.unwrap_or(i64::MAX);
    if from >= to {
        bail!("--from must come before --to");
    }
    let mut cameras = cameras_of(&session_dir);
    if !request.cameras.is_empty() {
        cameras.retain(|(n, c, _)| request.cameras.contains(&format!("{n}/{c}")));
        if cameras.is_empty() {
            bail!("the session has none of the cameras {:?}", request.cameras);
        }
    }
    std::fs::create_dir_all(&request.out)
        .with_context(|| format!("cannot create {}", request.out.display()))?;
    let cache = SegmentCache::default();
    let mut written = Vec::new();
    for (node, camera, dir) in cameras {
        let samples = samples_in(&cache, &dir, from, to)?;
        if samples.is_empty() {
            eprintln!("{node}/{camera}: no frame in the range");
            continue;
        }
        let path = request
            .out
            .join(format!("{}_{node}_{camera}.mp4", request.session));
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        let label = format!("{node}/{camera}");
        let done = write_mp4(&samples, &mut file, |done, total| {
            eprint!(
                "\r{label}: {done}/{total} frames ({}%)",
                done * 100 / total.max(1)
            );
        })?;
        eprintln!(
            "\r{label}: {} frames, {:.1} s, {:.1} MB -> {}",
            done.frames,
            (done.last_us - done.first_us) as f64 / 1e6,
            done.bytes as f64 / 1e6,
            path.display()
        );
        if request.h264 {
            let out = path.with_extension("h264.mp4");
            let copy = done.codec == Some(Codec::H264);
            to_h264(&path, &out, done.last_us - done.first_us, copy, |pct| {
                eprint!("\r{label}: H.264 {pct}%")
            })?;
            eprintln!("\r{label}: H.264 100% -> {}", out.display());
            written.push(out);
        }
        written.push(path);
    }
    Ok(written)
}

/// Re-encodes `mp4` as H.264 into `out` with ffmpeg (or, when it is
/// H.264 already, `copy`: remuxes it into a progressive MP4, no
/// re-encoding), telling `progress` the percentage done (from ffmpeg's
/// `-progress` reports) as it goes.
pub fn to_h264(
    mp4: &Path,
    out: &Path,
    duration_us: i64,
    copy: bool,
    mut progress: impl FnMut(u8),
) -> Result<()> {
    use std::io::BufRead;
    let codec: &[&str] = if copy {
        &["-c:v", "copy"]
    } else {
        &[
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        ]
    };
    let mut child = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
        .arg(mp4)
        .args(codec)
        .args(["-movflags", "+faststart", "-progress", "pipe:1", "-nostats"])
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run ffmpeg for H.264 (sudo apt-get install ffmpeg)")?;
    let stdout = child.stdout.take().context("ffmpeg's progress")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(at) = line
            .strip_prefix("out_time_us=")
            .and_then(|v| v.parse::<i64>().ok())
        {
            progress((at.max(0) * 100 / duration_us.max(1)).min(99) as u8);
        }
    }
    let done = child.wait_with_output()?;
    if !done.status.success() {
        bail!(
            "ffmpeg could not make {} ({}): {}",
            out.display(),
            done.status,
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    progress(100);
    Ok(())
}
