//! Frames through relays: four hops down, the frames and recordings are
//! the node's exactly; a child that stops reading slows no other child and
//! costs the relay no memory; a recording through a relay that dies lacks
//! only the frames it reports missed. Real mosquitto, node and viewers.

use std::collections::BTreeMap;
use std::time::Instant;

use testkit::viewers::*;
use testkit::*;

mod relay_common;

use relay_common::*;

#[test]
fn four_hops_down_the_frames_and_recordings_are_the_nodes_exactly() {
    let broker = Broker::start();
    // Groups of one: a chain node -> r1 -> r2 -> r3 -> r4.
    let node = relay_node(&broker, "320x240", "1");
    let dirs: Vec<TempDir> = (0..5).map(|i| TempDir::new(&format!("hops-{i}"))).collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs[..4].iter().enumerate() {
        let id = format!("r{}", i + 1);
        // r3 only passes the camera on (a relay that neither records nor displays).
        let mut args = vec!["--relay", "127.0.0.1", "--segment-seconds", "2"];
        if i == 2 {
            args.push("--no-record");
        }
        relays.push(Viewer::start_as(&broker, &dir.0, &id, &args));
        wait_for(&format!("{id} in the plan"), SECS(30), || {
            retained_plan(&broker).filter(|p| p.viewers.contains_key(&id))
        });
    }
    // Without --relay: not in the plan, straight from the node.
    let direct = Viewer::start_as(&broker, &dirs[4].0, "direct", &["--segment-seconds", "2"]);
    let plan = retained_plan(&broker).unwrap();
    assert_eq!(plan.viewers["r4"].depth, 4, "{plan:?}");
    wait_for("r4 receiving through r3", SECS(30), || {
        relays[3].log().contains("(relay r3)").then_some(())
    });

    // A client four hops down and one on the node see the same frames.
    let mut far = FrameClient::connect(relay_port(&broker, "r4"));
    let mut near = FrameClient::connect(node.tcp_port("cam0"));
    let from_node: BTreeMap<u64, (u64, Vec<u8>)> = (0..30)
        .map(|_| near.next())
        .map(|f| (f.seq, (f.captured_at_us, f.jpeg)))
        .collect();
    let mut compared = 0;
    for _ in 0..40 {
        let f = far.next();
        if let Some((at, jpeg)) = from_node.get(&f.seq) {
            assert_eq!(
                (f.captured_at_us, &f.jpeg),
                (*at, jpeg),
                "frame {} differs 4 hops down",
                f.seq
            );
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} frames in both");

    // A session: r2 (two hops down) records what the direct viewer records.
    broker.publish("command/rec", "start");
    wait_for("three closed segments each", SECS(40), || {
        [&dirs[1], &dirs[4]]
            .iter()
            .all(|d| files(&d.0, ".mp4").len() >= 3)
            .then_some(())
    });
    broker.publish("command/rec", "stop");
    for (i, dir) in [(1, &dirs[1]), (4, &dirs[4])] {
        let id = if i == 4 {
            "direct".to_owned()
        } else {
            format!("r{}", i + 1)
        };
        wait_for(&format!("{id} idle"), SECS(20), || {
            let state = broker.retained(&format!("camfleet/viewer/{id}/recording"))?;
            (state.contains("\"idle\"") && files(&dir.0, ".part").is_empty()).then_some(())
        });
    }
    assert!(
        files(&dirs[2].0, ".mp4").is_empty(),
        "r3 recorded with --no-record"
    );
    // The first segment is named for each viewer's first frame; the rest
    // are cut on the same boundaries and must hold the same samples.
    let same = assert_same_segments(&dirs[1].0, &dirs[4].0, "two hops down");
    eprintln!("{same} segments identical two hops down and direct");
    drop(direct);
}

#[test]
fn a_child_that_stops_reading_slows_no_other_child_and_costs_the_relay_no_memory() {
    let broker = Broker::start();
    let _node = relay_node(&broker, "1280x720", "3");
    let dir = TempDir::new("slow-child");
    let relay = Viewer::start_as(&broker, &dir.0, "r1", &["--relay", "127.0.0.1"]);
    wait_for("r1 in the plan", SECS(30), || {
        retained_plan(&broker).filter(|p| p.viewers.contains_key("r1"))
    });
    let port = relay_port(&broker, "r1");
    let rss = || rss_kib(relay.child.id());
    let mut readers: Vec<FrameClient> = (0..2).map(|_| FrameClient::connect(port)).collect();
    for r in &mut readers {
        r.next();
    }
    let stalled_child = FrameClient::stalled(port);
    let before = rss();
    // Each reader on its own thread for 15 s of a 10 fps camera.
    let counts: Vec<usize> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n = 0;
                while start.elapsed() < SECS(15) {
                    r.next();
                    n += 1;
                }
                n
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let after = rss();
    eprintln!("readers got {counts:?} frames in 15 s; relay RSS {before} -> {after} KiB");
    // The relay's figures list its three children with what each skipped.
    let stats = broker.sub("camfleet/viewer/r1/relay/stats", 1, 15);
    let stats: shared::relay::RelayStats =
        serde_json::from_str(&stats.first().expect("relay figures").1).unwrap();
    eprintln!(
        "frames each child passed over: {:?}",
        stats.cameras[0].skipped_by_child
    );
    // The readers have gone; the child that never reads is still there.
    let stalled = stalled_child.local_addr().unwrap().to_string();
    assert!(
        stats.cameras[0].skipped_by_child.contains_key(&stalled),
        "{stats:?}"
    );
    assert!(
        counts.iter().all(|&n| n >= 142),
        "a reader fell under 95% of 150 frames: {counts:?}"
    );
    assert!(
        after < before + 16 * 1024,
        "the relay grew from {before} to {after} KiB"
    );
}

#[test]
fn a_recording_through_a_relay_that_dies_lacks_only_the_frames_it_reports_missed() {
    let broker = Broker::start();
    let _node = relay_node(&broker, "320x240", "1");
    let dirs: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("missed-{i}")))
        .collect();
    let seg = ["--segment-seconds", "2"];
    let mut r1 = Viewer::start_as(
        &broker,
        &dirs[0].0,
        "r1",
        &[&["--relay", "127.0.0.1", "--no-record"][..], &seg].concat(),
    );
    wait_for("r1 in the plan", SECS(30), || {
        retained_plan(&broker).filter(|p| p.viewers.contains_key("r1"))
    });
    let r2 = Viewer::start_as(
        &broker,
        &dirs[1].0,
        "r2",
        &[&["--relay", "127.0.0.1"][..], &seg].concat(),
    );
    let _direct = Viewer::start_as(&broker, &dirs[2].0, "direct", &seg);
    r2.wait_log("(relay r1)", SECS(30));
    let state = |id: &str| -> Option<shared::messages::RecordingState> {
        serde_json::from_str(&broker.retained(&format!("camfleet/viewer/{id}/recording"))?).ok()
    };
    broker.publish("command/rec", "start");
    // Published as the command is taken: what was missed before the session.
    let missed_before = wait_for("r2 recording", SECS(20), || {
        state("r2")
            .filter(|s| s.state == "recording")
            .map(|s| s.links.first().map_or(0, |l| l.missed))
    });
    wait_for("a closed segment through r1", SECS(30), || {
        (!files(&dirs[1].0, ".mp4").is_empty()).then_some(())
    });
    let _ = r1.child.kill();
    let _ = r1.child.wait();
    r2.wait_log("switching to the backup at once", SECS(10));
    let before = files(&dirs[1].0, ".mp4").len();
    wait_for("two more segments from the node", SECS(30), || {
        (files(&dirs[1].0, ".mp4").len() >= before + 2).then_some(())
    });
    broker.publish("command/rec", "stop");
    let r2_state = wait_for("both idle", SECS(20), || {
        let (a, b) = (state("r2")?, state("direct")?);
        let done = a.state == "idle" && b.state == "idle";
        let closed = files(&dirs[1].0, ".part").is_empty() && files(&dirs[2].0, ".part").is_empty();
        (done && closed).then_some(a)
    });
    let all =
        |d: &TempDir| -> Vec<(i64, String)> { recorded(&d.0).into_values().flatten().collect() };
    let (relayed, straight) = (all(&dirs[1]), all(&dirs[2]));
    let from = relayed[0].0.max(straight[0].0);
    let to = relayed[relayed.len() - 1]
        .0
        .min(straight[straight.len() - 1].0);
    let inside = |v: &[(i64, String)]| -> BTreeMap<String, i64> {
        v.iter()
            .filter(|(t, _)| (from..=to).contains(t))
            .map(|(t, h)| (h.clone(), *t))
            .collect()
    };
    let (relayed, straight) = (inside(&relayed), inside(&straight));
    for (h, t) in &relayed {
        assert_eq!(
            straight.get(h),
            Some(t),
            "a frame through the relay that the node's viewer has not, or at another time"
        );
    }
    let lacking = straight
        .keys()
        .filter(|h| !relayed.contains_key(*h))
        .count() as u64;
    let missed = r2_state.links.first().map_or(0, |l| l.missed) - missed_before;
    eprintln!(
        "{} frames in both; {lacking} lacking through the relay, {missed} reported missed",
        relayed.len()
    );
    assert_eq!(
        lacking, missed,
        "frames lacking must be the ones reported missed"
    );
}
