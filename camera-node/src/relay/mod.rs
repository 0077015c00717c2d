//! The node plans who passes each of its cameras to whom (one writer per
//! camera: the node), from the viewers that announce they watch it, and
//! publishes the plan retained with an epoch (docs/mqtt.md, "Relaying").
//!
//! - [`plan`]: the planning itself, a pure function of the last layout and
//!   the viewers watching.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Mutex;

use shared::messages::{NodeInfo, OFFLINE};
use shared::relay::{
    Layout, PlanEntry, RelayAnnounce, RelayPlan, RelayStatus, Topology, RELAY_VERSION,
};

use self::plan::{feeds_of, replan, Candidate};

#[derive(Debug)]
pub struct Planner {
    node_id: String,
    max_member: usize,
    topology: Topology,
    /// Viewers that announced themselves active.
    viewers: BTreeMap<String, RelayAnnounce>,
    /// Per camera: the layout and the plan last published.
    plans: BTreeMap<String, RelayPlan>,
    /// Grows with every plan; starts at the node's start time in
    /// milliseconds, so a restarted node's epochs are newer still.
    epoch: u64,
}

impl Planner {
    pub fn new(node_id: &str, max_member: usize, topology: Topology) -> Self {
        let epoch = chrono::Utc::now().timestamp_millis().max(0) as u64;
        Planner {
            node_id: node_id.to_owned(),
            max_member,
            topology,
            viewers: BTreeMap::new(),
            plans: BTreeMap::new(),
            epoch,
        }
    }

    /// A message on `<prefix>/viewer/<id>/relay`. Malformed or unknown
    /// versions are refused with the reason (the viewer then takes the
    /// camera from the node, as any viewer without a plan does).
    pub fn announce(&mut self, viewer_id: &str, payload: &[u8]) -> Result<(), String> {
        if payload.is_empty() || payload == RelayStatus::Left.as_str().as_bytes() {
            self.viewers.remove(viewer_id);
            return Ok(());
        }
        let a: RelayAnnounce = serde_json::from_slice(payload)
            .map_err(|e| format!("not a relay announcement: {e}"))?;
        if a.v != RELAY_VERSION {
            return Err(format!(
                "relay announcement version {} (this node reads {RELAY_VERSION})",
                a.v
            ));
        }
        if a.viewer_id != viewer_id {
            return Err(format!(
                "announces viewer {:?} on another viewer's topic",
                a.viewer_id
            ));
        }
        if a.state == RelayStatus::Left {
            self.viewers.remove(viewer_id);
        } else {
            self.viewers.insert(viewer_id.to_owned(), a);
        }
        Ok(())
    }

    /// A viewer's status: `offline` (its last will) takes it out at once.
    pub fn status(&mut self, viewer_id: &str, payload: &[u8]) {
        if payload == OFFLINE.as_bytes() {
            self.viewers.remove(viewer_id);
        }
    }

    /// Plans every camera of `info` again; returns the plans that changed.
    pub fn replan(&mut self, info: &NodeInfo) -> Vec<RelayPlan> {
        let mut changed = Vec::new();
        for cam in &info.cameras {
            let watching: Vec<(&RelayAnnounce, Option<String>)> = self
                .viewers
                .values()
                .filter_map(|a| {
                    let entry = a
                        .cameras
                        .iter()
                        .find(|c| c.node == info.node_id && c.camera == cam.id)?;
                    Some((a, entry.addr.clone()))
                })
                .collect();
            let candidates: Vec<Candidate> = if cam.enabled {
                watching
                    .iter()
                    .map(|(a, addr)| Candidate {
                        id: a.viewer_id.clone(),
                        can_relay: addr.is_some() && !a.degraded,
                        recording: a.recording,
                    })
                    .collect()
            } else {
                // A stopped camera has no tree; it is rebuilt when it starts.
                Vec::new()
            };
            let prev = self.plans.get(&cam.id);
            let layout = replan(
                prev.map(|p| &p.layout).unwrap_or(&Layout::default()),
                &candidates,
                self.max_member,
                self.topology,
            );
            let addr_of = |id: &Option<String>| match id {
                None => cam.tcp.clone(),
                Some(id) => watching
                    .iter()
                    .find(|(a, _)| &a.viewer_id == id)
                    .and_then(|(_, addr)| addr.clone())
                    .unwrap_or_else(|| cam.tcp.clone()),
            };
            let viewers: BTreeMap<String, PlanEntry> =
                feeds_of(&layout, self.max_member, self.topology)
                    .into_iter()
                    .map(|(id, feed)| {
                        let entry = PlanEntry {
                            parent_addr: addr_of(&feed.parent),
                            backup_addr: addr_of(&feed.backup),
                            parent: feed.parent,
                            backup: feed.backup,
                            depth: feed.depth,
                        };
                        (id, entry)
                    })
                    .collect();
            let same = prev
                .is_some_and(|p| p.viewers == viewers && p.layout == layout && p.origin == cam.tcp);
            if same {
                continue;
            }
            self.epoch += 1;
            let plan = RelayPlan {
                v: RELAY_VERSION,
                node_id: self.node_id.clone(),
                camera: cam.id.clone(),
                epoch: self.epoch,
                topology: self.topology,
                max_member: self.max_member,
                origin: cam.tcp.clone(),
                viewers,
                layout,
            };
            tracing::info!(
                camera = %cam.id,
                epoch = plan.epoch,
                "relay plan: {}",
                describe(&plan)
            );
            self.plans.insert(cam.id.clone(), plan.clone());
            changed.push(plan);
        }
        changed
    }

    /// Every plan, for publishing again after a reconnect.
    pub fn plans(&self) -> impl Iterator<Item = &RelayPlan> {
        self.plans.values()
    }
}

/// The plans as last published, per camera (none while relaying is off):
/// presence keeps them here, the node's HTTP server shows them at
/// `/api/v1/relay`.
#[derive(Debug, Default)]
pub struct PublishedPlans(Mutex<BTreeMap<String, RelayPlan>>);

impl PublishedPlans {
    /// The planner's plans, in place of the last ones.
    pub fn keep(&self, planner: &Planner) {
        *self.0.lock().expect("plans lock") = planner
            .plans()
            .map(|p| (p.camera.clone(), p.clone()))
            .collect();
    }

    pub fn all(&self) -> BTreeMap<String, RelayPlan> {
        self.0.lock().expect("plans lock").clone()
    }
}

/// `ws1<-node ws2<-ws1 ...`, for the log.
fn describe(plan: &RelayPlan) -> String {
    if plan.viewers.is_empty() {
        return "nobody watches".into();
    }
    plan.viewers
        .iter()
        .map(|(id, e)| format!("{id}<-{}", e.parent.as_deref().unwrap_or("node")))
        .collect::<Vec<_>>()
        .join(" ")
}
