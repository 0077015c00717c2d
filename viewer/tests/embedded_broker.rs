//! A fleet without a broker: `viewer --embedded-broker ADDR` is the broker
//! for a real node, mosquitto_pub and mosquitto_sub; retained state, the
//! record command and a node's last will work as with mosquitto.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::common::*;
use support::files;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `mosquitto_sub` for `count` messages (retained ones arrive at once).
fn sub(port: u16, topic: &str, count: usize, secs: u32) -> Vec<String> {
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            topic,
            "-v",
        ])
        .args(["-C", &count.to_string(), "-W", &secs.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_viewers_own_broker_serves_nodes_commands_and_last_wills() {
    require("mosquitto_sub", "mosquitto-clients");
    let port = free_port();
    let dir = TempDir::new("embedded");
    let log = std::fs::File::create(dir.path("viewer.log")).unwrap();
    let mut viewer = Command::new(env!("CARGO_BIN_EXE_viewer"))
        .args(["--embedded-broker", &format!("127.0.0.1:{port}")])
        .args([
            "--viewer-id",
            "eb",
            "--headless",
            "--dashboard",
            "off",
            "--segment-seconds",
            "2",
        ])
        .arg("--recordings")
        .arg(dir.path("recordings"))
        .env("RUST_LOG", "info")
        .env_remove("DISPLAY")
        .env_remove("CAMFLEET_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let viewer_log = || std::fs::read_to_string(dir.path("viewer.log")).unwrap_or_default();
    wait_for("the viewer online on its own broker", SECS(20), || {
        (sub(port, "camfleet/viewer/eb/status", 1, 2) == ["camfleet/viewer/eb/status online"])
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
        (sub(port, "camfleet/node/eb-node/status", 1, 2) == ["camfleet/node/eb-node/status online"])
            .then_some(())
    });
    let info = sub(port, "camfleet/node/eb-node/info", 1, 5);
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
        (sub(port, "camfleet/node/eb-node/status", 1, 2)
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
