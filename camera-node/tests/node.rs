//! camera-node end to end: real mosquitto, real ffmpeg as the camera, the
//! real binary, checked with mosquitto_sub/pub and a protocol v1 client.

use std::time::Duration;

use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn ffmpeg_camera_is_announced_answers_discovery_and_streams() {
    let broker = Broker::start();
    let url = broker.url();
    let source = ffmpeg_camera(320, 240, 15);
    let node = Node::start(
        &[
            node_args(&url, "pi-test", &source),
            vec!["--width", "320", "--height", "240", "--fps", "15"],
        ]
        .concat(),
    );

    broker.wait_status("pi-test", "online");
    let info = broker.node_info("pi-test");
    let port = node.tcp_port("cam0");
    assert_eq!(info.node_id, "pi-test");
    assert_eq!(info.cameras.len(), 1);
    assert_eq!(info.cameras[0].tcp, format!("127.0.0.1:{port}"));
    assert_eq!(
        (
            info.cameras[0].width,
            info.cameras[0].height,
            info.cameras[0].fps
        ),
        (320, 240, 15)
    );

    // Discovery: publish requests until the answer shows up on response/getIP.
    let answers = std::thread::scope(|s| {
        let sub = s.spawn(|| broker.sub("response/getIP", 1, 15));
        wait_for("an answer on response/getIP", SECS(15), || {
            broker.publish("command/getIP", "?");
            sub.is_finished().then_some(())
        });
        sub.join().unwrap()
    });
    let answer: shared::messages::NodeInfo = serde_json::from_str(&answers[0].1).unwrap();
    assert_eq!(answer.cameras[0].tcp, info.cameras[0].tcp);

    let mut client = FrameClient::connect(port);
    let mut last = None;
    for _ in 0..20 {
        let f = client.next();
        if let Some(prev) = last {
            assert!(
                f.seq > prev,
                "sequence numbers must increase: {prev} then {}",
                f.seq
            );
        }
        last = Some(f.seq);
        let age_us = now_us() as i64 - f.captured_at_us as i64;
        assert!(
            (-1_000_000..5_000_000).contains(&age_us),
            "capture time {} is {age_us} us off",
            f.captured_at_us
        );
        assert_eq!(jpeg_size(&f.jpeg), (320, 240));
    }
}

fn rpicam_source_streams_through(program: &str) {
    let broker = Broker::start();
    let url = broker.url();
    let (node, bin) = start_on_fake_camera(&url, "pi-cam", program);
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    for _ in 0..5 {
        assert_eq!(jpeg_size(&client.next().jpeg), (320, 240));
    }
    let calls = invocations(&bin);
    assert_eq!(
        calls.len(),
        1,
        "the camera should have started once: {calls:?}"
    );
    assert!(
        node.log().contains(program),
        "the log should name {program}"
    );
}

#[test]
fn rpicam_source_runs_rpicam_vid_with_the_contract_flags() {
    rpicam_source_streams_through("rpicam-vid");
}

#[test]
fn rpicam_source_falls_back_to_libcamera_vid() {
    rpicam_source_streams_through("libcamera-vid");
}

#[test]
fn a_viewer_that_never_reads_for_a_minute_slows_no_one_and_costs_no_memory() {
    let broker = Broker::start();
    let url = broker.url();
    let source = ffmpeg_camera(640, 480, 30);
    let node = Node::start(&[node_args(&url, "pi-slow", &source), vec!["--fps", "30"]].concat());
    let port = node.tcp_port("cam0");
    let mut fast = FrameClient::connect(port);
    for _ in 0..30 {
        fast.next();
    }
    let rss_before = node.rss_kib();
    let stalled: Vec<_> = (0..4).map(|_| FrameClient::stalled(port)).collect();
    // A minute of frames: the stalled viewers outlast the node's 20 s
    // write limit, and memory is checked after they are cut off.
    const FRAMES: u64 = 60 * 30;
    let first = fast.next().seq;
    let mut last = first;
    for i in 0..FRAMES {
        let f = fast.next();
        if i % 300 == 0 {
            assert_eq!(jpeg_size(&f.jpeg), (640, 480));
        }
        last = f.seq;
    }
    let span = last - first;
    assert!(
        span <= FRAMES + FRAMES / 100,
        "the reading viewer missed {} of {span} frames",
        span - FRAMES
    );
    let rss_after = node.rss_kib();
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB with stalled viewers"
    );
    drop(stalled);
}

#[test]
fn several_cameras_from_a_config_file() {
    let broker = Broker::start();
    let dir = TempDir::new("multi");
    let config = dir.path("node.toml");
    write(
        &config,
        &format!(
            "node_id = 'pi-multi'\nbroker = '{}'\nadvertise_host = '127.0.0.1'\ntcp_port = 0\ncpu_temp = false\n\
             width = 160\nheight = 120\nfps = 10\n\n[[camera]]\nsource = 'test'\n\n[[camera]]\nid = 'garden'\nsource = 'test'\nwidth = 320\nheight = 240\n",
            broker.url()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let info = broker.node_info("pi-multi");
    let ids: Vec<_> = info
        .cameras
        .iter()
        .map(|c| (c.id.as_str(), c.width))
        .collect();
    assert_eq!(ids, [("cam0", 160), ("garden", 320)]);
    for (camera, size) in [("cam0", (160, 120)), ("garden", (320, 240))] {
        let mut client = FrameClient::connect(node.tcp_port(camera));
        assert_eq!(jpeg_size(&client.next().jpeg), size, "camera {camera}");
    }
}

#[test]
fn a_file_source_is_replayed_in_a_loop() {
    require("ffmpeg", "ffmpeg");
    let broker = Broker::start();
    let url = broker.url();
    let dir = TempDir::new("file");
    let file = dir.path("clip.mjpeg");
    make_mjpeg(&file, "160x120", 8);
    let source = format!("file:{}", file.display());
    let node = Node::start(&[node_args(&url, "pi-file", &source), vec!["--fps", "40"]].concat());
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    let seqs: Vec<u64> = (0..20)
        .map(|_| client.next())
        .inspect(|f| assert_eq!(jpeg_size(&f.jpeg), (160, 120)))
        .map(|f| f.seq)
        .collect();
    assert!(
        seqs.last().unwrap() - seqs[0] >= 19,
        "20 frames from an 8-frame file: {seqs:?}"
    );
}

#[test]
fn cpu_temperature_is_published_as_a_sensor() {
    let broker = Broker::start();
    let dir = TempDir::new("thermal");
    let temp = dir.path("temp");
    write(&temp, "51234\n");
    let config = dir.path("node.toml");
    write(&config, &format!("cpu_temp_path = '{}'\n", temp.display()));
    let url = broker.url();
    let _node = Node::start(&[
        "--config",
        config.to_str().unwrap(),
        "--broker",
        &url,
        "--node-id",
        "pi-warm",
        "--source",
        "test",
        "--width",
        "160",
        "--height",
        "120",
        "--tcp-port",
        "0",
    ]);
    let got = broker.sub("sensor/pi-warm/cpu_temp", 1, 25);
    assert_eq!(got.first().map(|(_, p)| p.as_str()), Some("51.2"));
    let stats = broker.sub("camfleet/node/pi-warm/stats", 1, 25);
    let stats: shared::messages::NodeStats = serde_json::from_str(&stats[0].1).unwrap();
    assert_eq!(stats.cameras[0].id, "cam0");
}

#[test]
fn an_mqtts_broker_is_reached_with_a_ca_file_and_a_wrong_ca_is_explained() {
    let (broker, ca) = Broker::start_tls();
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let ca = ca.to_str().unwrap();
    let _node = Node::start(
        &[
            node_args(&url, "pi-tls", "test"),
            vec!["--ca-file", ca, "--width", "160", "--height", "120"],
        ]
        .concat(),
    );
    broker.wait_status("pi-tls", "online");
    assert_eq!(broker.node_info("pi-tls").node_id, "pi-tls");
    // Trusting only the system CAs, the test CA's certificate is refused.
    let untrusting = Node::start(&node_args(&url, "pi-untrusted", "test"));
    untrusting.wait_log("UnknownIssuer", SECS(15));
}

#[test]
fn viewers_over_the_cap_are_refused_with_a_log_line() {
    use std::io::Read;
    let broker = Broker::start();
    let url = broker.url();
    let args = [
        node_args(&url, "pi-cap", "test"),
        vec!["--max-viewers", "1", "--width", "160", "--height", "120"],
    ]
    .concat();
    let node = Node::start(&args);
    let port = node.tcp_port("cam0");
    let mut first = FrameClient::connect(port);
    first.next();
    let mut second = FrameClient::stalled(port);
    second.set_read_timeout(Some(SECS(10))).unwrap();
    let mut buf = [0u8; 11];
    assert_eq!(
        second.read(&mut buf).unwrap(),
        0,
        "the node should close a viewer over the cap"
    );
    node.wait_log("refusing viewer: 1 viewers already connected", SECS(5));
    first.next();
    drop(first);
    // The slot is free again once the first viewer leaves.
    wait_for("a new viewer to be accepted", SECS(10), || {
        let mut again = FrameClient::stalled(port);
        again.set_read_timeout(Some(SECS(5))).unwrap();
        (again.read(&mut buf).unwrap_or(0) > 0).then_some(())
    });
}
