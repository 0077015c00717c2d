//! Every MQTT topic camfleet uses (DESIGN.md, "Contract: MQTT").
//!
//! The `camfleet/...` topics carry a configurable prefix; the discovery,
//! record and sensor topics are fixed because people type them by hand.

/// The prefix of node and viewer topics unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "camfleet";
/// Discovery request: any payload; every node answers on [`GETIP_RESPONSE`].
pub const GETIP_REQUEST: &str = "command/getIP";
/// Discovery answer: a NodeInfo per node.
pub const GETIP_RESPONSE: &str = "response/getIP";
/// Recording command for viewers: `start` or `stop`.
pub const REC_COMMAND: &str = "command/rec";
/// Every sensor topic the viewer logs by default.
pub const SENSOR_FILTER: &str = "sensor/#";

/// Topic names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics::new(DEFAULT_PREFIX)
    }
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Topics {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// Retained `online` / `offline` (the node's last will).
    pub fn node_status(&self, node_id: &str) -> String {
        format!("{}/node/{node_id}/status", self.prefix)
    }

    /// Retained NodeInfo JSON.
    pub fn node_info(&self, node_id: &str) -> String {
        format!("{}/node/{node_id}/info", self.prefix)
    }

    /// A node's test message to itself: the broker passes on what it
    /// publishes (not retained).
    pub fn node_echo(&self, node_id: &str) -> String {
        format!("{}/node/{node_id}/echo", self.prefix)
    }

    /// Periodic stats JSON, not retained.
    pub fn node_stats(&self, node_id: &str) -> String {
        format!("{}/node/{node_id}/stats", self.prefix)
    }

    /// Filter matching every node's status topic.
    pub fn all_node_status(&self) -> String {
        format!("{}/node/+/status", self.prefix)
    }

    /// Filter matching every node's info topic.
    pub fn all_node_info(&self) -> String {
        format!("{}/node/+/info", self.prefix)
    }

    /// Retained `online` / `offline` of a viewer.
    pub fn viewer_status(&self, viewer_id: &str) -> String {
        format!("{}/viewer/{viewer_id}/status", self.prefix)
    }

    /// Retained recording state JSON of a viewer.
    pub fn viewer_recording(&self, viewer_id: &str) -> String {
        format!("{}/viewer/{viewer_id}/recording", self.prefix)
    }

    /// Retained relay announcement of a viewer (`left` when it stopped).
    pub fn viewer_relay(&self, viewer_id: &str) -> String {
        format!("{}/viewer/{viewer_id}/relay", self.prefix)
    }

    /// Relay figures of a viewer, every 10 s, not retained.
    pub fn viewer_relay_stats(&self, viewer_id: &str) -> String {
        format!("{}/viewer/{viewer_id}/relay/stats", self.prefix)
    }

    /// Filter matching every viewer's relay announcement.
    pub fn all_viewer_relay(&self) -> String {
        format!("{}/viewer/+/relay", self.prefix)
    }

    /// Filter matching every viewer's status.
    pub fn all_viewer_status(&self) -> String {
        format!("{}/viewer/+/status", self.prefix)
    }

    /// A camera's snapshot JPEG as a viewer publishes it for Home
    /// Assistant (`--homeassistant`).
    pub fn viewer_snapshot(&self, viewer_id: &str, node_id: &str, camera: &str) -> String {
        format!(
            "{}/viewer/{viewer_id}/snapshot/{node_id}/{camera}",
            self.prefix
        )
    }

    /// Retained relay plan of one camera.
    pub fn relay_plan(&self, node_id: &str, camera: &str) -> String {
        format!("{}/node/{node_id}/relay/{camera}/plan", self.prefix)
    }

    /// Retained state of one camera's source (runtime cameras, docs/mqtt.md).
    pub fn camera_state(&self, node_id: &str, camera: &str) -> String {
        format!("{}/node/{node_id}/camera/{camera}/state", self.prefix)
    }

    /// Where a camera takes changes of its controls (JSON, QoS 1).
    pub fn camera_set(&self, node_id: &str, camera: &str) -> String {
        format!("{}/node/{node_id}/camera/{camera}/set", self.prefix)
    }

    /// Filter matching the `set` topic of every camera of one node.
    pub fn camera_sets(&self, node_id: &str) -> String {
        format!("{}/node/{node_id}/camera/+/set", self.prefix)
    }

    /// The camera of one of `node_id`'s `set` topics.
    pub fn camera_of_set<'t>(&self, node_id: &str, topic: &'t str) -> Option<&'t str> {
        let rest = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/node/")?
            .strip_prefix(node_id)?
            .strip_prefix("/camera/")?;
        let camera = rest.strip_suffix("/set")?;
        (!camera.is_empty() && !camera.contains('/')).then_some(camera)
    }

    /// Retained health of a node's machine (docs/mqtt.md, "Health").
    pub fn node_health(&self, node_id: &str) -> String {
        format!("{}/node/{node_id}/health", self.prefix)
    }

    /// Filter matching every node's health.
    pub fn all_node_health(&self) -> String {
        format!("{}/node/+/health", self.prefix)
    }

    /// Filter matching every camera's state.
    pub fn all_camera_states(&self) -> String {
        format!("{}/node/+/camera/+/state", self.prefix)
    }

    /// Filter matching every camera's relay plan.
    pub fn all_relay_plans(&self) -> String {
        format!("{}/node/+/relay/+/plan", self.prefix)
    }

    /// Node and camera of a `<prefix>/node/<id>/relay/<camera>/plan` topic.
    pub fn relay_plan_of<'t>(&self, topic: &'t str) -> Option<(&'t str, &'t str)> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix("/node/")?;
        let rest = rest.strip_suffix("/plan")?;
        let (node, camera) = rest.split_once("/relay/")?;
        let plain = |s: &str| !s.is_empty() && !s.contains('/');
        (plain(node) && plain(camera)).then_some((node, camera))
    }

    /// Filter matching every topic of one node (what it alone may write).
    pub fn node_tree(&self, node_id: &str) -> String {
        format!("{}/node/{node_id}/#", self.prefix)
    }

    /// Filter matching every topic of one viewer (what it alone may write).
    pub fn viewer_tree(&self, viewer_id: &str) -> String {
        format!("{}/viewer/{viewer_id}/#", self.prefix)
    }

    /// Filter matching every camfleet topic under the prefix.
    pub fn everything(&self) -> String {
        format!("{}/#", self.prefix)
    }

    /// The viewer id in a `<prefix>/viewer/<id>/<leaf>` topic, if it is one.
    pub fn viewer_id_of<'t>(&self, topic: &'t str, leaf: &str) -> Option<&'t str> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix("/viewer/")?;
        let id = rest.strip_suffix(leaf)?.strip_suffix('/')?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }

    /// The node id in a `<prefix>/node/<id>/<leaf>` topic, if it is one.
    pub fn node_id_of<'t>(&self, topic: &'t str, leaf: &str) -> Option<&'t str> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix("/node/")?;
        let id = rest.strip_suffix(leaf)?.strip_suffix('/')?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }
}

/// The node's own CPU temperature, published as a sensor.
pub fn cpu_temp(node_id: &str) -> String {
    format!("sensor/{node_id}/cpu_temp")
}

/// Filter matching every sensor topic of one sensor (or node) `id`.
pub fn sensor_tree(id: &str) -> String {
    format!("sensor/{id}/#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_the_contract() {
        let t = Topics::default();
        assert_eq!(t.node_status("pi-door"), "camfleet/node/pi-door/status");
        assert_eq!(t.node_info("pi-door"), "camfleet/node/pi-door/info");
        assert_eq!(t.node_stats("pi-door"), "camfleet/node/pi-door/stats");
        assert_eq!(t.viewer_recording("ws"), "camfleet/viewer/ws/recording");
        assert_eq!(cpu_temp("pi-door"), "sensor/pi-door/cpu_temp");
        assert_eq!(Topics::new("site/a/").node_info("n"), "site/a/node/n/info");
        assert_eq!(t.node_health("pi-door"), "camfleet/node/pi-door/health");
        let set = t.camera_set("pi-door", "cam0");
        assert_eq!(set, "camfleet/node/pi-door/camera/cam0/set");
        assert_eq!(t.camera_of_set("pi-door", &set), Some("cam0"));
        assert_eq!(t.camera_of_set("pi-do", &set), None);
        assert_eq!(
            t.camera_of_set("pi-door", "camfleet/node/pi-door/camera/a/b/set"),
            None
        );
    }

    #[test]
    fn node_id_is_taken_from_a_topic() {
        let t = Topics::default();
        assert_eq!(
            t.node_id_of("camfleet/node/pi-door/info", "info"),
            Some("pi-door")
        );
        assert_eq!(t.node_id_of("camfleet/node//info", "info"), None);
        assert_eq!(t.node_id_of("camfleet/node/a/b/info", "info"), None);
        assert_eq!(t.node_id_of("other/node/a/info", "info"), None);
    }
}
