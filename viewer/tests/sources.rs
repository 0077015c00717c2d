//! A camera added to a node at runtime is a camera of the fleet like any
//! other: an RTMP "drone" (nginx's RTMP module, ffmpeg publishing H.264)
//! added over the node's API while the viewer runs is discovered,
//! connected and recorded on `command/rec`.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::common::api::{add, wait_state as wait_camera_state};
use support::common::rtmp::{drone, stop, Nginx};
use support::common::*;
use support::*;

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
