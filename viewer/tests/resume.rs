//! A viewer that crashes picks up where it was: killed with SIGKILL (as a
//! crash, or systemd's stop timeout) and started again, it resumes its
//! session, and `command/rec` sent with QoS 1 while it was down is applied
//! when it is back (persistent MQTT session). Real mosquitto, and the
//! viewer's own embedded broker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn kill_hard(viewer: &mut Viewer, broker: &Broker) {
    viewer.child.kill().unwrap(); // SIGKILL
    let _ = viewer.child.wait();
    // The broker has seen it go (its last will) before it comes back.
    wait_for("the viewer's last will", SECS(20), || {
        (broker.retained("camfleet/viewer/ws/status").as_deref() == Some("offline")).then_some(())
    });
}

/// Open segments of `session` (made by a recorder since `after`).
fn parts_since(recordings: &Path, session: &str, after: &[PathBuf]) -> Vec<PathBuf> {
    files(&recordings.join(session), ".part")
        .into_iter()
        .filter(|p| !after.contains(p))
        .collect()
}

fn plays(path: &Path) -> bool {
    require("ffprobe", "ffmpeg");
    Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
        ])
        .arg(path)
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false)
}

#[test]
fn a_killed_viewer_resumes_its_session_within_3_s() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-resume", "320x240");
    let recordings = TempDir::new("resume");
    let mut viewer = Viewer::start(&broker, &recordings.0, &[]);
    broker.publish("command/rec", "start");
    let before = wait_state(&broker, "recording", |s| {
        s.state == "recording" && s.cameras == 1
    });
    let session = before.session.clone().unwrap();
    let first = wait_for("frames on disk", SECS(20), || {
        let parts = files(&recordings.0, ".part");
        parts
            .iter()
            .any(|p| p.metadata().map(|m| m.len() > 4096).unwrap_or(false))
            .then_some(parts)
    });
    kill_hard(&mut viewer, &broker);

    let restarted = Instant::now();
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    let new_parts = wait_for("a new segment in the same session", SECS(20), || {
        let new = parts_since(&recordings.0, &session, &first);
        (!new.is_empty()).then_some(new)
    });
    let took = restarted.elapsed();
    assert!(
        took <= SECS(3),
        "recording resumed {:.1} s after the restart",
        took.as_secs_f64()
    );
    let state = wait_state(&broker, "recording again", |s| s.state == "recording");
    assert_eq!(state.session.as_deref(), Some(session.as_str()));
    assert!(
        state.note.as_deref().is_some_and(|n| n.contains("resumed")),
        "{state:?}"
    );
    assert!(
        viewer.log().contains("resuming session"),
        "{}",
        viewer.log()
    );
    // What the crash left open is closed (cut after its last whole
    // fragment, renamed to .mp4) when the camera records again.
    for part in &first {
        // (Unless the new recording began within the same second: then
        // it appends to it.)
        let closed = if part.exists() {
            part.clone()
        } else {
            part.with_extension("")
        };
        assert!(
            plays(&closed),
            "{} left by the crash does not play",
            closed.display()
        );
    }
    eprintln!(
        "resumed in {:.2} s: {}",
        took.as_secs_f64(),
        new_parts[0].display()
    );
}

#[test]
fn a_stop_sent_while_the_viewer_was_down_is_applied_when_it_is_back() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-stopdown", "320x240");
    let recordings = TempDir::new("stop-while-down");
    let mut viewer = Viewer::start(&broker, &recordings.0, &[]);
    broker.publish("command/rec", "start");
    let session = wait_state(&broker, "recording", |s| s.state == "recording")
        .session
        .unwrap();
    kill_hard(&mut viewer, &broker);
    broker.publish_qos1("command/rec", "stop");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    let state = wait_state(&broker, "idle after the queued stop", |s| {
        s.state == "idle" && s.note.is_some()
    });
    assert_eq!(
        state.note.as_deref(),
        Some(format!("stopped session {session} (resumed after a restart)").as_str())
    );
    wait_for("the resumed recorder closed", SECS(20), || {
        viewer.log().contains("stopping session").then_some(())
    });
}

#[test]
fn a_start_sent_while_the_viewer_was_down_is_applied_when_it_is_back() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-startdown", "320x240");
    let recordings = TempDir::new("start-while-down");
    let mut viewer = Viewer::start(&broker, &recordings.0, &[]);
    wait_state(&broker, "idle", |s| s.state == "idle");
    kill_hard(&mut viewer, &broker);
    broker.publish_qos1("command/rec", "start");
    let _viewer = Viewer::start(&broker, &recordings.0, &[]);
    wait_state(&broker, "recording after the queued start", |s| {
        s.state == "recording" && s.cameras == 1
    });
}

#[test]
fn with_its_own_broker_a_killed_viewer_resumes_too() {
    require("mosquitto_sub", "mosquitto-clients");
    let port = free_port();
    let dir = TempDir::new("resume-embedded");
    let (address, recordings) = (format!("127.0.0.1:{port}"), dir.path("recordings"));
    let args = embedded_broker_args(&address, "eb", &recordings);
    let online = || wait_topic_at(port, "camfleet/viewer/eb/status", "online", SECS(20));
    let mut viewer = viewer_process(&args, &dir.path("viewer.log"));
    online();
    let url = format!("mqtt://127.0.0.1:{port}");
    let _node = Node::start(&camera_args(&url, "eb-resume", "test", "320x240"));
    let publish = |payload: &str| {
        let ok = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
            .args(["-t", "command/rec", "-m", payload])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mosquitto_pub {payload}");
    };
    wait_topic_at(port, "camfleet/node/eb-resume/status", "online", SECS(20));
    publish("start");
    wait_for("frames on disk", SECS(20), || {
        (!files(&recordings, ".part").is_empty()).then_some(())
    });
    viewer.kill().unwrap();
    let _ = viewer.wait();
    // The resumed session may append to the segment the killed viewer left
    // (when it resumes within the second that segment began): count bytes.
    let on_disk = || -> u64 {
        [".part", ".mp4"]
            .iter()
            .flat_map(|s| files(&recordings, s))
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let at_kill = on_disk();

    let mut again = viewer_process(&args, &dir.path("viewer-again.log"));
    online();
    let state = mqtt_sub(port, "camfleet/viewer/eb/recording", 1, 5);
    assert!(
        state
            .first()
            .is_some_and(|l| l.contains("\"state\":\"recording\"") && l.contains("resumed")),
        "{state:?}"
    );
    // The node finds the broker again (its backoff) and frames follow.
    let deadline = Instant::now() + SECS(30);
    let new_frames = || on_disk() > at_kill + 4096;
    while !new_frames() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        new_frames(),
        "no frames of the resumed session within 30 s; viewer log:\n{}",
        std::fs::read_to_string(dir.path("viewer-again.log")).unwrap_or_default()
    );
    publish("stop");
    let _ = Command::new("kill")
        .args(["-INT", &again.id().to_string()])
        .status();
    let _ = again.wait();
}
