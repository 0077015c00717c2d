//! Nodes and the viewer coming and going: a node started later is recorded
//! at once, a killed node is dropped on its last will and picked up again,
//! and a viewer killed with SIGKILL leaves a playable `.part`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn under(dir: &std::path::Path, node: &str, suffix: &str) -> Vec<std::path::PathBuf> {
    files(dir, suffix)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&format!("/{node}/")))
        .collect()
}

#[test]
fn a_late_node_is_recorded_at_once_and_a_killed_node_comes_back() {
    let broker = Broker::start();
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    wait_state(&broker, "the viewer to be up", |s| s.state == "idle");
    broker.publish("command/rec", "start");
    wait_state(&broker, "recording", |s| s.state == "recording");

    let started = Instant::now();
    let mut node = test_node(&broker, "pi-late", "160x120");
    wait_for("the late node's first segment", SECS(10), || {
        (!under(&recordings.0, "pi-late", ".part").is_empty()).then_some(())
    });
    let lag = started.elapsed();
    assert!(
        lag < SECS(5),
        "recording began {lag:?} after the node started"
    );

    node.signal("KILL");
    node.wait_exit(SECS(5));
    // The broker publishes the last will after 1.5x the 10 s keep-alive.
    viewer.wait_log("node offline; dropping its cameras", SECS(30));
    // The lost camera's segment is closed (renamed) as its task stops.
    let closed_before = wait_for("the lost camera's segment to close", SECS(10), || {
        let closed = under(&recordings.0, "pi-late", ".mp4").len();
        (closed >= 1 && under(&recordings.0, "pi-late", ".part").is_empty()).then_some(closed)
    });
    let _again = test_node(&broker, "pi-late", "160x120");
    wait_for("segments from the restarted node", SECS(15), || {
        (under(&recordings.0, "pi-late", ".mp4").len()
            + under(&recordings.0, "pi-late", ".part").len()
            > closed_before + 1)
            .then_some(())
    });
    let sessions: Vec<_> = std::fs::read_dir(&recordings.0)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name() != "sensors")
        .collect();
    assert_eq!(sessions.len(), 1, "the node rejoins the same session");
}

#[test]
fn a_viewer_killed_mid_segment_leaves_a_part_that_plays_to_within_a_second() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-k", "160x120");
    let recordings = TempDir::new("recordings");
    let mut viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "60"]);
    viewer.wait_log("camera{camera=pi-k/cam0}: connected", SECS(20));
    broker.publish("command/rec", "start");
    wait_state(&broker, "recording", |s| {
        s.state == "recording" && s.cameras == 1
    });
    let part_size = || {
        let part = under(&recordings.0, "pi-k", ".part").pop()?;
        std::fs::metadata(&part).ok().map(|m| m.len())
    };
    let first = wait_for("a first fragment", SECS(10), || {
        part_size().filter(|&n| n > 1_000)
    });
    // Kill once another fragment has landed, somewhere inside the next second.
    wait_for("a second fragment", SECS(10), || {
        part_size().filter(|&n| n > first)
    });
    let killed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    viewer.child.kill().unwrap();
    viewer.child.wait().unwrap();
    let part = under(&recordings.0, "pi-k", ".part")
        .pop()
        .expect("the .part is left behind");
    require("ffmpeg", "ffmpeg");
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&part)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&part)
        .output()
        .unwrap();
    let duration: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let name = part
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".mp4.part")
        .to_owned();
    let start = chrono::NaiveDateTime::parse_from_str(&name, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
        .timestamp() as f64;
    let lost = killed_at - (start + duration);
    assert!(lost < 1.3, "the .part ends {lost:.2} s before the kill");
}

#[test]
fn sigterm_closes_segments_flushes_sensors_and_leaves_idle_and_offline() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-t", "160x120");
    let recordings = TempDir::new("recordings");
    let mut viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "60"]);
    viewer.wait_log("camera{camera=pi-t/cam0}: connected", SECS(20));
    broker.publish("command/rec", "start");
    let state = wait_state(&broker, "recording", |s| {
        s.state == "recording" && s.cameras == 1
    });
    broker.publish("sensor/pi-t/door", "open");
    let csv_path = recordings
        .0
        .join(state.session.clone().unwrap())
        .join("sensors.csv");
    wait_for("the sensor row", SECS(10), || {
        std::fs::read_to_string(&csv_path)
            .ok()
            .filter(|t| t.contains("door"))
    });
    wait_for("an open segment", SECS(10), || {
        under(&recordings.0, "pi-t", ".part").pop()
    });
    viewer.stop();
    assert!(
        viewer
            .child
            .try_wait()
            .unwrap()
            .is_some_and(|s| s.success()),
        "clean exit"
    );
    assert!(
        files(&recordings.0, ".part").is_empty(),
        "every segment renamed on shutdown"
    );
    // One segment, or two when the run crossed a minute boundary.
    assert!(!under(&recordings.0, "pi-t", ".mp4").is_empty());
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.contains("sensor/pi-t/door,open"), "{csv}");
    assert_eq!(recording_state(&broker).unwrap().state, "idle");
    assert_eq!(
        broker.retained("camfleet/viewer/ws/status").as_deref(),
        Some("offline")
    );
    let log = viewer.log();
    assert_shutdown_in_order(&log);
}

#[test]
fn a_node_restarted_on_a_new_port_is_reached_there_first() {
    let broker = Broker::start();
    let node = test_node(&broker, "pi-moves", "160x120");
    let old_port = node.tcp_port("cam0");
    let recordings = TempDir::new("moves");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    viewer.wait_log(&format!("connected to 127.0.0.1:{old_port}"), SECS(20));
    drop(node); // a clean stop: `offline`
    viewer.wait_log("node offline; dropping its cameras", SECS(20));
    let mark = viewer.log().len();
    let node = test_node(&broker, "pi-moves", "160x120");
    let new_port = node.tcp_port("cam0");
    assert_ne!(new_port, old_port, "port 0 gave the same port twice");
    wait_for("a connection to the new port", SECS(20), || {
        viewer.log()[mark..]
            .contains(&format!("connected to 127.0.0.1:{new_port}"))
            .then_some(())
    });
    let after = viewer.log()[mark..].to_owned();
    assert!(
        !after.contains(&format!("127.0.0.1:{old_port}")),
        "after the restart the viewer still tried the old port:\n{after}"
    );
}
