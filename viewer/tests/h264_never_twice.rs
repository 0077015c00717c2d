//! An H.264 camera's recording across faults: a node frozen for 8 s, a node
//! killed with SIGKILL and started again, the relay a viewer receives the
//! camera through killed (the viewer switches to the node), a viewer
//! killed with SIGKILL that resumes its session. After each: no frame
//! recorded twice, every segment starts at a keyframe and decodes without
//! a word from ffmpeg at level error; the frames missing while the viewer
//! was connected are exactly those it reports missed plus those it did not
//! record for want of a keyframe; a killed viewer lost at most the last
//! second of what it had received. Real mosquitto, nodes, viewers,
//! ffmpeg; the test pattern burns its frame number into every picture.

mod h264_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use h264_common::*;
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
/// What a viewer killed mid-session may lose of what it had received: a
/// fragment's second, a frame held for its duration, a frame in flight.
const CRASH_LOSS_US: i64 = 1_500_000;

fn h264_node(broker: &Broker, id: &str) -> Node {
    test_node_with(broker, id, "320x240", &["--codec", "h264"])
}

/// Every segment (open or closed) under `recordings`, in time order.
fn all_segments(recordings: &Path) -> Vec<PathBuf> {
    let mut found = files(recordings, ".mp4");
    found.extend(files(recordings, ".mp4.part"));
    found.sort_by_key(|p| p.file_name().unwrap().to_owned());
    found
}

/// Checks each segment starts at a keyframe and decodes cleanly; the
/// burned-in numbers of all of them, in order.
fn checked_numbers(recordings: &Path) -> Vec<u64> {
    let segments = all_segments(recordings);
    assert!(!segments.is_empty(), "nothing was recorded");
    let mut numbers = Vec::new();
    for segment in &segments {
        let name = segment.display();
        let packets = packets(segment);
        assert!(
            packets.first().is_some_and(|p| p.key),
            "{name} starts at a keyframe"
        );
        let (decoded, errors) = decoded_numbers(segment);
        assert!(errors.trim().is_empty(), "ffmpeg on {name}: {errors}");
        assert_eq!(decoded.len(), packets.len(), "{name}: every packet decodes");
        numbers.extend(decoded);
    }
    numbers
}

/// The frames missing between consecutive numbers of each run (a run ends
/// where the numbers start again: a restarted node); panics at a number
/// recorded twice.
fn gaps(numbers: &[u64], runs: usize) -> u64 {
    let mut missing = 0;
    let mut restarts = 0;
    for pair in numbers.windows(2) {
        if pair[1] < pair[0] && restarts + 1 < runs {
            restarts += 1;
            continue;
        }
        assert!(
            pair[1] > pair[0],
            "frame {} recorded twice or out of order: {numbers:?}",
            pair[1]
        );
        missing += pair[1] - pair[0] - 1;
    }
    assert_eq!(restarts + 1, runs, "{numbers:?}");
    missing
}

fn stop_recording(broker: &Broker, recordings: &Path) {
    broker.publish("command/rec", "stop");
    wait_state(broker, "the viewer idle", |s| s.state == "idle");
    wait_for("every segment closed", SECS(20), || {
        files(recordings, ".part").is_empty().then_some(())
    });
}

fn wait_connections(viewer: &Viewer, n: usize) {
    wait_for(&format!("{n} connections with frames"), SECS(30), || {
        (viewer.log().matches("first frame").count() >= n).then_some(())
    });
}

/// Waits for `more` bytes of recording than now.
fn wait_recorded_more(recordings: &Path, more: u64) {
    let size = |r: &Path| -> u64 {
        all_segments(r)
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let before = size(recordings);
    wait_for("more frames on disk", SECS(30), || {
        (size(recordings) > before + more).then_some(())
    });
}

/// The viewer's counts of frames missed and not recorded before a keyframe.
fn losses(dashboard: &str, node: &str) -> (u64, u64) {
    (
        viewer_counter(dashboard, "frames_missed_total", node, "cam0"),
        viewer_counter(dashboard, "frames_before_keyframe_total", node, "cam0"),
    )
}

#[test]
fn a_node_frozen_for_8_s_loses_only_what_the_viewer_reports() {
    let broker = Broker::start();
    let node = h264_node(&broker, "pi-hfrozen");
    let recordings = TempDir::new("h264-frozen");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    let dashboard = viewer.dashboard();
    wait_connections(&viewer, 1);
    start_recording(&broker, &recordings.0, 16384);
    let (missed0, before0) = losses(&dashboard, "pi-hfrozen");
    freeze(node.pid(), SECS(8));
    assert!(viewer.log().contains("no frame from"), "{}", viewer.log());
    wait_connections(&viewer, 2);
    wait_recorded_more(&recordings.0, 200_000);
    stop_recording(&broker, &recordings.0);
    let (missed1, before1) = losses(&dashboard, "pi-hfrozen");
    let numbers = checked_numbers(&recordings.0);
    let missing = gaps(&numbers, 1);
    let (missed, before_key) = (missed1 - missed0, before1 - before0);
    eprintln!(
        "{} frames recorded once each; {missing} missing = {missed} missed + {before_key} before a keyframe",
        numbers.len()
    );
    assert_eq!(missing, missed + before_key, "{numbers:?}");
}

#[test]
fn a_relay_switch_loses_only_what_the_viewer_reports_and_records_nothing_twice() {
    let broker = Broker::start();
    let _node = test_node_with(
        &broker,
        "pi-hrelay",
        "320x240",
        &["--codec", "h264", "--relay-max-member", "1"],
    );
    let relay_dir = TempDir::new("h264-relay-r1");
    let recordings = TempDir::new("h264-relay-ws");
    let mut r1 = Viewer::start_as(
        &broker,
        &relay_dir.0,
        "r1",
        &["--relay", "127.0.0.1", "--no-record"],
    );
    wait_for("r1 in the relay plan", SECS(30), || {
        broker
            .retained("camfleet/node/pi-hrelay/relay/cam0/plan")
            .filter(|p| p.contains("\"r1\""))
    });
    let viewer = Viewer::start(&broker, &recordings.0, &["--relay", "127.0.0.1"]);
    viewer.wait_log("(relay r1)", SECS(30));
    let dashboard = viewer.dashboard();
    start_recording(&broker, &recordings.0, 16384);
    let (missed0, before0) = losses(&dashboard, "pi-hrelay");
    let _ = r1.child.kill();
    let _ = r1.child.wait();
    viewer.wait_log("switching to the backup at once", SECS(10));
    wait_recorded_more(&recordings.0, 200_000);
    stop_recording(&broker, &recordings.0);
    let (missed1, before1) = losses(&dashboard, "pi-hrelay");
    let numbers = checked_numbers(&recordings.0);
    let missing = gaps(&numbers, 1);
    let (missed, before_key) = (missed1 - missed0, before1 - before0);
    eprintln!(
        "{} frames across the switch, each once; {missing} missing = {missed} missed + {before_key} before a keyframe",
        numbers.len()
    );
    assert_eq!(missing, missed + before_key, "{numbers:?}");
}

#[test]
fn a_node_killed_and_started_again_is_recorded_once_and_decodes() {
    let broker = Broker::start();
    let node = h264_node(&broker, "pi-hkilled");
    let recordings = TempDir::new("h264-killed");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    let dashboard = viewer.dashboard();
    wait_connections(&viewer, 1);
    start_recording(&broker, &recordings.0, 16384);
    let (missed0, before0) = losses(&dashboard, "pi-hkilled");
    node.signal("KILL");
    drop(node);
    let _again = h264_node(&broker, "pi-hkilled");
    wait_connections(&viewer, 2);
    wait_recorded_more(&recordings.0, 200_000);
    stop_recording(&broker, &recordings.0);
    let (missed1, before1) = losses(&dashboard, "pi-hkilled");
    let numbers = checked_numbers(&recordings.0);
    // Within each run of the node (its numbers start again at 0), what is
    // missing the viewer reports; what the killed node made after its last
    // frame reached the viewer, nobody received.
    let missing = gaps(&numbers, 2);
    let (missed, before_key) = (missed1 - missed0, before1 - before0);
    eprintln!(
        "{} frames in two runs of the node, each once; {missing} missing within them = {missed} missed + {before_key} before a keyframe",
        numbers.len()
    );
    assert_eq!(missing, missed + before_key, "{numbers:?}");
}

#[test]
fn a_viewer_killed_mid_session_resumes_and_nothing_is_recorded_twice() {
    let broker = Broker::start();
    let _node = h264_node(&broker, "pi-hresume");
    let recordings = TempDir::new("h264-resume");
    let mut viewer = Viewer::start(&broker, &recordings.0, &[]);
    wait_connections(&viewer, 1);
    start_recording(&broker, &recordings.0, 16384);
    let killed_us = now_us() as i64;
    viewer.child.kill().unwrap(); // SIGKILL
    let _ = viewer.child.wait();
    wait_for("the viewer's last will", SECS(20), || {
        (broker.retained("camfleet/viewer/ws/status").as_deref() == Some("offline")).then_some(())
    });
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    viewer.wait_log("resuming session", SECS(20));
    // What the crash left open is closed when the camera records again.
    viewer.wait_log("closed after its last whole fragment", SECS(20));
    wait_recorded_more(&recordings.0, 200_000);
    stop_recording(&broker, &recordings.0);
    let numbers = checked_numbers(&recordings.0);
    let missing = gaps(&numbers, 1);
    // While it was down nobody received the frames; a keyframe interval
    // (10 frames) and the restart's seconds bound what is lost.
    assert!(missing < 100, "{missing} frames lost over a viewer restart");
    // What it had received when it was killed was on disk but for the
    // last second at most (a fragment is written at least every second).
    let last_before = all_segments(&recordings.0)
        .iter()
        .flat_map(|s| packets(s))
        .map(|p| p.at_us)
        .filter(|&t| t < killed_us)
        .max()
        .expect("frames recorded before the kill");
    let lost_us = killed_us - last_before;
    assert!(
        lost_us <= CRASH_LOSS_US,
        "the crash lost the last {:.2} s it had received",
        lost_us as f64 / 1e6
    );
    eprintln!(
        "{} frames across the crash, each once; {missing} lost while the viewer was down",
        numbers.len()
    );
}
