#![allow(dead_code)] // each test file uses some of these
//! What the H.264 recording tests read back from a segment: its packets
//! as ffprobe reads them, and its pictures' burned-in numbers as ffmpeg
//! decodes them.

use std::path::{Path, PathBuf};
use std::process::Command;

use camera_node::source::pattern::read_frame_number;
use testkit::viewers::*;
use testkit::*;

const W: u32 = 320;
const H: u32 = 240;

/// One packet as ffprobe reads it: timeline time and duration (µs), and
/// whether it is a keyframe.
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub at_us: i64,
    pub duration_us: i64,
    pub key: bool,
}

pub fn packets(segment: &Path) -> Vec<Packet> {
    let out = ffprobe_video(
        segment,
        &[
            "-show_entries",
            "packet=pts_time,duration_time,flags",
            "-of",
            "csv=p=0",
        ],
    );
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        segment.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let origin = origin_us(segment);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let secs = |v: &str| (v.parse::<f64>().unwrap() * 1e6).round() as i64;
            Packet {
                at_us: origin + secs(f[0]),
                duration_us: secs(f[1]),
                key: f[2].contains('K'),
            }
        })
        .collect()
}

pub fn codec_name(segment: &Path) -> String {
    let out = ffprobe_video(
        segment,
        &["-show_entries", "stream=codec_name", "-of", "csv=p=0"],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every picture of `segment` decoded by ffmpeg: their burned-in numbers,
/// and what ffmpeg said at level error (nothing when all decoded).
pub fn decoded_numbers(segment: &Path) -> (Vec<u64>, String) {
    require("ffmpeg", "ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-nostdin", "-i"])
        .arg(segment)
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg");
    let numbers = out
        .stdout
        .chunks((W * H) as usize)
        .map(|p| read_frame_number(p, W, H).expect("a test-pattern picture"))
        .collect();
    (numbers, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The closed segments of `node`'s camera under `recordings`, oldest first.
pub fn segments_of(recordings: &Path, node: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = files(recordings, ".mp4")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&format!("/{node}/")))
        .collect();
    found.sort();
    found
}
