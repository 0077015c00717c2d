//! A camera added to a node at runtime is a camera of the fleet like any
//! other: an RTMP "drone" (nginx's RTMP module, ffmpeg publishing H.264)
//! added over the node's API while the viewer runs is discovered,
//! connected and recorded on `command/rec`. And the dashboard's Sources
//! page in Chromium adds, shows, opens the log of and deletes one.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use testkit::api::{add, api, wait_state as wait_camera_state};
use testkit::browser::Browser;
use testkit::rtmp::{drone, stop, Nginx};
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn an_rtmp_drone_added_over_the_api_is_discovered_and_recorded() {
    let broker = Broker::start();
    let nginx = Nginx::start(false);
    let url = format!("rtmp://127.0.0.1:{}/live/d1", nginx.port);
    let publisher = drone(&url);
    let node = test_node(&broker, "pi-base", "160x120");
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    viewer.wait_log("camera{camera=pi-base/cam0}: connected", SECS(20));

    add(
        &node,
        json!({"id": "drone1", "source": url, "width": 384, "height": 216, "fps": 10}),
    );
    wait_camera_state(&node, "drone1", &["running"], SECS(30));
    viewer.wait_log("camera{camera=pi-base/drone1}: connected", SECS(20));
    broker.publish("command/rec", "start");
    // The second closed segment is a whole one (the first starts when
    // recording does).
    let segment = wait_for("two closed segments of the drone", SECS(30), || {
        files(&recordings.0, ".mp4")
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("drone1"))
            .nth(1)
    });
    broker.publish("command/rec", "stop");
    stop(publisher);
    require("ffprobe", "ffmpeg");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(&segment)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        info.contains("codec_name=mjpeg")
            && info.contains("width=384")
            && info.contains("height=216"),
        "{info}"
    );
    let frames: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("nb_read_frames="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(frames >= 15, "a 2 s segment at 10 fps: {info}");
}

#[test]
fn the_sources_page_adds_shows_logs_and_deletes_a_stream() {
    let broker = Broker::start();
    let token = "fleet-token-0123456789";
    let node = test_node_with(&broker, "pi-src", "320x240", &["--api-token", token]);
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &["--node-api-token", token]);
    viewer.wait_log("camera{camera=pi-src/cam0}: connected", SECS(20));
    let browser = Browser::start();
    browser.go(&format!("http://{}/sources", viewer.dashboard()));
    wait_for("the node in the form", SECS(20), || {
        let nodes =
            browser.run("return [...document.querySelectorAll('#node option')].map(o => o.value)");
        (nodes == json!(["pi-src"])).then_some(())
    });

    // The node's own MJPEG stream, as a new camera at another size.
    let source = format!("{}/cameras/cam0/stream.mjpg", node.http_base());
    browser.type_into("#id", "web1");
    browser.type_into("#source", &source);
    browser.type_into("#width", "160");
    browser.type_into("#height", "120");
    browser.click("#add button[type=submit]");
    let card = "[data-card='pi-src/web1']";
    wait_for("the new stream running in the list", SECS(30), || {
        let state = browser.run(&format!(
            "const c = document.querySelector(\"{card} .state\"); return c && c.textContent"
        ));
        (state == json!("running")).then_some(())
    });
    // Its live tile, drawn over the page's live WebSocket, keeps drawing
    // across the page's refreshes.
    let tile = "[data-camera='pi-src/web1']";
    let drawn = || {
        browser.run(&format!(
            "const t = document.querySelector(\"{tile}\"); const c = t && t.querySelector('canvas'); \
             return t ? [c.width, c.height, Number(t.dataset.frames || 0)] : null"
        ))
    };
    let first = wait_for("its live tile showing a picture", SECS(30), || {
        let now = drawn();
        (now[0] == 160 && now[1] == 120 && now[2].as_u64()? > 0).then(|| now[2].as_u64().unwrap())
    });
    wait_for("the tile drawing on after two refreshes", SECS(20), || {
        (drawn()[2].as_u64()? > first + 40).then_some(())
    });
    browser.click(&format!("{card} button.logs"));
    wait_for("its log open", SECS(10), || {
        let log = browser.run(&format!(
            "return document.querySelector(\"{card} pre\").textContent"
        ));
        log.as_str()
            .is_some_and(|t| t.contains("first frame"))
            .then_some(())
    });
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sources.png");
    std::fs::write(&shot, browser.page_png()).unwrap();
    eprintln!("Sources page screenshot: {}", shot.display());

    browser.run("window.confirm = () => true; return true");
    browser.click(&format!("{card} button.delete"));
    wait_for("the stream gone from the page", SECS(20), || {
        let left = browser.run(&format!(
            "return document.querySelectorAll(\"{card}\").length"
        ));
        (left == json!(0)).then_some(())
    });
    let gone = api(&node, "GET", "/api/v1/cameras/web1", None, None);
    assert_eq!(gone.status, 404, "deleted on the node: {}", gone.text());
    // The node took the calls only because the viewer passed its token.
    let refused = api(
        &node,
        "POST",
        "/api/v1/cameras",
        Some(json!({"source": "test"})),
        None,
    );
    assert_eq!(refused.status, 401);
    assert!(viewer
        .log()
        .contains("Sources page: POST /api/v1/cameras -> 201"));
}
