//! Which nodes are online and where their cameras are, from retained
//! `<prefix>/node/+/info` and `/status` and from `response/getIP` answers.

use std::collections::HashMap;

use shared::messages::{NodeInfo, OFFLINE, ONLINE};
use shared::topics::{Topics, GETIP_RESPONSE};

/// What changed, for the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// Online with this info (new, or its info changed).
    Up(NodeInfo),
    /// Went offline (its status, or its last will).
    Down(String),
}

#[derive(Debug, Default)]
struct Known {
    info: Option<NodeInfo>,
    online: bool,
    /// A status was heard (until then `online` is only a default).
    status_seen: bool,
}

#[derive(Debug)]
pub struct Discovery {
    topics: Topics,
    nodes: HashMap<String, Known>,
}

impl Discovery {
    pub fn new(topics: Topics) -> Self {
        Discovery {
            topics,
            nodes: HashMap::new(),
        }
    }

    /// Feeds one MQTT message; returns what changed. Bad payloads are
    /// logged with topic and reason and change nothing.
    pub fn on_message(&mut self, topic: &str, payload: &[u8]) -> Vec<NodeEvent> {
        if topic == GETIP_RESPONSE {
            return match parse_info(topic, payload) {
                // A node that answers is online.
                Some(info) => self.update(&info.node_id.clone(), Some(info), Some(true)),
                None => vec![],
            };
        }
        if let Some(id) = self.topics.node_id_of(topic, "info") {
            if payload.is_empty() {
                return self.update(id, None, Some(false)); // retained info cleared
            }
            return match parse_info(topic, payload) {
                Some(info) if info.node_id != id => {
                    tracing::warn!(
                        topic,
                        "ignoring NodeInfo for {:?} on another node's topic",
                        info.node_id
                    );
                    vec![]
                }
                Some(info) => self.update(id, Some(info), None),
                None => vec![],
            };
        }
        if let Some(id) = self.topics.node_id_of(topic, "status") {
            return match std::str::from_utf8(payload).map(str::trim) {
                Ok(ONLINE) => self.update(id, None, Some(true)),
                Ok(OFFLINE) | Ok("") => self.update(id, None, Some(false)),
                _ => {
                    tracing::warn!(
                        topic,
                        "ignoring status {:?}: not online or offline",
                        String::from_utf8_lossy(payload)
                    );
                    vec![]
                }
            };
        }
        vec![]
    }

    fn update(&mut self, id: &str, info: Option<NodeInfo>, online: Option<bool>) -> Vec<NodeEvent> {
        let known = self.nodes.entry(id.to_owned()).or_default();
        let was_up = known.online && known.info.is_some();
        let old_info = known.info.clone();
        if let Some(info) = info {
            // Info of a node known to be down is its old run's (retained):
            // not used. A discovery answer comes from a live node.
            if online == Some(true) || !known.status_seen || known.online {
                known.info = Some(info);
            }
        }
        if let Some(online) = online {
            known.online = online;
            known.status_seen = true;
            if !online {
                // What a node said before it went away is stale: a node
                // that comes back announces `online` before its new info
                // (new ports, a new start time), so wait for that.
                known.info = None;
            }
        }
        let is_up = known.online && known.info.is_some();
        match (was_up, is_up) {
            (_, true) if !was_up || old_info != known.info => {
                vec![NodeEvent::Up(known.info.clone().expect("is_up"))]
            }
            (true, false) => vec![NodeEvent::Down(id.to_owned())],
            _ => vec![],
        }
    }
}

fn parse_info(topic: &str, payload: &[u8]) -> Option<NodeInfo> {
    match serde_json::from_slice::<NodeInfo>(payload) {
        Ok(info) => Some(info),
        Err(e) => {
            tracing::warn!(topic, "ignoring NodeInfo that does not parse: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, port: u16) -> Vec<u8> {
        format!(
            r#"{{"v":1,"node_id":"{id}","hostname":"h","version":"0.1.0","addresses":["127.0.0.1"],
            "started_at":"2026-11-21T10:15:00Z","cameras":[{{"id":"cam0","width":640,"height":480,"fps":30,
            "codec":"mjpeg","tcp":"127.0.0.1:{port}"}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_node_is_up_once_online_and_described_and_down_on_its_will() {
        let mut d = Discovery::new(Topics::default());
        assert!(
            d.on_message("camfleet/node/a/info", &info("a", 8000))
                .is_empty(),
            "not yet known online"
        );
        let up = d.on_message("camfleet/node/a/status", b"online");
        assert!(matches!(&up[..], [NodeEvent::Up(i)] if i.cameras[0].tcp == "127.0.0.1:8000"));
        assert!(
            d.on_message("camfleet/node/a/info", &info("a", 8000))
                .is_empty(),
            "same info: nothing new"
        );
        let moved = d.on_message("camfleet/node/a/info", &info("a", 9000));
        assert!(matches!(&moved[..], [NodeEvent::Up(i)] if i.cameras[0].tcp == "127.0.0.1:9000"));
        assert_eq!(
            d.on_message("camfleet/node/a/status", b"offline"),
            [NodeEvent::Down("a".into())]
        );
    }

    fn info_started(id: &str, port: u16, started: &str) -> Vec<u8> {
        String::from_utf8(info(id, port))
            .unwrap()
            .replace("2026-11-21T10:15:00Z", started)
            .into_bytes()
    }

    #[test]
    fn info_from_before_a_node_went_offline_is_not_used_when_it_is_back() {
        let mut d = Discovery::new(Topics::default());
        d.on_message("camfleet/node/a/status", b"online");
        assert_eq!(
            d.on_message("camfleet/node/a/info", &info("a", 8000)).len(),
            1
        );
        assert_eq!(
            d.on_message("camfleet/node/a/status", b"offline"),
            [NodeEvent::Down("a".into())]
        );
        // The node restarts: `online` comes first, then its new info.
        assert!(
            d.on_message("camfleet/node/a/status", b"online").is_empty(),
            "online alone is not enough after the old info went stale"
        );
        let up = d.on_message(
            "camfleet/node/a/info",
            &info_started("a", 9000, "2026-11-21T11:00:00Z"),
        );
        assert!(matches!(&up[..], [NodeEvent::Up(i)] if i.cameras[0].tcp == "127.0.0.1:9000"));
    }

    #[test]
    fn a_viewer_that_starts_while_a_node_is_down_waits_for_its_new_info() {
        let mut d = Discovery::new(Topics::default());
        // Retained: offline and the old info, in either order.
        assert!(d
            .on_message("camfleet/node/a/status", b"offline")
            .is_empty());
        assert!(d
            .on_message("camfleet/node/a/info", &info("a", 8000))
            .is_empty());
        assert!(d.on_message("camfleet/node/a/status", b"online").is_empty());
        let up = d.on_message(
            "camfleet/node/a/info",
            &info_started("a", 9000, "2026-11-21T11:00:00Z"),
        );
        assert!(matches!(&up[..], [NodeEvent::Up(i)] if i.cameras[0].tcp == "127.0.0.1:9000"));
        // Info first, then online (a fresh viewer, a node that is up): up.
        let mut d = Discovery::new(Topics::default());
        assert!(d
            .on_message("camfleet/node/b/info", &info("b", 8001))
            .is_empty());
        assert_eq!(d.on_message("camfleet/node/b/status", b"online").len(), 1);
    }

    #[test]
    fn a_discovery_answer_is_enough() {
        let mut d = Discovery::new(Topics::default());
        assert!(matches!(
            &d.on_message("response/getIP", &info("b", 8001))[..],
            [NodeEvent::Up(_)]
        ));
    }

    #[test]
    fn bad_payloads_change_nothing() {
        let mut d = Discovery::new(Topics::default());
        d.on_message("camfleet/node/a/status", b"online");
        assert!(d
            .on_message("camfleet/node/a/info", b"{not json")
            .is_empty());
        assert!(d.on_message("camfleet/node/a/status", b"maybe").is_empty());
        assert!(d
            .on_message("camfleet/node/a/info", &info("other", 1))
            .is_empty());
        assert!(d.on_message("response/getIP", b"\xff").is_empty());
    }
}
