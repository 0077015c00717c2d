//! RTMP cameras added over the node's API: an RTMP server (nginx with its
//! RTMP module) fed by an ffmpeg "drone", and the node's own RTMP listener.
//! Checked as a user would: curl on the API, frames over TCP, RTSP and
//! HTTP, /proc for leftover processes.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::api::*;
use testkit::rtmp::{drone, stop, Nginx};
use testkit::*;

/// A test-pattern node whose camera watchdog fires after 2 s.
fn watched_node(broker: &Broker, id: &str) -> Node {
    Node::start(
        &[
            node_args(&broker.url(), id, "test"),
            words("--watchdog-seconds 2"),
        ]
        .concat(),
    )
}

fn rtmp_camera_comes_back_without_help(idle_streams: bool) {
    let broker = Broker::start();
    let nginx = Nginx::start(idle_streams);
    let url = format!("rtmp://127.0.0.1:{}/live/d1", nginx.port);
    let publisher = drone(&url);
    let node = watched_node(&broker, "src-rtmp");
    let started = Instant::now();
    // 216 lines: RTP/JPEG counts picture sizes in blocks of 8.
    let v = add(
        &node,
        json!({"id": "drone1", "source": url, "width": 384, "height": 216, "fps": 10}),
    );
    let port = tcp_port(&v);
    wait_state(&node, "drone1", &["running"], Duration::from_secs(30));
    eprintln!(
        "POST to running (RTMP H.264 conversion): {:?}",
        started.elapsed()
    );
    let mut viewer = FrameClient::connect(port);
    assert_eq!(jpeg_size(&viewer.next().jpeg), (384, 216));
    assert_eq!(
        rtsp_decode(&format!("{}/drone1", node.rtsp_base()), "tcp", 2),
        384 * 216 * 2
    );
    let snapshot = curl(&[&format!("{}/cameras/drone1/snapshot.jpg", node.http_base())]);
    assert_eq!(jpeg_size(&snapshot.body), (384, 216));

    // The drone lands: the watchdog or the converter's exit notices.
    stop(publisher);
    let gone = Instant::now();
    let v = wait_state(
        &node,
        "drone1",
        &["stalled", "backoff", "starting"],
        Duration::from_secs(10),
    );
    eprintln!(
        "publisher gone -> {} after {:?}",
        v["state"],
        gone.elapsed()
    );
    let v = wait_for("a restart counted", Duration::from_secs(20), || {
        let v = view(&node, "drone1");
        (v["restarts"].as_u64() >= Some(1)).then_some(v)
    });
    // Which way the converter went: hung (the watchdog ended it) or exited.
    let ended = v["runs"][0]["end"].as_str().unwrap_or("").to_owned();
    if idle_streams {
        assert!(ended.contains("watchdog"), "a hung converter: {v}");
    } else {
        assert!(!ended.contains("watchdog"), "an exited converter: {v}");
    }
    // It takes off again: running with no API call.
    let publisher = drone(&url);
    wait_state(&node, "drone1", &["running"], Duration::from_secs(45));
    let mut viewer = FrameClient::connect(port);
    assert_eq!(jpeg_size(&viewer.next().jpeg), (384, 216));
    stop(publisher);
    let lines = api(&node, "GET", "/api/v1/cameras/drone1/log", None, None).json();
    assert!(lines["lines"].as_array().unwrap().len() > 3, "{lines}");
    // The publisher gone, its converter exits; the node reaps it.
    wait_for("no zombie children", Duration::from_secs(10), || {
        zombie_children(node.pid()).is_empty().then_some(())
    });
}

#[test]
fn an_rtmp_drone_is_converted_and_comes_back_when_its_converter_exits() {
    rtmp_camera_comes_back_without_help(false);
}

#[test]
fn an_rtmp_drone_comes_back_when_idle_streams_leave_its_converter_hanging() {
    rtmp_camera_comes_back_without_help(true);
}

#[test]
fn an_rtmp_listener_waits_for_its_publisher_without_restarting() {
    let broker = Broker::start();
    let node = watched_node(&broker, "src-listen");
    let port = free_port();
    let listen = format!("rtmp-listen://127.0.0.1:{port}/live/key");
    add(
        &node,
        json!({"id": "pushed", "source": listen, "width": 320, "height": 180}),
    );
    wait_state(&node, "pushed", &["waiting"], Duration::from_secs(10));
    // Longer than the watchdog and the first-frame grace: still waiting.
    let quiet_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < quiet_until {
        let v = view(&node, "pushed");
        assert_eq!(
            (v["state"].as_str(), v["restarts"].as_u64()),
            (Some("waiting"), Some(0)),
            "{v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let publisher = drone(&format!("rtmp://127.0.0.1:{port}/live/key"));
    let v = wait_state(&node, "pushed", &["running"], Duration::from_secs(20));
    let mut viewer = FrameClient::connect(tcp_port(&v));
    assert_eq!(jpeg_size(&viewer.next().jpeg), (320, 180));
    stop(publisher);
    let v = wait_state(&node, "pushed", &["waiting"], Duration::from_secs(15));
    assert_eq!(
        v["restarts"].as_u64(),
        Some(0),
        "a publisher leaving is no failure: {v}"
    );
    assert!(
        zombie_children(node.pid()).is_empty(),
        "{:?}",
        zombie_children(node.pid())
    );
    // The converter dies with the node, even a node killed outright.
    let converter = wait_for("the converter's pid", Duration::from_secs(10), || {
        view(&node, "pushed")["converter"]["pid"].as_u64()
    }) as u32;
    assert!(is_alive(converter));
    node.signal("KILL");
    wait_for(
        "the converter gone with the node",
        Duration::from_secs(10),
        || (!is_alive(converter)).then_some(()),
    );
}
