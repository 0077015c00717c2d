#![allow(dead_code)] // each test file uses some of these
//! What the session tests share: ffprobe's reading of recorded segments
//! and exports, the dashboard's frame at an instant, frame numbers.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, SecondsFormat};
use testkit::viewers::*;
/// A sample as ffprobe reads it: its time on the timeline (µs) and the
/// MD5 of its JPEG. (ffprobe 5 gives no packet durations for these files:
/// a sample lasts until the next one begins.)
#[derive(Debug, Clone)]
pub struct Probed {
    pub at_us: i64,
    pub md5: String,
}

pub fn probe(segment: &Path) -> Vec<Probed> {
    try_probe(segment).unwrap_or_else(|why| panic!("ffprobe {}: {why}", segment.display()))
}

/// ffprobe's samples of `segment` on the timeline, or why it could not
/// read it (a `.part` may be renamed while it is read).
pub fn try_probe(segment: &Path) -> Result<Vec<Probed>, String> {
    let origin = origin_us(segment);
    let packets = packets(segment)?;
    Ok(packets
        .into_iter()
        .map(|(t, md5)| Probed {
            at_us: origin + t,
            md5,
        })
        .collect())
}

pub fn md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The frame the dashboard serves at `at_us`: status, body, X-Frame-Time.
pub fn frame_at(dashboard: &str, camera_path: &str, at_us: i64) -> (u16, Vec<u8>, Option<String>) {
    let (status, body, headers) = frame_reply(dashboard, camera_path, at_us);
    (status, body, header_of(&headers, "x-frame-time"))
}

pub fn header_of(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// The dashboard's reply at `at_us`: status, body, the head as text.
pub fn frame_reply(dashboard: &str, camera_path: &str, at_us: i64) -> (u16, Vec<u8>, String) {
    let url = format!(
        "http://{dashboard}/api/sessions/{camera_path}/frame.jpg?at={}",
        rfc3339(at_us)
    );
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "15",
            "-D",
            "/dev/stderr",
            "-o",
            "-",
            &url,
        ])
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status from {url}: {headers}"));
    (status, out.stdout, headers)
}

/// The frame number burned into a test-pattern JPEG at 320x240.
pub fn frame_number(jpeg: &[u8]) -> u64 {
    let luma = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("not a JPEG: {e}"))
        .to_luma8();
    assert_eq!(luma.dimensions(), (320, 240));
    camera_node::source::pattern::read_frame_number(&luma, 320, 240)
        .expect("a test-pattern frame number in the picture")
}

/// The frame number of the frame ffmpeg decodes first from `segment` when
/// seeking to `at_us` (from the segment's first sample).
pub fn frame_number_by_ffmpeg(segment: &Path, at_us: i64) -> u64 {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-ss"])
        .arg(format!("{:.6}", at_us.max(0) as f64 / 1e6))
        .arg("-i")
        .arg(segment)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success() && out.stdout.len() == 320 * 240,
        "ffmpeg -ss {at_us} µs in {}: {}",
        segment.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    camera_node::source::pattern::read_frame_number(&out.stdout, 320, 240)
        .expect("a test-pattern frame number in ffmpeg's frame")
}

/// ffprobe's frame count of an H.264 MP4 at 320x240 (and that it is one).
pub fn h264_frames(path: &Path) -> usize {
    let info = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(
        info.contains("codec_name=h264") && info.contains("width=320"),
        "{}: {info}",
        path.display()
    );
    info.lines()
        .find_map(|l| l.strip_prefix("nb_read_frames="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The sample of `samples` (in time order) whose interval holds `at_us`:
/// the last to begin at or before it, with a next one after it.
pub fn expected(samples: &[Probed], at_us: i64) -> &Probed {
    let i = samples.partition_point(|s| s.at_us <= at_us);
    assert!(
        i > 0 && i < samples.len(),
        "{at_us} is not inside {samples:?}"
    );
    &samples[i - 1]
}

pub fn camera_segments(recordings: &Path, suffix: &str) -> Vec<PathBuf> {
    files(recordings, suffix)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("pi-play"))
        .collect()
}

pub fn from_first(samples: &[&Probed]) -> i64 {
    samples[0].at_us
}

/// (time from the file's start in µs, MD5) of every sample of an MP4.
pub fn probe_relative(file: &Path) -> Vec<(i64, String)> {
    packets(file).unwrap_or_else(|why| panic!("ffprobe {}: {why}", file.display()))
}

/// ffprobe's packets of an MP4: time from its start (µs) and MD5.
pub fn packets(file: &Path) -> Result<Vec<(i64, String)>, String> {
    Ok(packet_lines(file)?
        .lines()
        .filter_map(|l| {
            let (t, h) = l.split_once(',')?;
            let md5 = h.trim().strip_prefix("MD5:")?.to_owned();
            Some(((t.parse::<f64>().ok()? * 1e6).round() as i64, md5))
        })
        .collect())
}

/// The dashboard's export of `camera_path` from `from` to `to` (µs),
/// downloaded to `file`: its samples as [`probe_relative`] reads them.
pub fn downloaded_export(
    dashboard: &str,
    camera_path: &str,
    (from, to): (i64, i64),
    file: &Path,
) -> Vec<(i64, String)> {
    let url = format!(
        "http://{dashboard}/api/sessions/{camera_path}/export.mp4?from={}&to={}",
        rfc3339(from),
        rfc3339(to)
    );
    let fetched = Command::new("curl")
        .args(["-s", "--fail", "--max-time", "30", "-o"])
        .arg(file)
        .arg(&url)
        .status()
        .unwrap();
    assert!(fetched.success(), "GET {url}");
    probe_relative(file)
}

/// A segment's `<session>/<node>/<camera>` under `recordings`.
pub fn camera_path(recordings: &Path, segment: &Path) -> String {
    let dir = segment.parent().unwrap().strip_prefix(recordings).unwrap();
    dir.to_string_lossy().into_owned()
}
