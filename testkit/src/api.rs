//! The node's camera API as a user drives it: curl, JSON, polling a
//! camera's state with a deadline.

use std::time::Duration;

use serde_json::Value;

use super::{curl, wait_for, HttpReply, Node};

/// The node's camera API through curl; `token` goes in a Bearer header.
pub fn api(
    node: &Node,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> HttpReply {
    let url = format!("{}{path}", node.http_base());
    let mut args: Vec<String> = vec!["-X".into(), method.into(), url];
    if let Some(body) = body {
        args.extend(["-H".into(), "Content-Type: application/json".into()]);
        args.extend(["--data-binary".into(), body.to_string()]);
    }
    if let Some(token) = token {
        args.extend(["-H".into(), format!("Authorization: Bearer {token}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&args)
}

pub fn add(node: &Node, body: Value) -> Value {
    let reply = api(node, "POST", "/api/v1/cameras", Some(body), None);
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

pub fn view(node: &Node, id: &str) -> Value {
    let reply = api(node, "GET", &format!("/api/v1/cameras/{id}"), None, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Waits until the camera's state is one of `states`; returns its view.
pub fn wait_state(node: &Node, id: &str, states: &[&str], limit: Duration) -> Value {
    wait_for(&format!("camera {id} in state {states:?}"), limit, || {
        let v = view(node, id);
        states
            .contains(&v["state"].as_str().unwrap_or(""))
            .then_some(v)
    })
}

pub fn tcp_port(v: &Value) -> u16 {
    v["tcp_port"].as_u64().expect("tcp_port") as u16
}

/// Children of `pid` that are zombies (exited, never reaped).
pub fn zombie_children(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            found.push(stat);
        }
    }
    found
}
