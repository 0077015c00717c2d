//! The viewer end to end: real mosquitto, two real camera-nodes, the real
//! viewer; recording started and stopped with mosquitto_pub; every segment
//! checked with ffprobe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::NaiveDateTime;
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// ffprobe's answer on the video stream: `-show_entries ENTRIES -of FORMAT`.
fn ffprobe(path: &Path, entries: &str, format: &str) -> String {
    require("ffprobe", "ffmpeg");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            entries,
            "-of",
            format,
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The pts of every frame.
fn frame_pts(path: &Path) -> Vec<f64> {
    let text = ffprobe(path, "packet=pts_time", "csv=p=0");
    text.split_whitespace()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("pts {v:?} in {}", path.display()))
        })
        .collect()
}

fn stream_info(path: &Path) -> String {
    ffprobe(
        path,
        "stream=codec_name,width,height,duration",
        "default=noprint_wrappers=1",
    )
}

/// Seconds since the epoch of a `YYYYmmddTHHMMSSZ.mp4` name.
fn name_time(path: &Path) -> f64 {
    let stem = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".mp4")
        .to_owned();
    NaiveDateTime::parse_from_str(&stem, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
        .timestamp() as f64
}

#[test]
fn two_nodes_are_recorded_in_gapless_two_second_segments() {
    let TwoNodes {
        broker,
        a: _a,
        b: _b,
        recordings,
        mut viewer,
    } = TwoNodes::start();
    broker.publish("command/rec", "start");
    // Until each camera has closed two segments.
    wait_for("two closed segments per camera", SECS(30), || {
        let done = files(&recordings.0, ".mp4");
        ["pi-a", "pi-b"]
            .iter()
            .all(|n| {
                done.iter()
                    .filter(|p| p.to_string_lossy().contains(n))
                    .count()
                    >= 2
            })
            .then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_for("the recorders to close", SECS(20), || {
        (viewer.log().matches("recording closed").count() == 2).then_some(())
    });
    assert!(
        files(&recordings.0, ".part").is_empty(),
        "no .part left after stop"
    );

    let sessions: Vec<_> = std::fs::read_dir(&recordings.0)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(sessions.len(), 1, "one session folder");
    let mut per_camera: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for seg in files(&recordings.0, ".mp4") {
        let camera_dir = seg.parent().unwrap().to_string_lossy().into_owned();
        per_camera.entry(camera_dir).or_default().push(seg);
    }
    assert_eq!(per_camera.len(), 2);
    let log = viewer.log();
    for (camera_dir, segments) in &per_camera {
        let size = if camera_dir.contains("pi-a") {
            "width=320\nheight=240"
        } else {
            "width=160\nheight=120"
        };
        let mut total = 0;
        let mut end_of_previous: Option<f64> = None;
        for (i, seg) in segments.iter().enumerate() {
            let info = stream_info(seg);
            assert!(
                info.contains("codec_name=mjpeg") && info.contains(size),
                "{}: {info}",
                seg.display()
            );
            let start = name_time(seg);
            if i > 0 {
                assert_eq!(
                    start % 2.0,
                    0.0,
                    "{} is not on a 2 s boundary",
                    seg.display()
                );
            }
            let pts = frame_pts(seg);
            assert!(!pts.is_empty(), "{} has no frames", seg.display());
            total += pts.len();
            // Every frame in the segment's 2 s window.
            let window = ((start + pts[0]) / 2.0).floor();
            assert!(
                pts.iter().all(|p| ((start + p) / 2.0).floor() == window),
                "{}: frames outside its window",
                seg.display()
            );
            if let Some(end) = end_of_previous {
                // Gapless: the previous segment's last frame ends where this one's first begins.
                let first = start + pts[0];
                assert!(
                    (first - end).abs() < 0.0011,
                    "{}: starts at {first}, previous ended at {end}",
                    seg.display()
                );
            }
            // ffprobe's stream duration is where the last frame ends, from media time 0.
            let duration: f64 = info
                .lines()
                .find_map(|l| l.strip_prefix("duration="))
                .unwrap()
                .parse()
                .unwrap();
            end_of_previous = Some(start + duration);
        }
        let camera = if camera_dir.contains("pi-a") {
            "pi-a/cam0"
        } else {
            "pi-b/cam0"
        };
        let line = log
            .lines()
            .find(|l| l.contains(&format!("camera={camera}")) && l.contains("recording closed"))
            .unwrap();
        let written: usize = line
            .split("recording closed: ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            total, written,
            "{camera}: ffprobe counts {total} frames, the viewer wrote {written}"
        );
    }
    viewer.stop();
}
