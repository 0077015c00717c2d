#![allow(dead_code)] // each test file uses some of these
//! What the relay tests share: a node planning relays, its plan and its
//! viewer count, a viewer's relay port, frame waits.

use std::time::{Duration, Instant};

use shared::relay::{RelayAnnounce, RelayPlan};
use testkit::viewers::*;
use testkit::*;

pub const SECS: fn(u64) -> Duration = Duration::from_secs;
pub const PLAN: &str = "camfleet/node/pi-relay/relay/cam0/plan";

/// A node of one test-pattern camera at 10 fps, planning relays in groups
/// of `max_member`.
pub fn relay_node(broker: &Broker, size: &str, max_member: &str) -> Node {
    test_node_with(
        broker,
        "pi-relay",
        size,
        &["--relay-max-member", max_member],
    )
}

pub fn retained_plan(broker: &Broker) -> Option<RelayPlan> {
    broker
        .retained(PLAN)
        .map(|p| serde_json::from_str(&p).expect("RelayPlan JSON"))
}

/// `camfleet_viewers{camera="cam0",protocol="tcp"}` on the node.
pub fn node_tcp_viewers(node: &Node) -> f64 {
    let text = curl(&[&format!("{}/metrics", node.http_base())]).text();
    text.lines()
        .find(|l| l.starts_with(r#"camfleet_viewers{camera="cam0",protocol="tcp"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// How many viewers take the camera from `id`.
pub fn children_of(plan: &RelayPlan, id: &str) -> usize {
    plan.viewers
        .values()
        .filter(|e| e.parent.as_deref() == Some(id))
        .count()
}

/// The relay address a viewer announces for the camera.
pub fn relay_port(broker: &Broker, viewer: &str) -> u16 {
    let a: RelayAnnounce = serde_json::from_str(
        &broker
            .retained(&format!("camfleet/viewer/{viewer}/relay"))
            .expect("a relay announcement"),
    )
    .unwrap();
    let addr = a.cameras[0].addr.clone().expect("a relay address");
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Frames of a viewer's relay output for `span` after `from`: the longest
/// wait between two, and whether sequence numbers only grew.
pub fn longest_wait(watch: &mut FrameClient, from: Instant, span: Duration) -> Duration {
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

pub fn control(node: &Node, action: &str) {
    let reply = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"camera":"cam0","action":"{action}"}}"#),
        &format!("{}/api/v1/control", node.http_base()),
    ]);
    assert_eq!(reply.status, 200, "{}", reply.text());
}
