//! H.264 cameras recorded end to end: real mosquitto, a real camera-node
//! encoding its test pattern as H.264 (a keyframe a second), the real
//! viewer recording 5 s segments; every segment checked with ffprobe and
//! decoded by ffmpeg, and the burned-in frame numbers of all segments read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use camera_node::source::pattern::read_frame_number;
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const W: u32 = 320;
const H: u32 = 240;

/// One packet as ffprobe reads it: timeline time and duration (µs), and
/// whether it is a keyframe.
#[derive(Debug, Clone, Copy)]
struct Packet {
    at_us: i64,
    duration_us: i64,
    key: bool,
}

fn packets(segment: &Path) -> Vec<Packet> {
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

fn codec_name(segment: &Path) -> String {
    let out = ffprobe_video(
        segment,
        &["-show_entries", "stream=codec_name", "-of", "csv=p=0"],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every picture of `segment` decoded by ffmpeg: their burned-in numbers,
/// and what ffmpeg said at level error (nothing when all decoded).
fn decoded_numbers(segment: &Path) -> (Vec<u64>, String) {
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

fn h264_node(broker: &Broker, id: &str) -> Node {
    test_node_with(broker, id, "320x240", &["--codec", "h264"])
}

/// The closed segments of the one camera under `recordings`, oldest first.
fn segments_of(recordings: &Path, node: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = files(recordings, ".mp4")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&format!("/{node}/")))
        .collect();
    found.sort();
    found
}

#[test]
fn an_h264_camera_is_recorded_in_keyframe_cut_gapless_segments_every_frame_once() {
    let broker = Broker::start();
    let _node = h264_node(&broker, "pi-h");
    let recordings = TempDir::new("recordings");
    let mut viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "5"]);
    viewer.wait_log("camera{camera=pi-h/cam0}: connected", SECS(20));
    broker.publish("command/rec", "start");
    wait_for("three closed segments", SECS(40), || {
        (segments_of(&recordings.0, "pi-h").len() >= 3).then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_for("the recorder to close", SECS(20), || {
        viewer.log().contains("recording closed").then_some(())
    });
    assert!(files(&recordings.0, ".part").is_empty(), "no .part left");
    let segments = segments_of(&recordings.0, "pi-h");
    let mut all_numbers = Vec::new();
    let mut previous: Option<Packet> = None;
    for (i, segment) in segments.iter().enumerate() {
        let name = segment.display();
        assert_eq!(codec_name(segment), "h264", "{name}");
        let packets = packets(segment);
        // The last may have begun just before the stop.
        let fewest = if i + 1 < segments.len() { 5 } else { 0 };
        assert!(packets.len() > fewest, "{name}: {} packets", packets.len());
        assert!(packets[0].key, "{name} starts at a keyframe");
        let first = packets[0];
        let last = packets[packets.len() - 1];
        let length = last.at_us + last.duration_us - first.at_us;
        // The first and last segments hold what the session held of theirs.
        if i > 0 && i + 1 < segments.len() {
            assert!(
                (4_000_000..=6_000_000).contains(&length),
                "{name}: {length} µs long"
            );
        }
        // Cut at the first keyframe at or after the 5 s boundary.
        if i > 0 {
            let boundary = first.at_us - first.at_us.rem_euclid(5_000_000);
            assert!(
                first.at_us - boundary < 1_100_000,
                "{name} starts {} µs after its boundary",
                first.at_us - boundary
            );
        }
        if let Some(prev) = previous {
            let gap = first.at_us - (prev.at_us + prev.duration_us);
            assert!(
                gap.abs() <= 1_000,
                "{name}: {gap} µs from the segment before"
            );
        }
        previous = Some(last);
        let (numbers, errors) = decoded_numbers(segment);
        assert!(errors.trim().is_empty(), "ffmpeg on {name}: {errors}");
        assert_eq!(numbers.len(), packets.len(), "{name}: every packet decodes");
        all_numbers.extend(numbers);
    }
    for pair in all_numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "frame numbers across the segments: {all_numbers:?}"
        );
    }
    let log = viewer.log();
    assert!(!log.contains("ERROR"), "the viewer logged an error:\n{log}");
    viewer.stop();
}
