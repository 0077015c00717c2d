//! camera-node end to end: real mosquitto, real ffmpeg as the camera, the
//! real binary, checked with mosquitto_sub/pub and a protocol v1 client.

mod common;

use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn node_args<'a>(broker: &'a str, node_id: &'a str, source: &'a str) -> Vec<&'a str> {
    vec![
        "--broker",
        broker,
        "--node-id",
        node_id,
        "--source",
        source,
        "--tcp-port",
        "0",
        "--advertise-host",
        "127.0.0.1",
        "--no-cpu-temp",
    ]
}

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

/// A stand-in for rpicam-vid/libcamera-vid: checks the contract's flags,
/// records its pid, then streams MJPEG at the size and rate it was asked for.
fn fake_camera_script(dir: &TempDir, name: &str) {
    require("ffmpeg", "ffmpeg");
    let log = dir.path("invocations");
    dir.script(
        name,
        &format!(
            r#"#!/bin/sh
args=" $* "
echo "$$ $*" >> '{log}'
for want in "-t 0" "-n" "--codec mjpeg" "--flush" "-o -" "--width 320" "--height 240" "--framerate 10" "-q 70"; do
  case "$args" in *" $want "*) ;; *) echo "fake {name}: missing '$want' in:$args" >&2; exit 3;; esac
done
exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=10 -f mjpeg -q:v 5 -huffman default -
"#,
            log = log.display()
        ),
    );
}

/// A node on `--source rpicam` with a fake `program` first on PATH; the
/// directory holds the fake's `invocations` log.
fn start_on_fake_camera(url: &str, node_id: &str, program: &str) -> (Node, TempDir) {
    let bin = TempDir::new("fakecam");
    fake_camera_script(&bin, program);
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let size = words("--width 320 --height 240 --fps 10 --quality 70");
    let node = Node::start_with_env(
        &[node_args(url, node_id, "rpicam"), size].concat(),
        &[("PATH", &path)],
    );
    (node, bin)
}

fn invocations(dir: &TempDir) -> Vec<String> {
    std::fs::read_to_string(dir.path("invocations"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
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
fn a_killed_camera_is_restarted_and_sequence_numbers_keep_counting() {
    let broker = Broker::start();
    let url = broker.url();
    let (node, bin) = start_on_fake_camera(&url, "pi-kill", "rpicam-vid");
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    let before = client.next().seq;
    let pid = invocations(&bin)[0].split(' ').next().unwrap().to_owned();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("a second camera start", SECS(15), || {
        (invocations(&bin).len() >= 2).then_some(())
    });
    // Frames from the new process carry later sequence numbers.
    let after = wait_for("frames from the restarted camera", SECS(15), || {
        let f = client.next();
        (f.seq > before + 15).then_some(f.seq)
    });
    assert!(after > before);
    node.wait_log("restarting in", SECS(5));
}

#[test]
fn a_stalled_camera_is_restarted_by_the_watchdog_and_its_group_killed() {
    require("ffmpeg", "ffmpeg");
    let broker = Broker::start();
    let url = broker.url();
    let dir = TempDir::new("stall");
    let pids = dir.path("pids");
    // Ten frames, then alive and silent, holding stdout open.
    let script = dir.script(
        "stall.sh",
        &format!(
            "#!/bin/sh\nffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=160x120:rate=10 -frames:v 10 -f mjpeg -\n\
             sleep 600 &\necho $! >> '{}'\nwait\n",
            pids.display()
        ),
    );
    let source = format!("cmd:{}", script.display());
    let args = [
        node_args(&url, "pi-stall", &source),
        vec!["--watchdog-seconds", "1"],
    ]
    .concat();
    let node = Node::start(&args);
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    client.next();
    wait_for("a second start after the stall", SECS(20), || {
        (std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2)
            .then_some(())
    });
    node.wait_log("watchdog", SECS(5));
    let first: u32 = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    wait_for("the stalled camera's child to be killed", SECS(10), || {
        (!is_alive(first)).then_some(())
    });
    // The first run made frames 0..=9; later numbers come from the second run.
    wait_for("a frame from the restarted camera", SECS(10), || {
        (client.next().seq >= 10).then_some(())
    });
}

#[test]
fn a_viewer_that_never_reads_slows_no_one_and_costs_no_memory() {
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
    let first = fast.next().seq;
    let mut last = first;
    for _ in 0..150 {
        let f = fast.next();
        assert_eq!(jpeg_size(&f.jpeg), (640, 480));
        last = f.seq;
    }
    let span = last - first;
    assert!(
        span <= 165,
        "the reading viewer missed {} of {span} frames",
        span - 150
    );
    let rss_after = node.rss_kib();
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB with stalled viewers"
    );
    drop(stalled);
}

#[test]
fn the_node_reannounces_after_a_broker_restart() {
    let mut broker = Broker::start();
    let url = broker.url();
    let node = Node::start(
        &[
            node_args(&url, "pi-bounce", "test"),
            vec!["--width", "160", "--height", "120"],
        ]
        .concat(),
    );
    broker.wait_status("pi-bounce", "online");
    let port = node.tcp_port("cam0");
    broker.stop();
    // Frames keep flowing while the broker is away.
    let mut client = FrameClient::connect(port);
    client.next();
    // The new broker keeps nothing (no persistence): what is retained there
    // now, the node published again.
    broker.restart();
    broker.wait_status("pi-bounce", "online");
    assert_eq!(
        broker.node_info("pi-bounce").cameras[0].tcp,
        format!("127.0.0.1:{port}")
    );
}

#[test]
fn sigterm_leaves_offline_and_no_camera_process() {
    let broker = Broker::start();
    let url = broker.url();
    let (mut node, bin) = start_on_fake_camera(&url, "pi-stop", "rpicam-vid");
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    client.next();
    broker.wait_status("pi-stop", "online");
    let camera_pid: u32 = invocations(&bin)[0]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    node.signal("TERM");
    let status = node.wait_exit(SECS(15));
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        broker.retained("camfleet/node/pi-stop/status").as_deref(),
        Some("offline")
    );
    assert!(
        !is_alive(camera_pid),
        "the camera process must not outlive the node"
    );
    let log = node.log();
    let order = [
        "shutdown 1/3",
        "shutdown 2/3",
        "shutdown 3/3",
        "shutdown complete",
    ]
    .map(|s| log.find(s));
    assert!(
        order.iter().all(Option::is_some) && order.is_sorted(),
        "shutdown steps in order:\n{log}"
    );
}

#[test]
fn a_second_signal_exits_at_once_and_kills_the_camera() {
    let broker = Broker::start();
    let url = broker.url();
    let dir = TempDir::new("stubborn");
    let pids = dir.path("pids");
    let frame = dir.path("frame.jpg");
    make_mjpeg(&frame, "160x120", 1);
    // A camera that ignores SIGTERM (cat and sleep inherit the ignore), so
    // the orderly shutdown has to wait for it.
    let script = dir.script(
        "stubborn.sh",
        &format!(
            "#!/bin/sh\ntrap '' TERM\necho $$ >> '{}'\nwhile :; do cat '{}'; sleep 0.1; done\n",
            pids.display(),
            frame.display()
        ),
    );
    // exec: the trapping shell itself must lead the process group.
    let source = format!("cmd:exec {}", script.display());
    let mut node = Node::start(&node_args(&url, "pi-twice", &source));
    FrameClient::connect(node.tcp_port("cam0")).next();
    let camera_pid: u32 = std::fs::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    node.signal("INT");
    node.wait_log("shutting down", SECS(5));
    node.signal("INT");
    let status = node.wait_exit(SECS(5));
    assert_eq!(status.code(), Some(130));
    wait_for("the camera to be killed", SECS(5), || {
        (!is_alive(camera_pid)).then_some(())
    });
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

#[test]
fn startup_publishes_online_without_a_spurious_offline() {
    // The flap this guards against (a connect dropped half-way, so the broker
    // publishes the last will) was a race; six nodes make it show up.
    let broker = Broker::start();
    let url = broker.url();
    let watcher = Watcher::start(&broker, "camfleet/node/+/status");
    let ids: Vec<String> = (0..6).map(|i| format!("pi-fresh{i}")).collect();
    let _nodes: Vec<Node> = ids
        .iter()
        .map(|id| {
            Node::start(
                &[
                    node_args(&url, id, "test"),
                    words("--width 160 --height 120"),
                ]
                .concat(),
            )
        })
        .collect();
    for id in &ids {
        broker.wait_status(id, "online");
        let prefix = format!("camfleet/node/{id}/status ");
        let statuses: Vec<String> = watcher
            .seen()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        assert_eq!(
            statuses,
            ["online"],
            "{id}: a starting node must not flap through its last will"
        );
    }
}
