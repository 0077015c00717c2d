//! Cameras added at runtime over the node's API, from real streams: another
//! node's RTSP and HTTP MJPEG, refused sources, and the cameras' state
//! across a restart and a kill. Checked as a user would: curl on the API,
//! frames over TCP, RTSP and HTTP, the retained state topic. RTMP sources:
//! sources_rtmp.rs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::api::*;
use testkit::*;

/// A node serving `source` on free ports, with `extra` flags.
fn node_with(broker: &Broker, id: &str, source: &str, extra: &[&str]) -> Node {
    let url = broker.url();
    let args = [node_args(&url, id, source), extra.to_vec()].concat();
    Node::start(&args)
}

fn small_camera_node(broker: &Broker, id: &str) -> Node {
    let node = node_with(
        broker,
        id,
        &ffmpeg_camera(320, 240, 10),
        &words("--width 320 --height 240 --fps 10"),
    );
    node.wait_log("first frame", Duration::from_secs(20));
    node
}

#[test]
fn another_nodes_rtsp_and_http_streams_become_cameras() {
    let broker = Broker::start();
    let upstream = small_camera_node(&broker, "src-up");
    let node = node_with(
        &broker,
        "src-down",
        "test",
        &words("--width 160 --height 120 --fps 5"),
    );
    let rtsp = format!("{}/cam0", upstream.rtsp_base());
    let started = Instant::now();
    let v = add(&node, json!({"id": "fromrtsp", "source": rtsp}));
    assert_eq!(v["origin"], "api");
    let v = wait_state(&node, "fromrtsp", &["running"], Duration::from_secs(20));
    let first_frame = started.elapsed();
    assert!(
        v["input"].as_str().unwrap_or("").contains("copied"),
        "an MJPEG input is copied: {v}"
    );
    let mut viewer = FrameClient::connect(tcp_port(&v));
    assert_eq!(jpeg_size(&viewer.next().jpeg), (320, 240));
    eprintln!("POST to running (copy over RTSP): {first_frame:?}");
    let v = wait_for("a measured rate", Duration::from_secs(10), || {
        let v = view(&node, "fromrtsp");
        (v["fps"].as_f64() > Some(5.0)).then_some(v)
    });
    assert!(v["kbit_s"].as_f64() > Some(10.0), "{v}");
    assert!(v["converter"]["rss_bytes"].as_u64() > Some(1 << 20), "{v}");
    assert!(v["runs"][0]["started_at"].is_string(), "{v}");

    let http = format!("{}/cameras/cam0/stream.mjpg", upstream.http_base());
    let v = add(
        &node,
        json!({"id": "fromhttp", "source": http, "width": 160, "height": 96, "fps": 5}),
    );
    let port = tcp_port(&v);
    let v = wait_state(&node, "fromhttp", &["running"], Duration::from_secs(20));
    assert!(
        v["input"].as_str().unwrap_or("").contains("converted"),
        "{v}"
    );
    let mut viewer = FrameClient::connect(port);
    assert_eq!(jpeg_size(&viewer.next().jpeg), (160, 96));
    // The same camera over RTSP and HTTP, at the size asked for.
    let bytes = rtsp_decode(&format!("{}/fromhttp", node.rtsp_base()), "tcp", 3);
    assert_eq!(bytes, 160 * 96 * 3);
    let snapshot = curl(&[&format!(
        "{}/cameras/fromhttp/snapshot.jpg",
        node.http_base()
    )]);
    assert_eq!(jpeg_size(&snapshot.body), (160, 96));

    // Discovered like any camera: NodeInfo lists it, the state is retained.
    let info = wait_for(
        "NodeInfo with three cameras",
        Duration::from_secs(10),
        || {
            let info = broker.node_info("src-down");
            (info.cameras.len() == 3).then_some(info)
        },
    );
    let cam = info.cameras.iter().find(|c| c.id == "fromhttp").unwrap();
    assert_eq!((cam.width, cam.height), (160, 96));
    assert_eq!(cam.tcp, format!("127.0.0.1:{port}"));
    let state = wait_for("a retained running state", Duration::from_secs(10), || {
        broker
            .retained("camfleet/node/src-down/camera/fromhttp/state")
            .filter(|s| s.contains("\"running\""))
    });
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        (state["origin"].as_str(), state["restarts"].as_u64()),
        (Some("api"), Some(0))
    );

    // Changed: the converter restarts at the new size while the viewer
    // stays connected.
    let reply = api(
        &node,
        "PATCH",
        "/api/v1/cameras/fromhttp",
        Some(json!({"width": 96, "height": 64})),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    wait_for(
        "frames at the new size on the same connection",
        Duration::from_secs(20),
        || (jpeg_size(&viewer.next().jpeg) == (96, 64)).then_some(()),
    );
    let reply = api(
        &node,
        "PATCH",
        "/api/v1/cameras/cam0",
        Some(json!({"source": "test"})),
        None,
    );
    assert_eq!(
        reply.status,
        409,
        "a config camera's source is the file's: {}",
        reply.text()
    );

    // Removed: gone from NodeInfo, its state cleared, its port closed.
    let reply = api(&node, "DELETE", "/api/v1/cameras/fromhttp", None, None);
    assert_eq!(reply.status, 204, "{}", reply.text());
    wait_for("NodeInfo without it", Duration::from_secs(10), || {
        (broker.node_info("src-down").cameras.len() == 2).then_some(())
    });
    wait_for("the state topic cleared", Duration::from_secs(10), || {
        broker
            .retained("camfleet/node/src-down/camera/fromhttp/state")
            .is_none()
            .then_some(())
    });
    wait_for("its TCP port closed", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    // The config file's camera cannot be deleted, only stopped.
    let reply = api(&node, "DELETE", "/api/v1/cameras/cam0", None, None);
    assert_eq!(reply.status, 409, "{}", reply.text());
    let reply = api(&node, "POST", "/api/v1/cameras/cam0/stop", None, None);
    assert_eq!(reply.status, 200);
    wait_state(&node, "cam0", &["stopped"], Duration::from_secs(10));
    assert!(zombie_children(node.pid()).is_empty());
}

#[test]
fn bad_sources_are_refused_and_passwords_never_shown() {
    let broker = Broker::start();
    let token = "a-token-of-sixteen-chars";
    let watcher = Watcher::start(&broker, "camfleet/#");
    let node = node_with(
        &broker,
        "src-sec",
        "test",
        &["--api-token", token, "--watchdog-seconds", "1"],
    );
    node.wait_log("first frame", Duration::from_secs(20));
    let post =
        |body: Value, token: Option<&str>| api(&node, "POST", "/api/v1/cameras", Some(body), token);

    // Writes need the token; reads do not.
    let no_token = post(json!({"source": "test"}), None);
    assert_eq!(no_token.status, 401, "{}", no_token.text());
    assert_eq!(
        post(json!({"source": "test"}), Some("wrong-token-xxxxxxxx")).status,
        401
    );
    let restart = api(
        &node,
        "POST",
        "/api/v1/control",
        Some(json!({"camera":"cam0","action":"restart"})),
        None,
    );
    assert_eq!(restart.status, 401);
    assert_eq!(api(&node, "GET", "/api/v1/cameras", None, None).status, 200);

    // Programs and files need the node's own consent.
    let cmd = post(
        json!({"source": "cmd:touch /tmp/camfleet-pwned"}),
        Some(token),
    );
    assert_eq!(cmd.status, 403, "{}", cmd.text());
    assert!(cmd.text().contains("--api-allow-commands"));
    assert_eq!(
        post(json!({"source": "file:/etc/passwd"}), Some(token)).status,
        403
    );
    for bad in [
        "rtsp://cam/a b".to_owned(),
        "-i /etc/passwd".to_owned(),
        "gopher://cam/x".to_owned(),
        format!("rtsp://cam/{}", "x".repeat(2100)),
        "rtsp://cam/x\nsecond".to_owned(),
    ] {
        let reply = post(json!({"source": bad}), Some(token));
        assert_eq!(reply.status, 400, "{bad:.40}: {}", reply.text());
    }
    assert_eq!(
        post(json!({"source": "test", "id": "a/b"}), Some(token)).status,
        400
    );
    assert_eq!(
        post(json!({"source": "test", "fps": 1000}), Some(token)).status,
        400
    );
    assert_eq!(
        post(json!({"source": "test", "colour": 1}), Some(token)).status,
        400
    );

    // A source with a password that fails: the password is nowhere.
    let port = free_port();
    let secret = "pw-5ecret-zz";
    let url = format!("rtsp://admin:{secret}@127.0.0.1:{port}/stream1");
    let reply = post(json!({"id": "ipcam", "source": url}), Some(token));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let v = wait_for(
        "a failed run with an error",
        Duration::from_secs(30),
        || {
            let v = view(&node, "ipcam");
            (v["restarts"].as_u64() >= Some(1) && !v["last_error"].is_null()).then_some(v)
        },
    );
    assert_eq!(
        v["source"],
        format!("rtsp://admin:***@127.0.0.1:{port}/stream1")
    );
    let restart = api(
        &node,
        "POST",
        "/api/v1/control",
        Some(json!({"camera":"ipcam","action":"restart"})),
        Some(token),
    );
    assert_eq!(restart.status, 200, "{}", restart.text());
    let log = api(&node, "GET", "/api/v1/cameras/ipcam/log", None, None);
    assert!(
        log.text().contains("ffprobe") || log.text().contains("ffmpeg"),
        "{}",
        log.text()
    );
    wait_for("the state topic", Duration::from_secs(10), || {
        watcher.seen().contains("camera/ipcam/state").then_some(())
    });
    for (what, text) in [
        (
            "the camera list",
            api(&node, "GET", "/api/v1/cameras", None, None).text(),
        ),
        ("the camera's log", log.text()),
        (
            "the status",
            api(&node, "GET", "/api/v1/status", None, None).text(),
        ),
        ("the node's page", api(&node, "GET", "/", None, None).text()),
        ("the node's log", node.log()),
        ("MQTT", watcher.seen()),
    ] {
        assert!(!text.contains(secret), "the password is in {what}:\n{text}");
    }
    assert!(!std::path::Path::new("/tmp/camfleet-pwned").exists());
}

#[test]
fn added_cameras_and_their_state_survive_a_restart_and_a_kill() {
    let broker = Broker::start();
    let state = TempDir::new("state");
    let dir = state.0.display().to_string();
    let extra = ["--state-dir", dir.as_str()];
    let mut node = node_with(&broker, "src-keep", "test", &extra);
    let a = add(
        &node,
        json!({"id": "keep-a", "source": "test", "width": 96, "height": 64}),
    );
    let b = add(&node, json!({"id": "keep-b", "source": "test"}));
    let ports = (tcp_port(&a), tcp_port(&b));
    let reply = api(&node, "POST", "/api/v1/cameras/keep-b/stop", None, None);
    assert_eq!(reply.status, 200);
    // The config file's camera's stop is kept too.
    assert_eq!(
        api(&node, "POST", "/api/v1/cameras/cam0/stop", None, None).status,
        200
    );
    let file = state.path("cameras.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    node.signal("TERM");
    node.wait_exit(Duration::from_secs(15));

    let node = node_with(&broker, "src-keep", "test", &extra);
    let a = wait_state(&node, "keep-a", &["running"], Duration::from_secs(20));
    let b = wait_state(&node, "keep-b", &["stopped"], Duration::from_secs(20));
    wait_state(&node, "cam0", &["stopped"], Duration::from_secs(20));
    assert_eq!(
        (tcp_port(&a), tcp_port(&b)),
        ports,
        "same ports after a restart"
    );
    let mut viewer = FrameClient::connect(ports.0);
    assert_eq!(jpeg_size(&viewer.next().jpeg), (96, 64));

    drop(viewer);
    drop(node);

    // Killed while it writes the file, at a different moment each round:
    // the file is always whole, and the next node starts from it.
    for round in 0..3u64 {
        let node = node_with(&broker, "src-keep", "test", &extra);
        wait_state(
            &node,
            "keep-a",
            &["running", "stopped"],
            Duration::from_secs(20),
        );
        // Three writers at once (two cameras toggled): writes overlap.
        let toggles: u32 = std::thread::scope(|s| {
            let writers: Vec<_> = ["keep-b", "keep-a", "keep-b"]
                .into_iter()
                .map(|camera| {
                    let node = &node;
                    s.spawn(move || {
                        let mut n = 0;
                        loop {
                            let action = if n % 2 == 0 { "stop" } else { "start" };
                            let path = format!("/api/v1/cameras/{camera}/{action}");
                            if api(node, "POST", &path, None, None).status != 200 {
                                return n;
                            }
                            n += 1;
                        }
                    })
                })
                .collect();
            // Not a wait for anything: the moment of the kill, varied.
            std::thread::sleep(Duration::from_millis(150 + 70 * round));
            node.signal("KILL");
            writers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert!(
            toggles > 0,
            "round {round}: no write happened before the kill"
        );
        let text = std::fs::read_to_string(&file).unwrap();
        let saved: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}, after {toggles} writes: {e}\n{text}"));
        assert_eq!(saved["cameras"].as_array().unwrap().len(), 3, "{text}");
    }
    let node = node_with(&broker, "src-keep", "test", &extra);
    let a = wait_state(
        &node,
        "keep-a",
        &["running", "stopped"],
        Duration::from_secs(20),
    );
    assert_eq!(tcp_port(&a), ports.0);
    let leftovers: Vec<_> = std::fs::read_dir(&state.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cameras.json")
        .collect();
    // A temporary file left by a killed write is harmless; there is no other.
    assert!(
        leftovers.iter().all(|n| n.ends_with(".tmp")),
        "{leftovers:?}"
    );
}
