//! Relaying: the viewers that watch a camera pass it on to each other, so
//! a node's uplink carries a few streams whatever the audience. These are
//! the payloads: a viewer's announcement and figures, and the plan the
//! node publishes retained with an epoch (docs/mqtt.md, "Relaying"). The
//! planner that makes the plan is the node's (`camera_node::relay::plan`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::states::RelayStatus;

/// Version of the relay payloads.
pub const RELAY_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    #[default]
    Chain,
    Tree,
}

impl std::str::FromStr for Topology {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "chain" => Ok(Topology::Chain),
            "tree" => Ok(Topology::Tree),
            _ => Err(format!("unknown relay topology {s:?} (chain or tree)")),
        }
    }
}

/// Who sits where: the planner's state, carried in the published plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Viewer ids by slot; `None` is a free slot.
    pub slots: Vec<Option<String>>,
    /// Viewers the node feeds itself: leaves with no leaf slot free.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub direct: Vec<String>,
}

/// One viewer's relay announcement, retained on
/// `<prefix>/viewer/<viewer_id>/relay`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayAnnounce {
    pub v: u32,
    pub viewer_id: String,
    /// `active`, or `left` when it stopped (sent on a clean exit and as
    /// its last will).
    pub state: RelayStatus,
    /// The cameras it watches, with the address it passes each on at.
    #[serde(default)]
    pub cameras: Vec<RelayCamera>,
    /// How many children it takes per camera.
    #[serde(default)]
    pub capacity: usize,
    #[serde(default)]
    pub recording: bool,
    /// It says it cannot keep up: a leaf only.
    #[serde(default)]
    pub degraded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCamera {
    pub node: String,
    pub camera: String,
    /// `host:port` of its TCP frame protocol v1 server for this camera;
    /// absent when it does not relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

/// A relaying viewer's figures, every 10 s on
/// `<prefix>/viewer/<viewer_id>/relay/stats` (not retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayStats {
    pub v: u32,
    pub viewer_id: String,
    pub cameras: Vec<RelayCameraStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayCameraStats {
    pub node: String,
    pub camera: String,
    /// Frames received and passed on since the relay started.
    pub frames_in: u64,
    /// Viewers taking the camera from this one now.
    pub children: usize,
    /// Frames children skipped because they were slower than the camera,
    /// summed over children.
    pub skipped: u64,
    /// Per child connected now (its address): frames it skipped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_by_child: BTreeMap<String, u64>,
    /// Age of the newest frame passed on (now minus its capture time), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<f64>,
}

/// A camera's relay plan, retained on
/// `<prefix>/node/<node_id>/relay/<camera_id>/plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayPlan {
    pub v: u32,
    pub node_id: String,
    pub camera: String,
    /// Grows with every change.
    pub epoch: u64,
    pub topology: Topology,
    pub max_member: usize,
    /// `host:port` of the node's own TCP server for the camera.
    pub origin: String,
    /// Per viewer: where it takes the camera from.
    pub viewers: BTreeMap<String, PlanEntry>,
    /// The planner's state, for the next plan (and for people reading it).
    pub layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// Viewer id of the parent; absent for the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// `host:port` to connect to (the parent's relay, or the node).
    pub parent_addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    pub backup_addr: String,
    pub depth: u32,
}
