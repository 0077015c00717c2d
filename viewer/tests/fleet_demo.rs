//! `viewer demo`: the embedded broker, three simulated nodes and the
//! viewer come up as a user would see them (mosquitto_sub against the
//! embedded broker, frames reaching the viewer, the URLs printed); the
//! dashboard records a session exactly as `mosquitto_pub` would and
//! refuses what it should; Ctrl+C stops all of it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::demo::Demo;
use testkit::viewers::files;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn the_demo_fleet_comes_up_on_the_embedded_broker_and_records_from_the_dashboard() {
    let mut demo = Demo::start("3");
    demo.wait_fleet(3);
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
    let port = demo.broker_port;
    let (mut watcher, mut lines) = demo.watch("command/rec");
    let started = post_json(&format!("{base}/api/rec"), r#"{"action":"start"}"#);
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
    assert_eq!(nodes_left(port), "", "camera nodes left running");
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
    // The first segment of a session may be short: it starts with the command.
    assert!(frames.parse::<u32>().unwrap() >= 1, "{out}");
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_leaves_no_node_running() {
    let mut demo = Demo::start("2");
    demo.wait_fleet(2);
    let port = demo.broker_port;
    let pid = demo.child.id().to_string();
    for _ in 0..2 {
        run_ok(Command::new("kill").args(["-INT", &pid]));
    }
    let status = wait_for("the demo to exit", SECS(20), || {
        demo.child.try_wait().unwrap()
    });
    // The second signal exits at once (130), unless the first one's
    // orderly stop (a few ms with nothing recording) was already done.
    let log = demo.log();
    let orderly_first = !log.contains("again: exiting now") && log.contains("demo: stopped");
    match status.code() {
        Some(130) => assert!(log.contains("again: exiting now"), "{log}"),
        Some(0) => assert!(orderly_first, "{log}"),
        other => panic!("exit status {other:?}: {log}"),
    }
    wait_for("no camera node left", SECS(10), || {
        nodes_left(port).is_empty().then_some(())
    });
}

/// The command lines of demo nodes still running on the broker at `port`.
fn nodes_left(port: u16) -> String {
    let pattern = format!("127.0.0.1:{port} --node-id demo-");
    let left = Command::new("pgrep")
        .args(["-af", &pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&left.stdout).into_owned()
}

#[test]
fn the_relay_demo_passes_the_cameras_on_between_viewers() {
    let demo = Demo::start_with("2", &["--relay"]);
    demo.wait_fleet(2);
    // Its viewer and three headless relays, planned by each node.
    let plans = wait_for("both plans with four viewers", SECS(40), || {
        let plans: Vec<shared::relay::RelayPlan> = demo
            .sub("camfleet/node/+/relay/cam0/plan", 2)
            .iter()
            .filter_map(|line| serde_json::from_str(line.split_once(' ')?.1).ok())
            .collect();
        (plans.len() == 2 && plans.iter().all(|p| p.viewers.len() == 4)).then_some(plans)
    });
    assert!(plans.iter().all(|p| p.max_member == 2), "{plans:?}");
    let logs = demo.dir.path("logs");
    wait_for(
        "a relay taking a camera from another viewer",
        SECS(40),
        || {
            (1..=3)
                .map(|k| {
                    std::fs::read_to_string(logs.join(format!("demo-relay-{k}.log")))
                        .unwrap_or_default()
                })
                .any(|log| log.contains("(relay "))
                .then_some(())
        },
    );
}

#[test]
fn the_mixed_demo_records_an_mjpeg_and_an_h264_camera_side_by_side() {
    let demo = Demo::start_with("2", &["--codec", "mixed"]);
    demo.wait_fleet(2);
    let started = post_json(
        &format!("{}/api/rec", demo.dashboard),
        r#"{"action":"start"}"#,
    );
    assert_eq!(started.status, 202, "{}", started.text());
    let recordings = demo.dir.path("recordings");
    let closed = wait_for("a closed segment of both cameras", SECS(30), || {
        let segments = files(&recordings, ".mp4");
        let of = |n: &str| {
            segments
                .iter()
                .find(|s| s.to_string_lossy().contains(&format!("/{n}/")))
                .cloned()
        };
        Some((of("demo-1")?, of("demo-2")?))
    });
    for (segment, codec) in [(&closed.0, "mjpeg"), (&closed.1, "h264")] {
        let out = run_ok(
            Command::new("ffprobe")
                .args(["-v", "error", "-show_entries", "stream=codec_name"])
                .args(["-of", "csv=p=0"])
                .arg(segment),
        );
        assert_eq!(out.trim(), codec, "{}", segment.display());
    }
    let (status, body) = {
        let r = demo.curl("/cameras/demo-2/cam0/snapshot.jpg");
        (r.status, r.body)
    };
    assert_eq!(status, 200);
    assert!(
        body.starts_with(&[0xFF, 0xD8]),
        "a JPEG of the H.264 camera"
    );
}
