//! A frame is recorded once: not again when the viewer reconnects after a
//! frozen node or a frozen camera, nor across a node restart. Real
//! mosquitto, real nodes and viewer; every frame of every segment hashed
//! with ffmpeg (the test pattern burns its frame number into each picture,
//! so equal hashes are the same frame twice).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `(segment, index)` of every recorded frame, by the MD5 of its JPEG.
fn frames_by_hash(recordings: &Path) -> HashMap<String, Vec<String>> {
    require("ffmpeg", "ffmpeg");
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let segments = files(recordings, ".mp4");
    assert!(!segments.is_empty(), "nothing was recorded");
    for seg in segments {
        let run = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&seg)
            .args(["-map", "0:v", "-c", "copy", "-f", "framemd5", "-"])
            .output()
            .unwrap();
        assert!(run.status.success(), "ffmpeg cannot read {}", seg.display());
        let name = seg.file_name().unwrap().to_string_lossy().into_owned();
        let lines = String::from_utf8(run.stdout).unwrap();
        for (i, line) in lines.lines().filter(|l| !l.starts_with('#')).enumerate() {
            let hash = line.rsplit(',').next().unwrap().trim().to_owned();
            out.entry(hash).or_default().push(format!("{name}#{i}"));
        }
    }
    out
}

/// Checks every frame is on disk once; returns how many runs of repeated
/// frames the viewer skipped.
fn assert_no_frame_twice(recordings: &Path, viewer: &Viewer) -> usize {
    let frames = frames_by_hash(recordings);
    let twice: Vec<_> = frames.values().filter(|at| at.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "frames recorded twice (of {}): {twice:?}",
        frames.len()
    );
    let repeats = viewer.log().matches("frame already recorded").count();
    eprintln!(
        "{} frames, each recorded once; runs of repeated frames skipped: {repeats}",
        frames.len()
    );
    repeats
}

fn stop_recording(broker: &Broker) {
    broker.publish("command/rec", "stop");
    wait_state(broker, "the viewer idle", |s| s.state == "idle");
}

/// Bytes recorded so far, finished segments and open ones.
fn recorded_bytes(recordings: &Path) -> u64 {
    [".mp4", ".part"]
        .iter()
        .flat_map(|suffix| files(recordings, suffix))
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Waits until the viewer has had `n` first frames of a connection, then
/// until that connection's frames reach the disk (a fragment a second).
fn wait_recording_again(viewer: &Viewer, n: usize, recordings: &Path) {
    wait_connections(viewer, n);
    let before = recorded_bytes(recordings);
    wait_for("frames of the new connection on disk", SECS(20), || {
        (recorded_bytes(recordings) > before + 8192).then_some(())
    });
}

/// Waits until the viewer has had `n` first frames of a connection.
fn wait_connections(viewer: &Viewer, n: usize) {
    wait_for(&format!("{n} connections with frames"), SECS(30), || {
        (viewer.log().matches("first frame").count() >= n).then_some(())
    });
}

#[test]
fn a_node_frozen_for_8_s_is_not_recorded_twice() {
    let broker = Broker::start();
    let node = test_node(&broker, "pi-frozen", "320x240");
    let recordings = TempDir::new("frozen-node");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    wait_connections(&viewer, 1);
    start_recording(&broker, &recordings.0, 4096);
    freeze(node.pid(), SECS(8));
    // The viewer's stream watchdog gave up on the frozen node; the node
    // greets the new connection with its newest frame, recorded before.
    assert!(viewer.log().contains("no frame from"), "{}", viewer.log());
    wait_recording_again(&viewer, 2, &recordings.0);
    stop_recording(&broker);
    assert_no_frame_twice(&recordings.0, &viewer);
}

#[test]
fn a_camera_frozen_for_7_s_is_not_recorded_twice() {
    require("ffmpeg", "ffmpeg");
    let broker = Broker::start();
    // A size no other test uses, to find this camera's process.
    let marker = "testsrc=size=336x240:rate=10";
    let source = format!(
        "cmd:ffmpeg -hide_banner -loglevel error -re -f lavfi -i {marker} -f mjpeg -q:v 5 -huffman default -"
    );
    let url = broker.url();
    // The node's camera watchdog outlasts the freeze, so the camera comes
    // back as it was and the viewer's stream watchdog (5 s) reconnects
    // first: the node greets it with the frame recorded last.
    let _node = Node::start(
        &[
            node_args(&url, "pi-camfreeze", &source),
            vec!["--watchdog-seconds", "10"],
        ]
        .concat(),
    );
    let recordings = TempDir::new("frozen-camera");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    wait_connections(&viewer, 1);
    start_recording(&broker, &recordings.0, 4096);
    let camera = Command::new("pgrep")
        .args(["-f", &format!("^ffmpeg.*{marker}")])
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&camera.stdout)
        .split_whitespace()
        .next()
        .expect("the camera's ffmpeg process")
        .parse()
        .unwrap();
    let frozen_at = Instant::now();
    freeze(pid, SECS(7));
    wait_recording_again(&viewer, 2, &recordings.0);
    assert!(frozen_at.elapsed() >= SECS(7));
    stop_recording(&broker);
    let repeats = assert_no_frame_twice(&recordings.0, &viewer);
    assert!(
        repeats >= 1,
        "the reconnect should have met a repeated frame"
    );
}

#[test]
fn a_restarted_node_is_not_recorded_twice() {
    let broker = Broker::start();
    let node = test_node(&broker, "pi-restart", "320x240");
    let recordings = TempDir::new("restarted-node");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    wait_connections(&viewer, 1);
    start_recording(&broker, &recordings.0, 4096);
    drop(node); // stops the node
    let _again = test_node(&broker, "pi-restart", "320x240");
    wait_recording_again(&viewer, 2, &recordings.0);
    stop_recording(&broker);
    assert_no_frame_twice(&recordings.0, &viewer);
}
