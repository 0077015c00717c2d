//! A locked-down fleet: `viewer broker-config` writes mosquitto's files
//! (TLS listener, password file, ACL), real mosquitto runs them, and the
//! real node and viewer work through it with their own users, while a
//! node's user cannot speak for another node, a non-operator cannot start
//! or stop recordings, and clients without credentials or with the wrong
//! CA are refused with a clear message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `viewer broker-config` into `out`; the passwords it printed, by user.
fn broker_config(out: &Path, port: u16, extra: &[&str]) -> HashMap<String, String> {
    let run = Command::new(env!("CARGO_BIN_EXE_viewer"))
        .args([
            "broker-config",
            "--host",
            "127.0.0.1",
            "--host",
            "localhost",
        ])
        .args(["--port", &port.to_string(), "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "broker-config: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [role, user, password]
                    if ["node", "viewer", "operator", "sensor"].contains(&role) =>
                {
                    Some((user.to_owned(), password.to_owned()))
                }
                _ => None,
            },
        )
        .collect()
}

struct Fleet {
    dir: TempDir,
    broker: Broker,
    passwords: HashMap<String, String>,
}

impl Fleet {
    fn start() -> Self {
        require("mosquitto_pub", "mosquitto-clients");
        let dir = TempDir::new("secure-broker");
        let port = free_port();
        let passwords = broker_config(
            &dir.0,
            port,
            &[
                "--nodes",
                "pi-sec,pi-evil",
                "--viewers",
                "ws",
                "--operators",
                "alice",
                "--sensors",
                "garden",
            ],
        );
        let broker = Broker::start_config(&dir.path("mosquitto.conf"), port, None);
        Fleet {
            dir,
            broker,
            passwords,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path("ca.crt")
    }

    fn url(&self, user: &str) -> String {
        format!(
            "mqtts://{user}:{}@127.0.0.1:{}",
            self.passwords[user], self.broker.port
        )
    }

    /// mosquitto_pub/sub's connection flags as `user` over TLS.
    fn client_args(&self, user: &str) -> Vec<String> {
        [
            "-h",
            "127.0.0.1",
            "-p",
            &self.broker.port.to_string(),
            "--cafile",
            &self.ca().display().to_string(),
            "-u",
            user,
            "-P",
            &self.passwords[user],
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn publish(&self, user: &str, topic: &str, payload: &str, retain: bool) {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(self.client_args(user))
            .args(["-q", "1", "-t", topic, "-m", payload]);
        if retain {
            cmd.arg("-r");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "mosquitto_pub as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What `user` receives on `topic` (retained and new) within `secs`.
    fn sub(&self, user: &str, topic: &str, count: usize, secs: u32) -> Vec<String> {
        mosquitto_sub(self.client_args(user).as_slice(), topic, count, secs)
    }

    fn node(&self, id: &str, url: &str, ca: &Path) -> Node {
        let ca = ca.display().to_string();
        Node::start(
            &[
                camera_args(url, id, "test", "160x120"),
                vec!["--ca-file", &ca],
            ]
            .concat(),
        )
    }
}

#[test]
fn a_locked_down_fleet_records_for_an_operator_and_refuses_forgeries() {
    let fleet = Fleet::start();
    let written: Vec<String> = std::fs::read_dir(&fleet.dir.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for file in [
        "mosquitto.conf",
        "passwords",
        "acl",
        "ca.crt",
        "server.crt",
        "server.key",
    ] {
        assert!(written.contains(&file.to_owned()), "{file} in {written:?}");
    }
    // Hashes only: no password is in the broker's files.
    let on_disk: String = ["passwords", "acl", "mosquitto.conf"]
        .iter()
        .map(|f| std::fs::read_to_string(fleet.dir.path(f)).unwrap())
        .collect();
    for password in fleet.passwords.values() {
        assert!(!on_disk.contains(password.as_str()));
    }

    let node = fleet.node("pi-sec", &fleet.url("pi-sec"), &fleet.ca());
    let recordings = TempDir::new("recordings");
    let ca = fleet.ca().display().to_string();
    let viewer = Viewer::spawn_at(
        &fleet.url("ws"),
        &recordings.0,
        "ws",
        &["--ca-file", &ca],
        None,
    );
    viewer.wait_log("camera{camera=pi-sec/cam0}: connected", SECS(30));
    node.wait_log("connected to MQTT broker", SECS(5));
    // Its own test message came back: the ACL lets it publish.
    node.wait_log("the broker passes on this node's messages", SECS(10));
    assert!(
        !node.log().contains(&fleet.passwords["pi-sec"]),
        "the node's log shows no password"
    );

    // An operator records.
    fleet.publish("alice", "command/rec", "start", false);
    wait_for("a segment being written", SECS(20), || {
        (!files(&recordings.0, ".mp4.part").is_empty()).then_some(())
    });

    // Another node's user speaks for it, and for a node of its own
    // making: the broker drops both, nobody sees them.
    let fake = r#"{"v":1,"node_id":"pi-fake","hostname":"x","version":"0","addresses":["127.0.0.1"],"started_at":"2026-11-27T00:00:00Z","cameras":[{"id":"cam0","width":160,"height":120,"fps":10,"codec":"mjpeg","tcp":"127.0.0.1:9","rtsp":"rtsp://127.0.0.1:9/cam0","http":"http://127.0.0.1:9/"}]}"#;
    fleet.publish("pi-evil", "camfleet/node/pi-fake/info", fake, true);
    let forged_sec = fake
        .replace("pi-fake", "pi-sec")
        .replace("\"hostname\":\"x\"", "\"hostname\":\"forged\"");
    fleet.publish("pi-evil", "camfleet/node/pi-sec/info", &forged_sec, true);
    fleet.publish("pi-evil", "camfleet/node/pi-sec/status", "offline", true);
    // Its own topic goes through: the refusals are the ACL's, not a
    // broken client.
    fleet.publish("pi-evil", "camfleet/node/pi-evil/probe", "mine", true);
    let seen = fleet.sub("ws", "camfleet/node/pi-evil/probe", 1, 5);
    assert_eq!(seen, vec!["camfleet/node/pi-evil/probe mine"]);
    let forged = fleet.sub("ws", "camfleet/node/pi-fake/#", 1, 2);
    assert!(forged.is_empty(), "the forged info got through: {forged:?}");
    let info = fleet.sub("ws", "camfleet/node/pi-sec/info", 1, 5);
    assert!(
        info.len() == 1
            && info[0].contains("\"node_id\":\"pi-sec\"")
            && !info[0].contains("forged"),
        "pi-sec's own info, not the forgery: {info:?}"
    );
    let status = fleet.sub("ws", "camfleet/node/pi-sec/status", 1, 5);
    assert_eq!(status, vec!["camfleet/node/pi-sec/status online"]);

    // A non-operator's stop never reaches the viewer; the operator's next
    // command does (and the recording went on in between).
    fleet.publish("pi-evil", "command/rec", "stop", false);
    fleet.publish("garden", "command/rec", "stop", false);
    fleet.publish("alice", "command/rec", "start", false);
    wait_for("the operator's second start", SECS(10), || {
        viewer
            .log()
            .contains("start: already recording session")
            .then_some(())
    });
    let log = viewer.log();
    assert!(
        !log.contains("recording closed") && !log.contains("pi-fake"),
        "{log}"
    );
    let state = fleet.sub("ws", "camfleet/viewer/ws/recording", 1, 5);
    assert!(state[0].contains("\"recording\""), "{state:?}");

    // A sensor writes only its own topic.
    fleet.publish("garden", "sensor/garden/temp", "21.5", true);
    fleet.publish("garden", "sensor/pi-sec/cpu_temp", "99", true);
    assert_eq!(
        fleet.sub("ws", "sensor/garden/temp", 1, 5),
        vec!["sensor/garden/temp 21.5"]
    );
    assert!(fleet.sub("ws", "sensor/pi-sec/cpu_temp", 1, 2).is_empty());
}

#[test]
fn clients_without_credentials_or_trusting_another_ca_are_refused_with_a_reason() {
    let fleet = Fleet::start();
    let port = fleet.broker.port;
    // No user: mosquitto refuses; the node says so and keeps trying.
    let anonymous = fleet.node("pi-sec", &format!("mqtts://127.0.0.1:{port}"), &fleet.ca());
    anonymous.wait_log("not authorised", SECS(20));
    // A wrong password.
    let wrong = fleet.node(
        "pi-sec",
        &format!("mqtts://pi-sec:guess@127.0.0.1:{port}"),
        &fleet.ca(),
    );
    wrong.wait_log("not authorised", SECS(20));
    // The right password but another fleet's CA: the broker's certificate
    // is not trusted, before any password is sent.
    let other = TempDir::new("other-fleet");
    broker_config(&other.0, free_port(), &["--nodes", "pi-sec"]);
    let untrusting = fleet.node("pi-sec", &fleet.url("pi-sec"), &other.path("ca.crt"));
    untrusting.wait_log("not signed by the CA in ca_file", SECS(20));
    assert!(!untrusting.log().contains("connected to MQTT broker"));
    // A node whose user is another node's (node_id and user do not
    // match): connected, but the ACL drops all it publishes; it says so.
    let mismatched = fleet.node("pi-sec", &fleet.url("pi-evil"), &fleet.ca());
    mismatched.wait_log("did not pass on this node's own test message", SECS(20));
    assert!(mismatched
        .log()
        .contains("user pi-evil write camfleet/node/pi-sec/#"));
    // Plain MQTT on the TLS port gets nowhere either.
    let got = mqtt_sub(port, "#", 1, 3);
    assert!(got.is_empty(), "a plain client was let in: {got:?}");
    // broker-config does not overwrite a fleet's files without --force.
    let again = Command::new(env!("CARGO_BIN_EXE_viewer"))
        .args(["broker-config", "--nodes", "a", "--host", "h", "--out"])
        .arg(&fleet.dir.0)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
