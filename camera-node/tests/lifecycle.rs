//! camera-node's life: a camera that dies or stalls is restarted, a broker
//! that goes away is rejoined, a signal stops everything in order and
//! leaves no camera process behind.

use std::time::Duration;

use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

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
    assert_shutdown_in_order(&log);
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

#[test]
fn a_node_stopped_for_8_s_keeps_its_healthy_camera() {
    let broker = Broker::start();
    let source = ffmpeg_camera(320, 240, 10);
    let node = Node::start(&node_args(&broker.url(), "pi-paused", &source));
    let port = node.tcp_port("cam0");
    let mut viewer = FrameClient::connect(port);
    viewer.next();
    // The whole machine pauses (a suspended VM, a debugger): the camera's
    // process group first, so the node has drained the pipe, then the
    // node. The node runs again first and finds no frame waiting.
    let camera = std::process::Command::new("pgrep")
        .args(["-P", &node.pid().to_string()])
        .output()
        .unwrap();
    let camera = String::from_utf8_lossy(&camera.stdout)
        .split_whitespace()
        .next()
        .expect("the camera process")
        .to_owned();
    let group = |signal: &str| {
        let ok = std::process::Command::new("kill")
            .args([signal, "--", &format!("-{camera}")])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} -{camera}");
    };
    group("-STOP");
    node.signal("STOP");
    // The length of the pause, not a wait for anything.
    std::thread::sleep(SECS(8));
    node.signal("CONT");
    node.wait_log("did not run for", SECS(10));
    group("-CONT");
    let mut viewer = FrameClient::connect(port);
    let first = viewer.next().seq;
    let later = (0..20).map(|_| viewer.next().seq).last().unwrap();
    assert!(later > first);
    let log = node.log();
    assert!(
        !log.contains("(watchdog)"),
        "the camera was restarted after the pause:\n{log}"
    );
}
