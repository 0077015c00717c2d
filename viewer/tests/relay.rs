//! Relaying: seven viewers watch one camera; the node plans them in groups
//! of three and feeds only the first head; the viewers take the camera
//! from each other as planned, and when a head is killed its members are
//! receiving again within a second. Real mosquitto, node and viewers.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shared::relay::{feeds_of, RelayAnnounce, RelayPlan, Topology};
use support::common::*;
use support::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const PLAN: &str = "camfleet/node/pi-relay/relay/cam0/plan";

fn retained_plan(broker: &Broker) -> Option<RelayPlan> {
    broker
        .retained(PLAN)
        .map(|p| serde_json::from_str(&p).expect("RelayPlan JSON"))
}

/// `camfleet_viewers{camera="cam0",protocol="tcp"}` on the node.
fn node_tcp_viewers(node: &Node) -> f64 {
    let text = curl(&[&format!("{}/metrics", node.http_base())]).text();
    text.lines()
        .find(|l| l.starts_with(r#"camfleet_viewers{camera="cam0",protocol="tcp"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// How many viewers take the camera from `id`.
fn children_of(plan: &RelayPlan, id: &str) -> usize {
    plan.viewers
        .values()
        .filter(|e| e.parent.as_deref() == Some(id))
        .count()
}

/// The relay address a viewer announces for the camera.
fn relay_port(broker: &Broker, viewer: &str) -> u16 {
    let a: RelayAnnounce = serde_json::from_str(
        &broker
            .retained(&format!("camfleet/viewer/{viewer}/relay"))
            .expect("a relay announcement"),
    )
    .unwrap();
    let addr = a.cameras[0].addr.clone().expect("a relay address");
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn seven_viewers_pass_a_camera_on_in_groups_of_three_and_heal_when_a_head_dies() {
    let broker = Broker::start();
    let url = broker.url();
    let node = Node::start(
        &[
            node_args(&url, "pi-relay", "test"),
            vec!["--width", "320", "--height", "240", "--fps", "10"],
            vec!["--relay-max-member", "3"],
        ]
        .concat(),
    );
    let dirs: Vec<TempDir> = (1..=7)
        .map(|i| TempDir::new(&format!("relay-v{i}")))
        .collect();
    let mut viewers: BTreeMap<String, Viewer> = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = format!("v{}", i + 1);
        let v = Viewer::start_as(&broker, &dir.0, &id, &["--relay", "127.0.0.1"]);
        viewers.insert(id, v);
    }

    // The plan as specified: a chain of groups of three.
    let plan = wait_for("a plan with all seven viewers", SECS(30), || {
        retained_plan(&broker).filter(|p| p.viewers.len() == 7)
    });
    assert_eq!((plan.max_member, plan.topology), (3, Topology::Chain));
    let feeds = feeds_of(&plan.layout, 3, Topology::Chain);
    let mut children: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, entry) in &plan.viewers {
        assert_eq!(entry.parent, feeds[id].parent, "{id}: {plan:?}");
        if let Some(p) = &entry.parent {
            *children.entry(p).or_default() += 1;
        }
    }
    assert_eq!(children.values().max(), Some(&3), "{plan:?}");
    let fed_by_node: Vec<&String> = plan
        .viewers
        .iter()
        .filter(|(_, e)| e.parent.is_none())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(fed_by_node.len(), 1, "{plan:?}");

    // Every viewer receives the camera through its planned parent.
    for (id, entry) in &plan.viewers {
        let topic = format!("camfleet/viewer/{id}/recording");
        wait_for(
            &format!("{id} on its planned parent with frames"),
            SECS(40),
            || {
                let state: shared::messages::RecordingState =
                    serde_json::from_str(&broker.retained(&topic)?).ok()?;
                let link = state.links.first()?;
                (link.via == entry.parent && link.fps > 5.0).then_some(())
            },
        );
    }
    // The node serves the one head it feeds, whatever the audience.
    wait_for("the node serving one viewer over TCP", SECS(20), || {
        (node_tcp_viewers(&node) == 1.0).then_some(())
    });

    // kill -9 a head that a relay feeds, and watch one of its members.
    let (head, _) = plan
        .viewers
        .iter()
        .find(|(id, e)| e.parent.is_some() && children.get(id.as_str()).copied().unwrap_or(0) > 0)
        .expect("a second head");
    let member = plan
        .viewers
        .iter()
        .find(|(id, e)| {
            e.parent.as_deref() == Some(head.as_str()) && !children.contains_key(id.as_str())
        })
        .map(|(id, _)| id.clone())
        .expect("a member of that head");
    let mut watch = FrameClient::connect(relay_port(&broker, &member));
    for _ in 0..5 {
        watch.next();
    }
    let head_viewer = viewers.get_mut(head.as_str()).unwrap();
    let killed_at = Instant::now();
    let _ = head_viewer.child.kill();
    let _ = head_viewer.child.wait();
    // The member's own relay output shows when frames reach it again.
    let mut last = Instant::now();
    let mut worst = Duration::ZERO;
    let mut seqs = Vec::new();
    while last.duration_since(killed_at) < SECS(3) {
        let frame = watch.next();
        let now = Instant::now();
        worst = worst.max(now - last);
        last = now;
        seqs.push(frame.seq);
    }
    eprintln!(
        "{member}: longest wait for a frame after killing {head}: {:.0} ms",
        worst.as_secs_f64() * 1000.0
    );
    assert!(
        worst < SECS(1),
        "{member} waited {worst:?} for frames after {head} was killed"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "frames again or out of order: {seqs:?}"
    );
    // The node plans without the dead head once its last will arrives.
    let healed = wait_for("a plan without the killed head", SECS(20), || {
        retained_plan(&broker).filter(|p| !p.viewers.contains_key(head.as_str()))
    });
    assert!(healed.epoch > plan.epoch);
    assert_eq!(healed.viewers.len(), 6);
}

/// Frames of a viewer's relay output for `span` after `from`: the longest
/// wait between two, and whether sequence numbers only grew.
fn longest_wait(watch: &mut FrameClient, from: Instant, span: Duration) -> Duration {
    let (mut last, mut worst, mut seq) = (Instant::now(), Duration::ZERO, None);
    while last.duration_since(from) < span {
        let frame = watch.next();
        let now = Instant::now();
        worst = worst.max(now - last);
        last = now;
        assert!(seq < Some(frame.seq), "frame {} after {seq:?}", frame.seq);
        seq = Some(frame.seq);
    }
    worst
}

#[test]
fn a_frozen_head_is_left_within_the_stall_limit_and_bad_payloads_are_refused() {
    let broker = Broker::start();
    let url = broker.url();
    let node = Node::start(
        &[
            node_args(&url, "pi-relay", "test"),
            vec!["--width", "320", "--height", "240", "--fps", "10"],
            vec!["--relay-max-member", "2"],
        ]
        .concat(),
    );
    // Payloads the node must refuse with a reason, not act on.
    broker.publish_retained("camfleet/viewer/bogus/relay", "{not json");
    broker.publish_retained(
        "camfleet/viewer/future/relay",
        r#"{"v":2,"viewer_id":"future","state":"active","cameras":[]}"#,
    );
    node.wait_log("camfleet/viewer/bogus/relay", SECS(20));
    node.wait_log("relay announcement version 2", SECS(20));

    let dirs: Vec<TempDir> = (1..=4)
        .map(|i| TempDir::new(&format!("freeze-v{i}")))
        .collect();
    let mut viewers: BTreeMap<String, Viewer> = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = format!("v{}", i + 1);
        viewers.insert(
            id.clone(),
            Viewer::start_as(&broker, &dir.0, &id, &["--relay", "127.0.0.1"]),
        );
    }
    let plan = wait_for("a plan with four viewers", SECS(30), || {
        retained_plan(&broker).filter(|p| p.viewers.len() == 4)
    });
    // Groups of two: the second head, fed by the first, feeds its member.
    let head = plan
        .viewers
        .iter()
        .find(|(id, e)| e.parent.is_some() && children_of(&plan, id) > 0)
        .map(|(id, _)| id.clone())
        .expect("a head fed by a relay");
    let member = plan
        .viewers
        .iter()
        .find(|(_, e)| e.parent.as_deref() == Some(head.as_str()))
        .map(|(id, _)| id.clone())
        .expect("a member of that head");
    let mut watch = FrameClient::connect(relay_port(&broker, &member));
    wait_for(
        &format!("{member} receiving through {head}"),
        SECS(30),
        || {
            viewers[&member]
                .log()
                .contains(&format!("(relay {head})"))
                .then_some(())
        },
    );
    for _ in 0..5 {
        watch.next();
    }
    // SIGSTOP: the socket stays open and silent.
    let pid = viewers[&head].child.id().to_string();
    let frozen_at = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let worst = longest_wait(&mut watch, frozen_at, SECS(3));
    eprintln!(
        "{member}: longest wait for a frame with {head} frozen: {:.0} ms",
        worst.as_secs_f64() * 1000.0
    );
    assert!(
        worst < Duration::from_millis(1500),
        "{member} waited {worst:?}"
    );
    viewers[&member].wait_log("no frame from", SECS(5));
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    // Back, it keeps its place and receives again.
    let mut head_out = FrameClient::connect(relay_port(&broker, &head));
    for _ in 0..10 {
        head_out.next();
    }
    let after = retained_plan(&broker).unwrap();
    assert!(after.viewers.contains_key(head.as_str()), "{after:?}");

    // A plan that cannot be read: a warning, and the camera from its node.
    broker.publish_retained(PLAN, r#"{"v":7}"#);
    viewers[&member].wait_log("ignoring the relay plan", SECS(20));
}
