//! What the push tests share: a node with an ffmpeg camera, and starting
//! and watching its push through the API.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::api::*;
use testkit::*;

/// A node whose cam0 is a 320x240, 15 fps ffmpeg camera, its first frame in.
pub fn camera_node(broker: &Broker, id: &str) -> Node {
    let url = broker.url();
    let source = ffmpeg_camera(320, 240, 15);
    let args = [
        node_args(&url, id, &source),
        words("--width 320 --height 240 --fps 15"),
    ]
    .concat();
    let node = Node::start(&args);
    node.wait_log("first frame", Duration::from_secs(20));
    node
}

/// Pushes cam0 to `url` through the API.
pub fn start_push(node: &Node, url: &str) {
    let body = Some(json!({ "url": url }));
    let reply = api(node, "POST", "/api/v1/cameras/cam0/pushes", body, None);
    assert_eq!(reply.status, 201, "{}", reply.text());
}

/// cam0's first push, as the camera's API view shows it.
pub fn push_of(node: &Node, camera: &str) -> Value {
    view(node, camera)["pushes"][0].clone()
}

/// The first push of `camera` once `check` holds (30 s at most).
pub fn wait_push(node: &Node, camera: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(30), || {
        let push = push_of(node, camera);
        check(&push).then_some(push)
    })
}
