//! camera-node given bad input: a damaged camera stream, a broker that
//! refuses it, bad configuration. Each gets a clear message; the node keeps
//! running, or exits with a clear error where it cannot start.

use std::io::Write;
use std::time::Duration;

use testkit::*;

#[test]
fn garbage_truncated_and_oversized_frames_are_skipped_with_warnings() {
    require("ffmpeg", "ffmpeg");
    let broker = Broker::start();
    let dir = TempDir::new("damaged");
    let good = dir.path("good.jpg");
    make_mjpeg(&good, "160x120", 1);
    let jpeg = std::fs::read(&good).unwrap();
    let mut bad = std::fs::File::create(dir.path("bad.bin")).unwrap();
    bad.write_all(b"this is not a JPEG \x00\x01\x02\xFF")
        .unwrap();
    bad.write_all(&jpeg[..jpeg.len() / 2]).unwrap(); // truncated
    bad.write_all(&jpeg).unwrap(); // whole
                                   // Over the 16 MiB cap: SOI, a scan header, then 17 MiB of scan data.
    bad.write_all(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02])
        .unwrap();
    bad.write_all(&vec![0x11u8; 17 * 1024 * 1024]).unwrap();
    drop(bad);
    let source = format!(
        "cmd:cat '{}'; exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=160x120:rate=10 -f mjpeg -",
        dir.path("bad.bin").display()
    );
    let url = broker.url();
    let node = Node::start(&[
        "--broker",
        &url,
        "--node-id",
        "pi-bad",
        "--source",
        &source,
        "--tcp-port",
        "0",
        "--no-cpu-temp",
    ]);
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    for _ in 0..15 {
        assert_eq!(
            jpeg_size(&client.next().jpeg),
            (160, 120),
            "every frame sent must be a whole JPEG"
        );
    }
    node.wait_log("bytes that are not JPEG", Duration::from_secs(10));
    node.wait_log("over the 16777216 byte cap", Duration::from_secs(10));
    let log = node.log();
    assert!(
        log.contains("truncated JPEG") || log.contains("corrupt JPEG"),
        "{log}"
    );
    assert!(
        !log.contains("restarting in"),
        "damaged input must not restart the camera:\n{log}"
    );
}

#[test]
fn a_refused_password_is_explained_and_frames_keep_flowing() {
    let broker = Broker::start_with_password("cam", "right");
    let small = words("--source test --width 160 --height 120 --tcp-port 0 --no-cpu-temp");
    let start = |password: &str, node_id: &str| {
        let url = format!("mqtt://cam:{password}@127.0.0.1:{}", broker.port);
        Node::start(&[vec!["--broker", &url, "--node-id", node_id], small.clone()].concat())
    };
    let node = start("wrong", "pi-pw");
    node.wait_log(
        "not authorised (check user:pass in the broker URL",
        Duration::from_secs(15),
    );
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    client.next();
    assert!(
        !node.log().contains("wrong"),
        "the log must not show passwords"
    );
    // The right password gets in.
    let _ok = start("right", "pi-pw-ok");
    let port = broker.port.to_string();
    let out = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-u", "cam", "-P", "right"])
        .args(["-t", "camfleet/node/pi-pw-ok/status", "-C", "1", "-W", "15"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "online");
}

#[test]
fn an_unknown_config_key_is_named_and_the_node_does_not_start() {
    let dir = TempDir::new("badconf");
    let config = dir.path("node.toml");
    write(
        &config,
        "node_id = 'x'\n[[camera]]\nsource = 'test'\nfpss = 3\n",
    );
    let out = run_node(&["--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fpss") && stderr.contains("node.toml"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_and_values_say_what_is_wrong() {
    let cases: [(&[&str], &str); 5] = [
        (&["--broker", "http://h", "--node-id", "n"], "mqtt://"),
        (&["--fps", "0", "--node-id", "n"], "camera[0].fps"),
        (
            &["--source", "webcam", "--node-id", "n"],
            "camera[0].source",
        ),
        (&["--node-id", "a/b"], "node_id"),
        (
            &["--config", "/nonexistent/node.toml"],
            "/nonexistent/node.toml",
        ),
    ];
    for (args, needle) in cases {
        let out = run_node(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?} should mention {needle}: {stderr}"
        );
    }
    let out = run_node(&["--fps", "many"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fps"));
}

#[test]
fn a_port_in_use_stops_the_node_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_node(&[
        "--node-id",
        "n",
        "--source",
        "test",
        "--tcp-port",
        &port,
        "--no-cpu-temp",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on TCP 0.0.0.0:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_missing_camera_program_is_explained_and_retried() {
    let broker = Broker::start();
    let url = broker.url();
    let empty = TempDir::new("nopath");
    let node = Node::start_with_env(
        &[
            "--broker",
            &url,
            "--node-id",
            "pi-nocam",
            "--tcp-port",
            "0",
            "--no-cpu-temp",
        ],
        &[("PATH", empty.0.to_str().unwrap())],
    );
    node.wait_log(
        "neither rpicam-vid nor libcamera-vid is on PATH",
        Duration::from_secs(10),
    );
    node.wait_log("restarting in", Duration::from_secs(10));
    broker.wait_status("pi-nocam", "online");
}
