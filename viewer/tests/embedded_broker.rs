//! A fleet without a broker: `viewer --embedded-broker ADDR` is the broker
//! for a real node, mosquitto_pub and mosquitto_sub; retained state, the
//! record command and a node's last will work as with mosquitto.

mod support;

use std::process::Command;
use std::time::Duration;

use support::common::*;
use support::{files, mqtt_sub, viewer_process};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn the_viewers_own_broker_serves_nodes_commands_and_last_wills() {
    require("mosquitto_sub", "mosquitto-clients");
    let port = free_port();
    let dir = TempDir::new("embedded");
    let (broker, recordings) = (format!("127.0.0.1:{port}"), dir.path("recordings"));
    let args = [
        "--embedded-broker",
        &broker,
        "--viewer-id",
        "eb",
        "--headless",
        "--dashboard",
        "off",
        "--segment-seconds",
        "2",
        "--recordings",
        recordings.to_str().unwrap(),
    ];
    let mut viewer = viewer_process(&args, &dir.path("viewer.log"));
    let viewer_log = || std::fs::read_to_string(dir.path("viewer.log")).unwrap_or_default();
    wait_for("the viewer online on its own broker", SECS(20), || {
        (mqtt_sub(port, "camfleet/viewer/eb/status", 1, 2) == ["camfleet/viewer/eb/status online"])
            .then_some(())
    });

    let url = format!("mqtt://127.0.0.1:{port}");
    let mut node = Node::start(
        &[
            node_args(&url, "eb-node", "test"),
            words("--width 320 --height 240 --fps 10"),
        ]
        .concat(),
    );
    wait_for("the node's retained online", SECS(20), || {
        (mqtt_sub(port, "camfleet/node/eb-node/status", 1, 2)
            == ["camfleet/node/eb-node/status online"])
        .then_some(())
    });
    let info = mqtt_sub(port, "camfleet/node/eb-node/info", 1, 5);
    assert!(
        info.first()
            .is_some_and(|l| l.contains("\"node_id\":\"eb-node\"")),
        "{info:?}"
    );

    run_ok(Command::new("mosquitto_pub").args([
        "-p",
        &port.to_string(),
        "-t",
        "command/rec",
        "-m",
        "start",
    ]));
    let recordings = dir.path("recordings");
    wait_for("a closed segment of eb-node", SECS(20), || {
        files(&recordings, ".mp4")
            .iter()
            .any(|f| f.to_string_lossy().contains("/eb-node/cam0/"))
            .then_some(())
    });

    // A node that dies without a word: the broker publishes its will.
    node.signal("KILL");
    node.wait_exit(SECS(10));
    wait_for("the node's last will (offline)", SECS(40), || {
        (mqtt_sub(port, "camfleet/node/eb-node/status", 1, 2)
            == ["camfleet/node/eb-node/status offline"])
        .then_some(())
    });
    wait_for("the viewer to drop the node", SECS(10), || {
        viewer_log()
            .contains("node offline; dropping its cameras node=eb-node")
            .then_some(())
    });

    let ok = Command::new("kill")
        .args(["-TERM", &viewer.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = wait_for("the viewer to exit", SECS(20), || {
        viewer.try_wait().unwrap()
    });
    assert!(status.success(), "{status}\n{}", viewer_log());
}
