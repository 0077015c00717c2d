//! The node's HTTP server as browsers, curl and scripts meet it: MJPEG
//! streams of whole JPEGs, snapshots, the JSON API, capture control that
//! shows in /healthz, NodeInfo and metrics, and optional passwords (HTTP
//! basic; RTSP basic and digest, with ffprobe as the player).

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn ffmpeg_node(broker: &Broker, node_id: &str) -> Node {
    let source = ffmpeg_camera(320, 240, 15);
    let node = Node::start(
        &[
            node_args(&broker.url(), node_id, &source),
            words("--width 320 --height 240 --fps 15"),
        ]
        .concat(),
    );
    node.wait_log("first frame", SECS(20));
    node
}

#[test]
fn browsers_get_whole_jpegs_snapshots_and_an_index_page() {
    let broker = Broker::start();
    let node = ffmpeg_node(&broker, "web-test");
    let base = node.http_base();
    let stream_url = format!("{base}/cameras/cam0/stream.mjpg");
    let info = broker.node_info("web-test");
    assert_eq!(info.cameras[0].http.as_deref(), Some(stream_url.as_str()));

    let parts = read_multipart(&stream_url, 3, "camfleetframe");
    assert!(
        parts.len() >= 10,
        "3 s at 15 fps gave {} parts",
        parts.len()
    );
    for part in &parts {
        assert_eq!(part.jpeg.len(), part.content_length);
        assert_eq!(jpeg_size(&part.jpeg), (320, 240));
    }

    let snapshot = curl(&[&format!("{base}/cameras/cam0/snapshot.jpg")]);
    assert_eq!(
        (snapshot.status, snapshot.content_type.as_str()),
        (200, "image/jpeg")
    );
    assert_eq!(jpeg_size(&snapshot.body), (320, 240));

    let index = curl(&[&format!("{base}/")]);
    assert_eq!(index.status, 200);
    assert!(index.content_type.starts_with("text/html"));
    assert!(
        index.text().contains("cameras/cam0/stream.mjpg"),
        "{}",
        index.text()
    );

    let urls = curl(&[&format!("{base}/api/v1/stream?camera=cam0")]);
    assert_eq!(urls.status, 200);
    let urls = urls.json();
    assert_eq!(urls["rtsp"].as_str(), info.cameras[0].rtsp.as_deref());
    assert_eq!(urls["http"].as_str(), Some(stream_url.as_str()));
    assert_eq!(urls["tcp"].as_str(), Some(info.cameras[0].tcp.as_str()));

    let status = curl(&[&format!("{base}/api/v1/status")]).json();
    assert_eq!(status["node_id"], "web-test");
    assert!(
        status["stats"][0]["frames"].as_u64().unwrap() > 0,
        "{status}"
    );

    for (path, want) in [
        ("/cameras/nope/snapshot.jpg", 404),
        ("/cameras/nope/stream.mjpg", 404),
        ("/api/v1/stream?camera=nope", 404),
        ("/api/v1/stream", 400),
        ("/no/such/page", 404),
    ] {
        let reply = curl(&[&format!("{base}{path}")]);
        assert_eq!(reply.status, want, "{path}: {}", reply.text());
        assert!(reply.json()["error"].is_string(), "{path}: a JSON error");
    }
    node.wait_log("open to anyone", SECS(1));
}

#[test]
fn control_stops_and_starts_capture_and_everything_says_so() {
    let broker = Broker::start();
    let node = ffmpeg_node(&broker, "ctl-test");
    let base = node.http_base();
    let control = format!("{base}/api/v1/control");
    let post = |body: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            &control,
        ])
    };
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    let before = client.next().seq;

    let stopped = post(r#"{"camera":"cam0","action":"stop"}"#);
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.json()["enabled"], false);
    let health = curl(&[&format!("{base}/healthz")]);
    assert_eq!((health.status, health.text().trim()), (200, "cam0 stopped"));
    wait_for("NodeInfo with enabled=false", SECS(10), || {
        (!broker.node_info("ctl-test").cameras[0].enabled).then_some(())
    });
    let metrics = curl(&[&format!("{base}/metrics")]).text();
    assert!(
        metrics.contains("camfleet_camera_enabled{camera=\"cam0\"} 0"),
        "{metrics}"
    );
    node.wait_log("capture stopped through the API", SECS(5));
    let frames = |n: &Node| {
        curl(&[&format!("{}/api/v1/status", n.http_base())]).json()["stats"][0]["frames"].as_u64()
    };
    let held = frames(&node);
    std::thread::sleep(Duration::from_millis(700)); // a window in which no frame may arrive
    assert_eq!(frames(&node), held, "no frames while stopped");

    let started = post(r#"{"camera":"cam0","action":"START"}"#);
    assert_eq!(started.status, 200, "{}", started.text());
    let after = client.next().seq;
    assert!(
        after > before,
        "frames again after start ({before} -> {after})"
    );
    wait_for("NodeInfo with enabled=true", SECS(10), || {
        broker.node_info("ctl-test").cameras[0]
            .enabled
            .then_some(())
    });
    wait_for("/healthz ok", SECS(10), || {
        let h = curl(&[&format!("{base}/healthz")]);
        (h.status == 200 && h.text().contains("cam0 ok")).then_some(())
    });

    for (body, want) in [
        ("garbage", 400),
        (r#"{"camera":"cam0"}"#, 400),
        (r#"{"camera":"cam0","action":"jump"}"#, 400),
        (r#"{"camera":"cam9","action":"stop"}"#, 404),
    ] {
        let reply = post(body);
        assert_eq!(reply.status, want, "{body}: {}", reply.text());
    }
}

#[test]
fn healthz_turns_503_when_a_camera_goes_quiet() {
    let broker = Broker::start();
    let dir = TempDir::new("stale");
    let jpeg = dir.path("one.jpg");
    make_mjpeg(&jpeg, "160x120", 1);
    let source = format!("cmd:cat {}; exec sleep 600", jpeg.display());
    let node = Node::start(
        &[
            node_args(&broker.url(), "stale-test", &source),
            words("--watchdog-seconds 1"),
        ]
        .concat(),
    );
    let base = node.http_base();
    wait_for("/healthz 503", SECS(15), || {
        let h = curl(&[&format!("{base}/healthz")]);
        (h.status == 503 && h.text().contains("cam0 no frame")).then_some(())
    });
    let metrics = curl(&[&format!("{base}/metrics")]).text();
    assert!(
        metrics.contains("camfleet_camera_healthy{camera=\"cam0\"} 0"),
        "{metrics}"
    );
}

#[test]
fn metrics_count_viewers_per_protocol() {
    let broker = Broker::start();
    let node = ffmpeg_node(&broker, "metrics-test");
    let base = node.http_base();
    let _tcp = FrameClient::connect(node.tcp_port("cam0"));
    let mut browser = Command::new("curl")
        .args(["-s", "-N", &format!("{base}/cameras/cam0/stream.mjpg")])
        .stdout(Stdio::null())
        .spawn()
        .expect("run curl");
    let viewers = |protocol: &str| {
        let needle = format!("camfleet_viewers{{camera=\"cam0\",protocol=\"{protocol}\"}} ");
        let metrics = curl(&[&format!("{base}/metrics")]).text();
        let at = metrics.find(&needle).map(|i| i + needle.len())?;
        metrics[at..].lines().next()?.parse::<u32>().ok()
    };
    wait_for("1 TCP and 1 HTTP viewer", SECS(10), || {
        (viewers("tcp") == Some(1) && viewers("http") == Some(1)).then_some(())
    });
    assert_eq!(viewers("rtsp"), Some(0));
    browser.kill().unwrap();
    browser.wait().unwrap();
    wait_for("the HTTP viewer gone", SECS(10), || {
        (viewers("http") == Some(0)).then_some(())
    });
    let metrics = curl(&[&format!("{base}/metrics")]).text();
    for family in [
        "frames_total",
        "bytes_total",
        "camera_restarts_total",
        "last_frame_age_seconds",
        "frames_dropped_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE camfleet_{family} ")),
            "{family}: {metrics}"
        );
    }
}

#[test]
fn passwords_guard_http_and_rtsp_but_not_healthz_or_the_time() {
    require("ffprobe", "ffmpeg");
    let broker = Broker::start();
    let dir = TempDir::new("auth");
    let config = dir.path("node.toml");
    write(&config, "[[user]]\nname = 'alice'\npassword = 'pa55'\n");
    let source = ffmpeg_camera(320, 240, 15);
    let node = Node::start(
        &[
            node_args(&broker.url(), "auth-test", &source),
            vec!["--config", config.to_str().unwrap(), "--bind", "127.0.0.1"],
            words("--width 320 --height 240 --fps 15"),
        ]
        .concat(),
    );
    node.wait_log("first frame", SECS(20));
    let base = node.http_base();

    let open = curl(&[&format!("{base}/api/v1/status")]);
    assert_eq!(open.status, 401);
    // A wrong password is answered after the failure delay and logged
    // with the peer and the name, never the password.
    let asked = std::time::Instant::now();
    let wrong = curl(&["-u", "alice:guess", &format!("{base}/api/v1/status")]);
    assert_eq!(wrong.status, 401);
    assert!(
        asked.elapsed() >= SECS(1),
        "answered in {:?}",
        asked.elapsed()
    );
    node.wait_log(
        "wrong password or token as \"alice\" from 127.0.0.1:",
        SECS(5),
    );
    assert!(!node.log().contains("guess"), "no password in the log");
    let right = curl(&["-u", "alice:pa55", &format!("{base}/api/v1/status")]);
    assert_eq!(right.status, 200);
    assert_eq!(
        curl(&[&format!("{base}/healthz")]).status,
        200,
        "healthz stays open"
    );
    // So does the clock, which viewers without the password measure.
    let time = curl(&[&format!("{base}/api/v1/time")]);
    assert_eq!(time.status, 200, "{}", time.text());
    let reply: shared::messages::TimeReply = serde_json::from_str(&time.text()).unwrap();
    assert!(reply.unix_us.abs_diff(now_us()) < 5_000_000, "{reply:?}");

    let rtsp = node.rtsp_base();
    let mut client = RtspClient::connect(&rtsp);
    let url = format!("{rtsp}/cam0");
    let challenge = client.request("DESCRIBE", &url, &[]);
    assert_eq!(challenge.status, 401);
    let schemes = challenge.all("WWW-Authenticate");
    assert!(
        schemes
            .iter()
            .any(|s| s.starts_with("Digest realm=\"camfleet\", nonce=")),
        "{schemes:?}"
    );
    assert!(
        schemes.iter().any(|s| s.starts_with("Basic")),
        "{schemes:?}"
    );
    let basic = client.request(
        "DESCRIBE",
        &url,
        &[("Authorization", "Basic YWxpY2U6cGE1NQ==")],
    );
    assert_eq!(basic.status, 200, "basic with alice:pa55");

    // ffprobe answers the digest challenge (it prefers digest to basic).
    let with = |user: &str| rtsp.replacen("rtsp://", &format!("rtsp://{user}@"), 1) + "/cam0";
    let probe = |url: &str| {
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rtsp_transport",
                "tcp",
                "-show_entries",
                "stream=width",
                "-of",
                "csv=p=0",
                url,
            ])
            .output()
            .unwrap()
    };
    let ok = probe(&with("alice:pa55"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "320");
    assert!(
        !probe(&with("alice:nope")).status.success(),
        "a wrong password is refused"
    );
    assert!(
        !node.log().contains("open to anyone"),
        "no warning on loopback with users"
    );
}

/// The node's own page with eight cameras: every tile draws, all over the
/// page's one live WebSocket (a browser gives a host six connections, so
/// one multipart stream per tile left the last cameras blank).
#[test]
fn the_node_page_draws_eight_cameras_over_one_socket() {
    let broker = Broker::start();
    let dir = TempDir::new("eight");
    let config = dir.path("node.toml");
    let mut text = format!(
        "node_id = 'pi-eight'\nbroker = '{}'\nadvertise_host = '127.0.0.1'\ntcp_port = 0\nrtsp_port = 0\n\
         http_port = 0\ncpu_temp = false\nwidth = 160\nheight = 120\nfps = 10\n",
        broker.url()
    );
    for i in 0..8 {
        text.push_str(&format!("\n[[camera]]\nid = 'cam{i}'\nsource = 'test'\n"));
    }
    write(&config, &text);
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let base = node.http_base();
    let browser = testkit::browser::Browser::start();
    browser.go(&format!("{base}/"));
    let first = wait_for("all eight tiles drawing", SECS(30), || {
        let drawn = browser.tile_frames();
        (drawn.len() == 8 && drawn.values().all(|&n| n > 0)).then_some(drawn)
    });
    let names: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        (0..8)
            .map(|i| format!("pi-eight/cam{i}"))
            .collect::<Vec<_>>()
    );
    wait_for("every tile drawing on", SECS(10), || {
        let drawn = browser.tile_frames();
        drawn
            .iter()
            .all(|(camera, n)| *n >= first[camera] + 20)
            .then_some(())
    });
    assert!(
        node.log().contains("live WebSocket from 127.0.0.1"),
        "the node logs the page's socket"
    );
    // Another site's page may not open it (WebSocket hijacking).
    let addr = base.trim_start_matches("http://");
    let foreign = testkit::live::upgrade(addr, "/api/v1/live", &["Origin: http://evil.example"]);
    assert_eq!(foreign.status, 403, "{}", foreign.head);
    let own = format!("Origin: {base}");
    let mut page = testkit::live::upgrade(addr, "/api/v1/live", &[&own])
        .socket
        .expect("the node's own page gets its socket");
    page.show(&["cam3"]);
    let frame = page.frame().expect("a frame of cam3 by its id alone");
    assert_eq!(frame.camera, "cam3");
}

/// A wrong API token costs the failure delay and a log line, like a
/// wrong password, even on a node without users; the right one is not
/// delayed.
#[test]
fn a_wrong_api_token_waits_and_is_logged() {
    let broker = Broker::start();
    let node = Node::start(
        &[
            node_args(&broker.url(), "token-test", "test"),
            vec![
                "--api-token",
                "s3cret-token-16-chars",
                "--bind",
                "127.0.0.1",
            ],
            words("--width 160 --height 120 --fps 5"),
        ]
        .concat(),
    );
    let base = node.http_base();
    let call = |token: &str| {
        let asked = std::time::Instant::now();
        let reply = curl(&[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"camera":"cam0","action":"start"}"#,
            &format!("{base}/api/v1/control"),
        ]);
        (reply.status, asked.elapsed())
    };
    let (status, took) = call("guessed-token");
    assert_eq!(status, 401);
    assert!(took >= SECS(1), "a wrong token answered in {took:?}");
    node.wait_log(
        "wrong password or token as the API token from 127.0.0.1:",
        SECS(5),
    );
    assert!(!node.log().contains("guessed-token"), "no token in the log");
    let (status, took) = call("s3cret-token-16-chars");
    assert_eq!(status, 200);
    assert!(took < SECS(1), "the right token waited {took:?}");
}
