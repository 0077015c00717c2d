//! What the viewer and the node read off MQTT, where anyone on the broker
//! may write: NodeInfo (on its topic and as a discovery answer), node
//! status, recording commands, recording and camera state, relay plans.
//! Nothing may panic; a NodeInfo the discovery takes names the node of
//! its topic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::messages::{CameraState, NodeInfo, RecCommand, RecordingState};
use shared::topics::Topics;
use viewer::discovery::{Discovery, NodeEvent};

fuzz_target!(|data: &[u8]| {
    let mut discovery = Discovery::new(Topics::default());
    for topic in ["camfleet/node/pi/status", "camfleet/node/pi/info", "response/getIP"] {
        for event in discovery.on_message(topic, data) {
            if let (NodeEvent::Up(info), true) = (&event, topic.contains("/pi/")) {
                assert_eq!(info.node_id, "pi");
            }
        }
    }
    let _ = RecCommand::parse(data);
    let _ = serde_json::from_slice::<NodeInfo>(data);
    let _ = serde_json::from_slice::<RecordingState>(data);
    let _ = serde_json::from_slice::<CameraState>(data);
    let _ = viewer::relay::parse_plan(data);
});
