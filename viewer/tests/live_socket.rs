//! Every camera live in one browser tab (docs/protocol.md, "The live
//! WebSocket"): twelve cameras over one connection in headless Chromium,
//! a throttled tab that stays fresh beside one that gets every frame,
//! and the upgrade's access rules. Real mosquitto, nodes, viewer, Chromium.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::browser::Browser;
use testkit::demo::{Demo, USER};
use testkit::live::upgrade;
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
/// The test cameras' rate.
const FPS: f64 = 15.0;
/// How often the throttled tab's frame ages are read: about two samples a
/// frame, and no core taken from the Chromium being measured.
const SAMPLE_EVERY: Duration = Duration::from_millis(33);

/// `n` test nodes `live-1..=n` at 640x480, 15 fps.
fn fleet(broker: &Broker, n: usize) -> Vec<Node> {
    let url = broker.url();
    (1..=n)
        .map(|i| {
            let id = format!("live-{i}");
            let size = ["--width", "640", "--height", "480", "--fps", "15"];
            Node::start(&[node_args(&url, &id, "test"), size.to_vec()].concat())
        })
        .collect()
}

/// Waits until the viewer has fresh frames from `n` cameras.
fn wait_cameras(dashboard: &str, n: usize) {
    let state = || curl(&[&format!("http://{dashboard}/api/state")]).json();
    testkit::demo::wait_fresh_cameras(n, SECS(60), state);
}

/// The connections to `port` that have carried a request (`ss -ti`: the
/// client side of each, with bytes sent). Chromium also keeps a spare
/// connection open that it has never used (a preconnect, for the page's
/// next request): that one is not the page's.
fn connections_to(port: &str) -> usize {
    let out = Command::new("ss")
        .args([
            "-Htni",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("connections to the dashboard:\n{text}");
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix("bytes_sent:"))
        .filter(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
        .count()
}

fn grown(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .collect()
}

/// Each tile's canvas width and the device pixels it is shown at.
fn canvas_widths(browser: &Browser) -> BTreeMap<String, (u64, u64)> {
    let sizes = browser.run(
        "return Object.fromEntries([...document.querySelectorAll('[data-camera]')].map(t => {
           const c = t.querySelector('canvas');
           return [t.dataset.camera, [c.width, Math.floor(c.clientWidth * devicePixelRatio)]];
         }))",
    );
    (sizes.as_object().cloned().unwrap_or_default().into_iter())
        .map(|(camera, v)| {
            (
                camera,
                (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0)),
            )
        })
        .collect()
}

/// What each tile has counted: pictures drawn, the camera's sequence
/// number, and pictures the page replaced unseen while decoding.
#[derive(Clone, Copy, Debug)]
struct Counts {
    drawn: u64,
    seq: u64,
    superseded: u64,
}

fn counts(browser: &Browser) -> BTreeMap<String, Counts> {
    (browser
        .tile_numbers(&["frames", "seq", "superseded"])
        .into_iter())
    .map(|(camera, n)| {
        let (drawn, seq, superseded) = (n[0], n[1], n[2]);
        (
            camera,
            Counts {
                drawn,
                seq,
                superseded,
            },
        )
    })
    .collect()
}

#[test]
fn twelve_cameras_play_in_one_tab_over_one_connection() {
    let broker = Broker::start();
    let recordings = TempDir::new("live-12");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    let dashboard = viewer.dashboard();
    let port = dashboard.rsplit(':').next().unwrap().to_owned();
    let _nodes = fleet(&broker, 12);
    wait_cameras(&dashboard, 12);

    let browser = Browser::start();
    browser.go(&format!("http://{dashboard}/"));
    wait_for("all 12 tiles drawing", SECS(30), || {
        let drawn = browser.tile_frames();
        (drawn.len() == 12 && drawn.values().all(|&n| n > 0)).then_some(())
    });
    let before = browser.tile_frames();
    let started = Instant::now();
    let want = (0.8 * FPS * 5.0) as u64;
    let after = wait_for(
        &format!("every tile to draw {want} frames within 5 s"),
        SECS(6),
        || {
            let after = browser.tile_frames();
            grown(&before, &after)
                .values()
                .all(|&n| n >= want)
                .then_some(after)
        },
    );
    eprintln!(
        "in {:.1} s each tile drew {:?}",
        started.elapsed().as_secs_f64(),
        grown(&before, &after)
    );
    // Each 640x480 picture is decoded at about the size its tile shows it
    // (a twelfth of the window), which is what keeps the rate.
    let sizes = canvas_widths(&browser);
    assert!(
        sizes
            .values()
            .all(|&(width, shown)| width < 640 && width >= shown),
        "pictures not decoded at their tiles' size (canvas, shown): {sizes:?}"
    );
    let held = connections_to(&port);
    assert!(
        (1..=2).contains(&held),
        "the tab holds {held} connections to the dashboard"
    );

    // A click enlarges one camera: the only one drawn (at its full rate)
    // until Escape brings the grid back.
    browser.click("[data-camera='live-5/cam0'] canvas");
    wait_for("live-5 enlarged", SECS(5), || {
        let big = browser.run("return [...document.querySelectorAll('.live-enlarged[data-camera]')].map(t => t.dataset.camera)");
        (big == serde_json::json!(["live-5/cam0"])).then_some(())
    });
    let before = browser.tile_frames();
    let want = (0.8 * FPS * 3.0) as u64;
    wait_for("the enlarged camera at its full rate", SECS(4), || {
        (grown(&before, &browser.tile_frames())["live-5/cam0"] >= want).then_some(())
    });
    let during = grown(&before, &browser.tile_frames());
    let (width, _) = canvas_widths(&browser)["live-5/cam0"];
    assert_eq!(width, 640, "the enlarged camera at its full size");
    let others: u64 = during
        .iter()
        .filter(|(k, _)| *k != "live-5/cam0")
        .map(|(_, n)| n)
        .sum();
    assert!(
        others <= 11 * 2,
        "the hidden tiles kept drawing: {during:?}"
    );
    browser.press("\u{E00C}"); // Escape
    let before = browser.tile_frames();
    wait_for("the grid back, every tile drawing", SECS(10), || {
        let none = browser.run("return document.querySelectorAll('.live-enlarged').length");
        let drawn = grown(&before, &browser.tile_frames());
        (none == 0 && drawn.values().all(|&n| n >= 5)).then_some(())
    });

    // A session to play back, then the player and Sources beside the live tab.
    let rec = post_json(
        &format!("http://{dashboard}/api/rec"),
        r#"{"action":"start"}"#,
    );
    assert_eq!(rec.status, 202, "{}", rec.text());
    let session = wait_for("a session on disk", SECS(20), || {
        let session = std::fs::read_dir(&recordings.0)
            .ok()?
            .flatten()
            .find(|e| e.path().is_dir())?;
        Some(session.file_name().to_string_lossy().into_owned())
    });
    for page in [format!("/sessions/{session}"), "/sources".to_owned()] {
        let took = browser.new_tab(&format!("http://{dashboard}{page}"));
        eprintln!("{page} loaded in {took:?} beside the live tab");
        assert!(
            took < SECS(2),
            "{page} took {took:?} to load beside the live tab"
        );
    }
}

#[test]
fn a_throttled_tab_stays_fresh_while_an_unthrottled_one_gets_every_frame() {
    let broker = Broker::start();
    let recordings = TempDir::new("live-slow");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    let dashboard = viewer.dashboard();
    let _nodes = fleet(&broker, 6);
    wait_cameras(&dashboard, 6);

    let slow = Browser::start();
    // 2 Mbit/s: a sixth of what six 640x480 cameras at 15 fps send.
    slow.throttle(250_000, 20);
    slow.go(&format!("http://{dashboard}/"));
    let fast = Browser::start();
    fast.go(&format!("http://{dashboard}/"));
    for browser in [&slow, &fast] {
        wait_for("six tiles drawing", SECS(30), || {
            let drawn = browser.tile_frames();
            (drawn.len() == 6 && drawn.values().all(|&n| n > 0)).then_some(())
        });
    }
    let rss_before = rss_kib(viewer.child.id());
    let (slow_before, fast_before) = (counts(&slow), counts(&fast));
    let ages: Vec<u64> = slow
        .sample(
            "return [...document.querySelectorAll('[data-camera]')].map(t => Number(t.dataset.ageMs || 0))",
            SAMPLE_EVERY,
            SECS(20),
        )
        .iter()
        .flat_map(|tiles| tiles.as_array().cloned().unwrap_or_default())
        .map(|age| age.as_u64().unwrap_or(0))
        .collect();
    let (oldest_ms, samples) = (ages.iter().copied().max().unwrap_or(0), ages.len());
    let (slow_after, fast_after) = (counts(&slow), counts(&fast));
    let rss_after = rss_kib(viewer.child.id());
    eprintln!(
        "throttled: oldest drawn frame {oldest_ms} ms over {samples} samples; viewer RSS {rss_before} -> {rss_after} KiB"
    );
    let mut slow_total = 0;
    let mut fast_total = 0;
    for (camera, after) in &fast_after {
        let before = fast_before[camera];
        let (drawn, made) = (after.drawn - before.drawn, after.seq - before.seq);
        // What reached the page: drawn, or replaced unseen by a newer
        // picture while the tile was decoding (the browser short of CPU).
        let arrived = drawn + after.superseded - before.superseded;
        let slow_drawn = slow_after[camera].drawn - slow_before[camera].drawn;
        eprintln!(
            "{camera}: unthrottled got {arrived} of {made} frames and drew {drawn}, throttled drew {slow_drawn}"
        );
        assert!(
            arrived as f64 >= 0.97 * made as f64,
            "{camera}: the unthrottled tab got {arrived} of {made} frames (it drew {drawn})"
        );
        assert!(
            drawn as f64 >= 0.8 * made as f64,
            "{camera}: the unthrottled tab drew {drawn} of {made} frames (it got {arrived})"
        );
        assert!(
            slow_drawn >= 5,
            "{camera}: the throttled tab drew {slow_drawn}"
        );
        slow_total += slow_drawn;
        fast_total += drawn;
    }
    assert!(
        slow_total * 2 < fast_total,
        "the throttle did not bite: {slow_total} frames throttled against {fast_total}"
    );
    assert!(
        oldest_ms < 1000,
        "a throttled tile drew a frame {oldest_ms} ms old"
    );
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "the viewer grew from {rss_before} to {rss_after} KiB"
    );
}

/// The upgrade obeys the dashboard's login and refuses other sites' pages;
/// with the login, frames. Over HTTP with the raw client, over HTTPS with
/// curl (the browser tests draw over wss).
#[test]
fn the_live_socket_obeys_the_dashboards_access_rules() {
    let keys = TempDir::new("live-login");
    let config = keys.path("viewer.toml");
    testkit::demo::config_with_user(&config);
    let mut demo = Demo::start_with("1", &["--config", config.to_str().unwrap()]);
    demo.curl_args = vec!["-u".into(), format!("{}:{}", USER.0, USER.1)];
    demo.wait_fleet(1);
    let addr = demo.dashboard.trim_start_matches("http://").to_owned();
    let basic = format!(
        "Authorization: Basic {}",
        base64_of(&format!("{}:{}", USER.0, USER.1))
    );
    let own = format!("Origin: http://{addr}");
    assert_eq!(upgrade(&addr, "/api/live", &[&own]).status, 401);
    let wrong = format!(
        "Authorization: Basic {}",
        base64_of(&format!("{}:wrong", USER.0))
    );
    assert_eq!(upgrade(&addr, "/api/live", &[&wrong, &own]).status, 401);
    let foreign = upgrade(&addr, "/api/live", &[&basic, "Origin: http://evil.example"]);
    assert_eq!(foreign.status, 403, "{}", foreign.head);
    let mut socket = upgrade(&addr, "/api/live", &[&basic, &own])
        .socket
        .expect("101 with the login");
    socket.show(&["demo-1/cam0", "nope/cam0"]);
    let mut frames = Vec::new();
    let mut said = Vec::new();
    while frames.len() < 5 {
        match socket.frame() {
            Ok(frame) => frames.push(frame),
            Err(text) if said.is_empty() => said.push(text),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        said[0].contains("no camera nope/cam0"),
        "the unknown camera is named: {said:?}"
    );
    for pair in frames.windows(2) {
        assert!(pair[1].seq > pair[0].seq, "newer frames each time");
    }
    for frame in &frames {
        assert_eq!(frame.camera, "demo-1/cam0");
        assert!(frame.jpeg.starts_with(&[0xFF, 0xD8]), "a JPEG");
        let age_us = shared::time::now_us().saturating_sub(frame.captured_at_us);
        assert!(age_us < 5_000_000, "capture time {age_us} µs ago");
    }

    let secure = Demo::start_secure("1");
    let host = secure.dashboard.trim_start_matches("https://").to_owned();
    let handshake = |extra: &[&str]| {
        // The CA only: the login, when there is one, is in `extra`.
        let mut args: Vec<String> = secure.curl_args[..2].to_vec();
        assert_eq!(args[0], "--cacert");
        for h in [
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ]
        .iter()
        .chain(extra)
        {
            args.extend(["-H".to_owned(), h.to_string()]);
        }
        args.extend(["--http1.1", "--max-time", "3", "-o", "/dev/null"].map(String::from));
        args.push(format!("{}/api/live", secure.dashboard));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args).status
    };
    let own = format!("Origin: https://{host}");
    wait_for("the secure dashboard", SECS(30), || {
        (handshake(&[&own]) == 401).then_some(())
    });
    assert_eq!(handshake(&[&basic, "Origin: https://evil.example"]), 403);
    assert_eq!(handshake(&[&basic, &own]), 101);
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
