//! A fleet without a broker: `viewer --embedded-broker ADDR` is the broker
//! for a real node, mosquitto_pub and mosquitto_sub; retained state, the
//! record command and a node's last will work as with mosquitto.

use std::process::Command;
use std::time::Duration;

use testkit::viewers::{embedded_broker_args, files, mqtt_sub, viewer_process, wait_topic_at};
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn the_viewers_own_broker_serves_nodes_commands_and_last_wills() {
    require("mosquitto_sub", "mosquitto-clients");
    let port = free_port();
    let dir = TempDir::new("embedded");
    let (broker, recordings) = (format!("127.0.0.1:{port}"), dir.path("recordings"));
    let args = [
        embedded_broker_args(&broker, "eb", &recordings),
        words("--segment-seconds 2"),
    ]
    .concat();
    let mut viewer = viewer_process(&args, &dir.path("viewer.log"));
    let viewer_log = || std::fs::read_to_string(dir.path("viewer.log")).unwrap_or_default();
    wait_topic_at(port, "camfleet/viewer/eb/status", "online", SECS(20));

    let url = format!("mqtt://127.0.0.1:{port}");
    let mut node = Node::start(&camera_args(&url, "eb-node", "test", "320x240"));
    wait_topic_at(port, "camfleet/node/eb-node/status", "online", SECS(20));
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
    wait_topic_at(port, "camfleet/node/eb-node/status", "offline", SECS(40));
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

#[test]
fn the_embedded_broker_with_users_refuses_strangers_and_warns_when_open_to_the_network() {
    require("mosquitto_sub", "mosquitto-clients");
    let dir = TempDir::new("embedded-users");
    // The users: the password file `viewer broker-config` writes.
    let made = Command::new(env!("CARGO_BIN_EXE_viewer"))
        .args(["broker-config", "--nodes", "eb-node", "--viewers", "eb"])
        .args(["--operators", "alice", "--host", "127.0.0.1", "--out"])
        .arg(dir.path("broker"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let stdout = String::from_utf8_lossy(&made.stdout).into_owned();
    let password = |user: &str| -> String {
        stdout
            .lines()
            .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                [_, u, p] if u == user => Some(p.to_owned()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no password for {user} in {stdout}"))
    };
    let port = free_port();
    let users = dir.path("broker/passwords");
    let (address, recordings) = (format!("127.0.0.1:{port}"), dir.path("recordings"));
    let args = [
        embedded_broker_args(&address, "eb", &recordings),
        vec!["--broker-users", users.to_str().unwrap()],
    ]
    .concat();
    let _viewer = Reaped(viewer_process(&args, &dir.path("viewer.log")));
    let viewer_log = || std::fs::read_to_string(dir.path("viewer.log")).unwrap_or_default();
    let sub = |credentials: &[&str]| {
        Command::new("mosquitto_sub")
            .args(["-p", &port.to_string(), "-t", "camfleet/viewer/eb/status"])
            .args(["-C", "1", "-W", "3"])
            .args(credentials)
            .output()
            .unwrap()
    };
    let alice = password("alice");
    wait_for("the viewer online, for alice", SECS(20), || {
        let out = sub(&["-u", "alice", "-P", &alice]);
        (String::from_utf8_lossy(&out.stdout).trim() == "online").then_some(())
    });
    // The node with its user gets in and is followed.
    let url = format!("mqtt://eb-node:{}@127.0.0.1:{port}", password("eb-node"));
    let _node = Node::start(&camera_args(&url, "eb-node", "test", "160x120"));
    wait_for("the viewer to connect to eb-node", SECS(20), || {
        viewer_log()
            .contains("camera{camera=eb-node/cam0}: connected")
            .then_some(())
    });
    // No user, a wrong password: refused, and the viewer says who.
    for credentials in [&[][..], &["-u", "alice", "-P", "guess"][..]] {
        let out = sub(credentials);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "{credentials:?} got in: {out:?}"
        );
    }
    wait_for("the refusal in the viewer's log", SECS(10), || {
        viewer_log()
            .contains("embedded broker: refused client")
            .then_some(())
    });
    assert!(!viewer_log().contains("guess"), "no password in the log");

    // Without users, on every address: a warning that says what is open.
    let open = TempDir::new("embedded-open");
    let open_port = free_port();
    let (open_address, open_recordings) = (format!("0.0.0.0:{open_port}"), open.path("recordings"));
    let args = embedded_broker_args(&open_address, "open", &open_recordings);
    let _open_viewer = Reaped(viewer_process(&args, &open.path("viewer.log")));
    wait_for("the warning about an open broker", SECS(20), || {
        std::fs::read_to_string(open.path("viewer.log"))
            .ok()?
            .contains("takes anyone who reaches it")
            .then_some(())
    });
}

/// A viewer process stopped and reaped when the test ends, pass or fail.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
