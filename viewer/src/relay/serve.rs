//! The relay servers: for every camera it receives, a relaying viewer
//! serves the TCP frame protocol v1 on a port of its own from the camera's
//! live hub, with the sequence numbers, capture times and JPEG bytes
//! exactly as received, and announces those addresses on MQTT.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use fanout::{Hub, Protocol};
use shared::net::host_port;
use shared::relay::{
    RelayAnnounce, RelayCamera, RelayCameraStats, RelayStats, RelayStatus, RELAY_VERSION,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Children one camera's relay takes at most (over-full only briefly,
/// while children of a dead relay fall back to their backup).
pub const RELAY_CAPACITY: usize = 16;

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

    /// Passes `node/camera` on from `hub` (its live hub), serving it on a
    /// new port the first time.
    pub fn open(&self, node: &str, camera: &str, hub: &Arc<Hub>) -> Result<()> {
        let key = (node.to_owned(), camera.to_owned());
        let mut served = self.served.lock().expect("relays lock");
        if served.contains_key(&key) {
            return Ok(());
        }
        let listener =
            std::net::TcpListener::bind(SocketAddr::new(self.bind, 0)).with_context(|| {
                format!("relay for {node}/{camera}: cannot listen on {}", self.bind)
            })?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let hub = Arc::clone(hub);
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
        Ok(())
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
            state: RelayStatus::Active,
            cameras,
            capacity: RELAY_CAPACITY,
            recording,
            degraded,
        }
    }

    /// Per camera: what came in, who takes it, what they skipped.
    pub fn figures(&self, viewer_id: &str) -> RelayStats {
        let now = shared::time::now_us();
        let tcp = Protocol::Tcp as usize;
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
                    // Its children, not the dashboard beside it.
                    children: f.viewers_by[tcp],
                    skipped: f.dropped_by[tcp],
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
        state: RelayStatus::Left,
        cameras: Vec::new(),
        capacity: 0,
        recording: false,
        degraded: false,
    }
}
