//! Exporting a range of an H.264 camera's session: the MP4 holds the
//! recorded samples themselves (the same bytes, no re-encoding) from the
//! keyframe at or before the range's start, so its first picture decodes;
//! `--h264` remuxes it (ffmpeg `-c copy`) rather than encoding it again;
//! the dashboard's download is the command's file. Real mosquitto, node,
//! viewer, ffmpeg, ffprobe, curl.

mod h264_common;
mod playback_common;

use std::process::Command;
use std::time::Duration;

use h264_common::{codec_name, decoded_numbers, segments_of};
use playback_common::{camera_path, downloaded_export, probe_relative, rfc3339};
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const NODE: &str = "pi-hexport";

/// A recorded sample: its time on the timeline, MD5, and keyframe flag.
struct Recorded {
    at_us: i64,
    md5: String,
    key: bool,
}

#[test]
fn an_h264_export_is_a_copy_of_the_recorded_samples_from_the_keyframe_before_its_start() {
    let broker = Broker::start();
    let _node = test_node_with(&broker, NODE, "320x240", &["--codec", "h264"]);
    let recordings = TempDir::new("h264-export");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    let dashboard = viewer.dashboard();
    start_recording(&broker, &recordings.0, 16384);
    wait_for("three closed segments", SECS(40), || {
        (segments_of(&recordings.0, NODE).len() >= 3).then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_state(&broker, "the viewer idle", |s| s.state == "idle");
    wait_for("every segment closed", SECS(20), || {
        files(&recordings.0, ".part").is_empty().then_some(())
    });

    let segments = segments_of(&recordings.0, NODE);
    let recorded: Vec<Recorded> = segments
        .iter()
        .flat_map(|segment| {
            let keys = h264_common::packets(segment);
            let hashes = samples(segment);
            assert_eq!(keys.len(), hashes.len(), "{}", segment.display());
            keys.into_iter()
                .zip(hashes)
                .map(|(packet, (at_us, hash))| Recorded {
                    at_us,
                    md5: hash.trim_start_matches("MD5:").to_owned(),
                    key: packet.key,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    // From a picture between keyframes in the second segment, for 1.5 s.
    let second_start = h264_common::packets(&segments[1])[0].at_us;
    let start = recorded
        .iter()
        .position(|r| r.at_us > second_start && !r.key)
        .expect("a picture between keyframes in the second segment");
    let (from, to) = (recorded[start].at_us, recorded[start].at_us + 1_500_000);
    let key_before = recorded[..=start]
        .iter()
        .rposition(|r| r.key)
        .expect("a keyframe before it");
    let want: Vec<&Recorded> = recorded[key_before..]
        .iter()
        .take_while(|r| r.at_us < to)
        .collect();
    let camera_path = camera_path(&recordings.0, &segments[0]);
    let session = camera_path.split('/').next().unwrap().to_owned();

    let out = TempDir::new("h264-export-out");
    let run = Command::new(env!("CARGO_BIN_EXE_viewer"))
        .args(["--recordings", &recordings.0.display().to_string()])
        .args(["--dashboard", "off", "export", &session])
        .args(["--from", &rfc3339(from), "--to", &rfc3339(to)])
        .args(["--camera", &format!("{NODE}/cam0"), "--h264"])
        .args(["-o", &out.0.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "viewer export: {stderr}");
    assert!(
        stderr.contains(&format!("{} frames", want.len())),
        "{} frames from the keyframe before --from: {stderr}",
        want.len()
    );
    let file = out.path(&format!("{session}_{NODE}_cam0.mp4"));
    let remuxed = out.path(&format!("{session}_{NODE}_cam0.h264.mp4"));
    for exported in [&file, &remuxed] {
        let name = exported.display();
        assert_eq!(codec_name(exported), "h264", "{name}");
        let got = probe_relative(exported);
        let got_md5: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
        let want_md5: Vec<&str> = want.iter().map(|r| r.md5.as_str()).collect();
        assert_eq!(
            got_md5, want_md5,
            "{name}: the recorded samples, byte for byte"
        );
        for (g, w) in got.iter().zip(&want) {
            let drift = (g.0 - (w.at_us - want[0].at_us)).abs();
            assert!(drift <= 12, "{name}: a sample's time moved {drift} µs");
        }
        let (numbers, errors) = decoded_numbers(exported);
        assert!(errors.trim().is_empty(), "ffmpeg on {name}: {errors}");
        assert_eq!(numbers.len(), want.len(), "{name}: every picture decodes");
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: every frame once, in order: {numbers:?}"
        );
    }

    // The dashboard's download: the command's samples.
    let downloaded = out.path("download.mp4");
    assert_eq!(
        downloaded_export(&dashboard, &camera_path, (from, to), &downloaded),
        probe_relative(&file),
        "the download is the command's export"
    );
}
