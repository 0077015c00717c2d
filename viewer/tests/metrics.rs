//! The viewer's `/metrics` on the dashboard's address, as Prometheus sees
//! it: `promtool check metrics` accepts it and the figures move while a
//! real node is recorded.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// One sample's value, by its name and labels as written.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn promtool_accepts(text: &str) {
    require("promtool", "prometheus");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_move_while_recording() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-metrics", "320x240");
    let recordings = TempDir::new("metrics");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    let url = format!("http://{}/metrics", viewer.dashboard());
    viewer.wait_log("camera{camera=pi-metrics/cam0}: connected", SECS(20));

    let idle = curl(&[&url]).text();
    promtool_accepts(&idle);
    assert_eq!(value(&idle, "camfleet_viewer_recording_wanted"), 0.0);
    assert_eq!(value(&idle, "camfleet_viewer_mqtt_connected"), 1.0);
    assert!(value(&idle, "camfleet_viewer_recordings_free_bytes") > 0.0);

    broker.publish("command/rec", "start");
    wait_for("two closed segments", SECS(30), || {
        (files(&recordings.0, ".mp4").len() >= 2).then_some(())
    });
    let camera = r#"{node="pi-metrics",camera="cam0"}"#;
    let recording = wait_for("the segments counted", SECS(10), || {
        let text = curl(&[&url]).text();
        (value(
            &text,
            &format!("camfleet_viewer_segments_written_total{camera}"),
        ) >= 2.0)
            .then_some(text)
    });
    promtool_accepts(&recording);
    assert_eq!(value(&recording, "camfleet_viewer_recording_wanted"), 1.0);
    assert_eq!(value(&recording, "camfleet_viewer_cameras_recording"), 1.0);
    let frames = |text: &str| {
        value(
            text,
            &format!("camfleet_viewer_frames_received_total{camera}"),
        )
    };
    assert!(frames(&recording) > frames(&idle));
    assert!(
        value(
            &recording,
            &format!("camfleet_viewer_bytes_written_total{camera}")
        ) > 10_000.0
    );
    let writes = value(
        &recording,
        r#"camfleet_viewer_write_seconds_count{node="pi-metrics",camera="cam0"}"#,
    );
    assert!(writes >= 20.0, "{writes} frames handed to the writer");
    wait_for("frames counted on", SECS(10), || {
        (frames(&curl(&[&url]).text()) > frames(&recording)).then_some(())
    });
    // The recordings' size comes from retention's passes (every 10 s, and
    // when a segment closes), budget or not.
    wait_for("the recordings' size", SECS(20), || {
        let text = curl(&[&url]).text();
        (value(&text, "camfleet_viewer_recordings_bytes") > 10_000.0).then_some(())
    });
    // The node runs on this machine's clock: an offset of about zero.
    let offset = value(
        &recording,
        &format!("camfleet_viewer_clock_offset_seconds{camera}"),
    );
    assert!(
        offset.abs() < 0.05,
        "clock offset {offset} s on one machine"
    );
}
