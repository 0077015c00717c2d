//! An H.264 camera down a relay chain: node -> r1 -> r2 -> r3, each hop
//! speaking the TCP frame protocol v2 as the node does; r3, three hops
//! down, records the same samples (times and bytes) as a viewer connected
//! to the node. Real mosquitto, node and viewers; ffprobe reads the files.

use std::io::Read;
use std::time::Duration;

use shared::relay::{RelayAnnounce, RelayPlan};
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const PLAN: &str = "camfleet/node/pi-relay/relay/cam0/plan";

fn retained_plan(broker: &Broker) -> Option<RelayPlan> {
    broker
        .retained(PLAN)
        .map(|p| serde_json::from_str(&p).expect("RelayPlan JSON"))
}

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
fn three_hops_down_an_h264_camera_is_recorded_exactly_as_from_its_node() {
    let broker = Broker::start();
    let _node = test_node_with(
        &broker,
        "pi-relay",
        "320x240",
        &["--codec", "h264", "--relay-max-member", "1"],
    );
    let dirs: Vec<TempDir> = (0..4)
        .map(|i| TempDir::new(&format!("h264-hops-{i}")))
        .collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs[..3].iter().enumerate() {
        let id = format!("r{}", i + 1);
        let mut args = vec!["--relay", "127.0.0.1", "--segment-seconds", "2"];
        if i < 2 {
            args.push("--no-record");
        }
        relays.push(Viewer::start_as(&broker, &dir.0, &id, &args));
        wait_for(&format!("{id} in the plan"), SECS(30), || {
            retained_plan(&broker).filter(|p| p.viewers.contains_key(&id))
        });
    }
    let direct = Viewer::start_as(&broker, &dirs[3].0, "direct", &["--segment-seconds", "2"]);
    assert_eq!(retained_plan(&broker).unwrap().viewers["r3"].depth, 3);
    wait_for("r3 receiving through r2", SECS(30), || {
        relays[2].log().contains("(relay r2)").then_some(())
    });
    // Each relay speaks v2 for the H.264 camera, as its node does.
    let mut hello = [0u8; 11];
    let mut relay = std::net::TcpStream::connect(("127.0.0.1", relay_port(&broker, "r2"))).unwrap();
    relay.set_read_timeout(Some(SECS(10))).unwrap();
    relay.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"CAMFLEET/2\n");
    drop(relay);

    broker.publish("command/rec", "start");
    wait_for("four closed segments each", SECS(40), || {
        [&dirs[2], &dirs[3]]
            .iter()
            .all(|d| files(&d.0, ".mp4").len() >= 4)
            .then_some(())
    });
    broker.publish("command/rec", "stop");
    for (id, dir) in [("r3", &dirs[2]), ("direct", &dirs[3])] {
        wait_for(&format!("{id} idle"), SECS(20), || {
            let state = broker.retained(&format!("camfleet/viewer/{id}/recording"))?;
            (state.contains("\"idle\"") && files(&dir.0, ".part").is_empty()).then_some(())
        });
    }
    // Each viewer's first segment starts at its own first keyframe; the
    // rest are cut at the same keyframes and must hold the same samples.
    let same = assert_same_segments(&dirs[2].0, &dirs[3].0, "three hops down");
    eprintln!("{same} H.264 segments identical three hops down and direct");
    drop(direct);
}
