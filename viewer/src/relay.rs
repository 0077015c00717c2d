//! Passing cameras on (`viewer --relay`): for every camera it receives,
//! the viewer serves the TCP frame protocol v1 on a port of its own, with
//! the sequence numbers, capture times and JPEG bytes exactly as received
//! (a fan-out hub fed from the wire). It announces those addresses on MQTT;
//! the camera's node plans who takes the camera from whom, and each camera
//! task follows the plan (see `camera`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use fanout::{Frame, Hub};
use shared::net::host_port;
use shared::relay::{
    PlanEntry, RelayAnnounce, RelayCamera, RelayCameraStats, RelayPlan, RelayStats, RELAY_VERSION,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::camera::RecordedUpTo;

/// Children one camera's relay takes at most (over-full only briefly,
/// while children of a dead relay fall back to their backup).
pub const RELAY_CAPACITY: usize = 16;

/// Where one camera comes from, by the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub epoch: u64,
    /// Parent viewer id; `None` for the node.
    pub parent: Option<String>,
    pub parent_addr: String,
    pub backup: Option<String>,
    pub backup_addr: String,
}

impl Route {
    pub fn from_plan(plan: &RelayPlan, entry: &PlanEntry) -> Self {
        Route {
            epoch: plan.epoch,
            parent: entry.parent.clone(),
            parent_addr: entry.parent_addr.clone(),
            backup: entry.backup.clone(),
            backup_addr: entry.backup_addr.clone(),
        }
    }
}

/// One camera passed on.
struct Served {
    hub: Arc<Hub>,
    addr: String,
    cancel: CancellationToken,
}

/// The viewer's relay servers, one per camera it receives.
pub struct Relays {
    bind: IpAddr,
    /// Host other viewers reach this one at.
    advertise: String,
    served: Mutex<BTreeMap<(String, String), Served>>,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relays")
            .field("advertise", &self.advertise)
            .finish()
    }
}

impl Relays {
    pub fn new(bind: IpAddr, advertise: String) -> Self {
        Relays {
            bind,
            advertise,
            served: Mutex::default(),
            tracker: TaskTracker::new(),
        }
    }

    /// The hub that passes `node/camera` on, serving it on a new port the
    /// first time.
    pub fn open(&self, node: &str, camera: &str) -> Result<Arc<Hub>> {
        let key = (node.to_owned(), camera.to_owned());
        let mut served = self.served.lock().expect("relays lock");
        if let Some(s) = served.get(&key) {
            return Ok(Arc::clone(&s.hub));
        }
        let listener =
            std::net::TcpListener::bind(SocketAddr::new(self.bind, 0)).with_context(|| {
                format!("relay for {node}/{camera}: cannot listen on {}", self.bind)
            })?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let hub = Hub::new(camera);
        let cancel = CancellationToken::new();
        let task = fanout::tcp::run(
            listener,
            Arc::clone(&hub),
            RELAY_CAPACITY,
            cancel.clone(),
            self.tracker.clone(),
        );
        let span = tracing::info_span!("relay", camera = %format!("{node}/{camera}"));
        self.tracker.spawn(task.instrument(span));
        let addr = host_port(&self.advertise, port);
        tracing::info!(camera = %format!("{node}/{camera}"), "passing the camera on at {addr}");
        served.insert(
            key,
            Served {
                hub: Arc::clone(&hub),
                addr,
                cancel,
            },
        );
        Ok(hub)
    }

    /// Stops passing `node/camera` on (its children fall back to their backup).
    pub fn close(&self, node: &str, camera: &str) {
        let key = (node.to_owned(), camera.to_owned());
        if let Some(s) = self.served.lock().expect("relays lock").remove(&key) {
            s.cancel.cancel();
        }
    }

    /// What this viewer announces.
    pub fn announcement(&self, viewer_id: &str, recording: bool, degraded: bool) -> RelayAnnounce {
        let cameras = self
            .served
            .lock()
            .expect("relays lock")
            .iter()
            .map(|((node, camera), s)| RelayCamera {
                node: node.clone(),
                camera: camera.clone(),
                addr: Some(s.addr.clone()),
            })
            .collect();
        RelayAnnounce {
            v: RELAY_VERSION,
            viewer_id: viewer_id.to_owned(),
            state: "active".into(),
            cameras,
            capacity: RELAY_CAPACITY,
            recording,
            degraded,
        }
    }

    /// Per camera: what came in, who takes it, what they skipped.
    pub fn figures(&self, viewer_id: &str) -> RelayStats {
        let now = crate::clock::now_us();
        let cameras = self
            .served
            .lock()
            .expect("relays lock")
            .iter()
            .map(|((node, camera), s)| {
                let f = s.hub.snapshot();
                RelayCameraStats {
                    node: node.clone(),
                    camera: camera.clone(),
                    frames_in: f.frames,
                    children: f.viewers,
                    skipped: f.dropped,
                    skipped_by_child: s.hub.skipped_by_viewer().into_iter().collect(),
                    age_ms: s
                        .hub
                        .latest()
                        .map(|l| now.saturating_sub(l.captured_at_us) as f64 / 1000.0),
                }
            })
            .collect();
        RelayStats {
            v: RELAY_VERSION,
            viewer_id: viewer_id.to_owned(),
            cameras,
        }
    }

    /// Stops every relay server and waits for their viewers to end.
    pub async fn shutdown(&self) {
        for s in self.served.lock().expect("relays lock").values() {
            s.cancel.cancel();
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The payload a viewer leaves on its relay topic when it stops.
pub fn left(viewer_id: &str) -> RelayAnnounce {
    RelayAnnounce {
        v: RELAY_VERSION,
        viewer_id: viewer_id.to_owned(),
        state: "left".into(),
        cameras: Vec::new(),
        capacity: 0,
        recording: false,
        degraded: false,
    }
}

/// Hands frames to a relay hub once each: a switch of parent may bring a
/// frame again, which is passed on only the first time.
#[derive(Debug)]
pub struct Forward {
    pub hub: Arc<Hub>,
    seen: RecordedUpTo,
}

impl Forward {
    pub fn new(hub: Arc<Hub>) -> Self {
        Forward {
            hub,
            seen: RecordedUpTo::default(),
        }
    }

    pub fn pass(&self, frame: &shared::frame::Frame) {
        if self.seen.admit(frame.seq, frame.captured_at_us) {
            self.hub.forward(Frame {
                seq: frame.seq,
                captured_at_us: frame.captured_at_us,
                read_at: tokio::time::Instant::now(),
                jpeg: frame.jpeg.clone(),
            });
        }
    }
}

/// A relay plan, checked: JSON of the known version.
pub fn parse_plan(payload: &[u8]) -> std::result::Result<RelayPlan, String> {
    let plan: RelayPlan =
        serde_json::from_slice(payload).map_err(|e| format!("not a relay plan: {e}"))?;
    if plan.v != RELAY_VERSION {
        return Err(format!(
            "plan version {} (this viewer reads {})",
            plan.v, RELAY_VERSION
        ));
    }
    Ok(plan)
}

/// The address other viewers should use for this one: the bind address
/// when it is a specific one, else the local address of the route to the
/// broker (a UDP socket "connected" there sends nothing).
pub fn advertised_host(bind: IpAddr, broker_host: &str, broker_port: u16) -> String {
    if !bind.is_unspecified() {
        return bind.to_string();
    }
    let local = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect((broker_host, broker_port)).map(|()| s))
        .and_then(|s| s.local_addr());
    match local {
        Ok(a) if !a.ip().is_unspecified() => a.ip().to_string(),
        _ => "127.0.0.1".into(),
    }
}
