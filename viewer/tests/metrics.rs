//! The viewer's `/metrics` on the dashboard's address, as Prometheus sees
//! it: `promtool check metrics` accepts it and the figures move while a
//! real node is recorded.

use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

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
    assert_eq!(metric_value(&idle, "camfleet_viewer_recording_wanted"), 0.0);
    assert_eq!(metric_value(&idle, "camfleet_viewer_mqtt_connected"), 1.0);
    assert!(metric_value(&idle, "camfleet_viewer_recordings_free_bytes") > 0.0);

    broker.publish("command/rec", "start");
    wait_for("two closed segments", SECS(30), || {
        (files(&recordings.0, ".mp4").len() >= 2).then_some(())
    });
    let camera = r#"{node="pi-metrics",camera="cam0"}"#;
    let recording = wait_for("the segments counted", SECS(10), || {
        let text = curl(&[&url]).text();
        (metric_value(
            &text,
            &format!("camfleet_viewer_segments_written_total{camera}"),
        ) >= 2.0)
            .then_some(text)
    });
    promtool_accepts(&recording);
    assert_eq!(
        metric_value(&recording, "camfleet_viewer_recording_wanted"),
        1.0
    );
    assert_eq!(
        metric_value(&recording, "camfleet_viewer_cameras_recording"),
        1.0
    );
    let frames = |text: &str| {
        metric_value(
            text,
            &format!("camfleet_viewer_frames_received_total{camera}"),
        )
    };
    assert!(frames(&recording) > frames(&idle));
    assert!(
        metric_value(
            &recording,
            &format!("camfleet_viewer_bytes_written_total{camera}")
        ) > 10_000.0
    );
    let writes = metric_value(
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
        (metric_value(&text, "camfleet_viewer_recordings_bytes") > 10_000.0).then_some(())
    });
    // The node runs on this machine's clock: an offset of about zero.
    let offset = metric_value(
        &recording,
        &format!("camfleet_viewer_clock_offset_seconds{camera}"),
    );
    assert!(
        offset.abs() < 0.05,
        "clock offset {offset} s on one machine"
    );
}
