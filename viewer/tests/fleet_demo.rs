//! `viewer demo`: the embedded broker, three simulated nodes and the
//! viewer come up as a user would see them (mosquitto_sub against the
//! embedded broker, frames reaching the viewer, the URLs printed); the
//! dashboard records a session exactly as `mosquitto_pub` would and
//! refuses what it should; Ctrl+C stops all of it.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::common::*;
use support::files;

const SECS: fn(u64) -> Duration = Duration::from_secs;

struct Demo {
    child: Child,
    dir: TempDir,
    broker_port: u16,
    dashboard: String,
}

impl Demo {
    fn start(nodes: &str) -> Self {
        let _ = node_binary(); // built beside the viewer, where the demo looks first
        let dir = TempDir::new("fleet");
        let (broker_port, dashboard_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path("demo.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_viewer"))
            .args([
                "demo",
                "--nodes",
                nodes,
                "--headless",
                "--segment-seconds",
                "2",
            ])
            .args(["--embedded-broker", &format!("127.0.0.1:{broker_port}")])
            .args(["--dashboard", &format!("127.0.0.1:{dashboard_port}")])
            .arg("--recordings")
            .arg(dir.path("recordings"))
            .env("RUST_LOG", "info")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("CAMFLEET_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Demo {
            child,
            dir,
            broker_port,
            dashboard: format!("http://127.0.0.1:{dashboard_port}"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("demo.log")).unwrap_or_default()
    }

    /// `mosquitto_sub` against the embedded broker: `count` messages.
    fn sub(&self, topic: &str, count: usize) -> Vec<String> {
        require("mosquitto_sub", "mosquitto-clients");
        let out = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.broker_port.to_string(),
                "-t",
                topic,
                "-v",
            ])
            .args(["-C", &count.to_string(), "-W", "20"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn state(&self) -> serde_json::Value {
        curl(&[&format!("{}/api/state", self.dashboard)]).json()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- viewer demo log ----\n{}", self.log());
        }
    }
}

#[test]
fn the_demo_fleet_comes_up_on_the_embedded_broker_and_records_from_the_dashboard() {
    let mut demo = Demo::start("3");
    wait_for("3/3 nodes online", SECS(60), || {
        demo.log().contains("3/3 nodes online").then_some(())
    });
    let mut online = demo.sub("camfleet/node/+/status", 3);
    online.sort();
    assert_eq!(
        online,
        [
            "camfleet/node/demo-1/status online",
            "camfleet/node/demo-2/status online",
            "camfleet/node/demo-3/status online"
        ]
    );
    wait_for("the banner with the URLs", SECS(10), || {
        let log = demo.log();
        (log.contains(&format!("dashboard:  {}/", demo.dashboard))
            && log.matches("player:     ffplay rtsp://").count() == 3)
            .then_some(())
    });
    wait_for("frames from 3 cameras in the viewer", SECS(30), || {
        let state = demo.state();
        let cameras = state["cameras"].as_array()?.clone();
        (cameras.len() == 3
            && cameras
                .iter()
                .all(|c| c["last_frame_age_s"].as_f64().is_some_and(|a| a < 2.0)))
        .then_some(())
    });

    // What the dashboard refuses.
    let base = &demo.dashboard;
    let cases = [
        (vec![format!("{base}/cameras/nope/cam0/stream.mjpg")], 404),
        (
            vec![
                "-X".into(),
                "POST".into(),
                "-d".into(),
                "garbage".into(),
                format!("{base}/api/rec"),
            ],
            400,
        ),
        (
            vec![
                "-X".into(),
                "POST".into(),
                "-d".into(),
                r#"{"action":"dance"}"#.into(),
                format!("{base}/api/rec"),
            ],
            400,
        ),
        (
            vec![
                "--path-as-is".into(),
                format!("{base}/recordings/../../../etc/passwd"),
            ],
            400,
        ),
        (
            vec![
                "--path-as-is".into(),
                format!("{base}/recordings//etc/passwd"),
            ],
            400,
        ),
        (
            vec![format!("{base}/recordings/%2E%2E/%2E%2E/etc/passwd")],
            400,
        ),
        (
            vec![format!("{base}/recordings/20990101T000000Z/x.mp4")],
            404,
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = curl(&args);
        assert_eq!(reply.status, want, "{args:?}: {}", reply.text());
        assert!(
            !reply.text().contains("root:"),
            "nothing outside the recordings"
        );
    }

    // Start from the dashboard: the command goes out on MQTT like mosquitto_pub's.
    let port = demo.broker_port.to_string();
    // Line-buffered, so its SUBACK shows before it exits.
    let mut watcher = Command::new("stdbuf")
        .args([
            "-oL",
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "command/rec",
            "-C",
            "1",
            "-W",
            "20",
            "-d",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("SUBACK")),
        "mosquitto_sub subscribed"
    );
    let started = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"action":"start"}"#,
        &format!("{base}/api/rec"),
    ]);
    assert_eq!(started.status, 202, "{}", started.text());
    assert!(
        lines.any(|l| l == "start"),
        "the dashboard's start seen on command/rec"
    );
    let _ = watcher.wait();
    wait_for("state recording", SECS(10), || {
        (demo.state()["recording"]["state"] == "recording").then_some(())
    });
    let recordings = demo.dir.path("recordings");
    let closed = wait_for("a closed segment of every camera", SECS(20), || {
        let segments = files(&recordings, ".mp4");
        ["demo-1", "demo-2", "demo-3"]
            .iter()
            .all(|n| segments.iter().any(|s| s.to_string_lossy().contains(n)))
            .then_some(segments)
    });
    let listed = demo.state()["sessions"][0]["files"].clone();
    let relative = closed[0]
        .strip_prefix(&recordings)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == relative.as_str()),
        "{relative} in {listed}"
    );
    let download = demo.dir.path("download.mp4");
    let got = curl(&[
        "-o",
        download.to_str().unwrap(),
        &format!("{base}/recordings/{relative}"),
    ]);
    assert_eq!(got.status, 200);
    assert_eq!(
        std::fs::read(&download).unwrap(),
        std::fs::read(&closed[0]).unwrap()
    );
    assert_plays(&download);

    let stopped = curl(&[
        "-X",
        "POST",
        "-d",
        r#"{"action":"stop"}"#,
        &format!("{base}/api/rec"),
    ]);
    assert_eq!(stopped.status, 202);
    wait_for("state idle", SECS(10), || {
        (demo.state()["recording"]["state"] == "idle").then_some(())
    });

    // Ctrl+C stops the viewer, the nodes and the broker.
    let ok = Command::new("kill")
        .args(["-INT", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = wait_for("the demo to exit", SECS(30), || {
        demo.child.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
    let log = demo.log();
    assert!(log.contains("demo: stopped"), "{log}");
    let left = Command::new("pgrep")
        .args(["-f", &format!("127.0.0.1:{port} --node-id demo-")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "camera nodes left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

fn assert_plays(path: &Path) {
    let out = run_ok(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(path),
    );
    let (codec, frames) = out.trim().split_once(',').unwrap();
    assert_eq!(codec, "mjpeg");
    assert!(frames.parse::<u32>().unwrap() > 5, "{out}");
}
