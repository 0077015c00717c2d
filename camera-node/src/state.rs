//! What the node's servers share: its NodeInfo (which MQTT publishes on
//! every change), the cameras' hubs, and capture control.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use shared::messages::NodeInfo;
use shared::relay::RelayPlan;
use std::collections::BTreeMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use fanout::{Health, Hub, Protocol};

use crate::cameras::Cameras;

#[derive(Debug)]
pub struct NodeState {
    info: Arc<watch::Sender<NodeInfo>>,
    /// The relay plan of each camera, as last published (empty when
    /// relaying is off), for the node's page and `/api/v1/relay`.
    pub relay_plans: Arc<std::sync::Mutex<BTreeMap<String, RelayPlan>>>,
    pub cameras: Arc<Cameras>,
    /// The cameras' watchdog: a camera silent for longer is not healthy.
    pub watchdog: Duration,
}

/// One camera's live figures in `/api/v1/status`.
#[derive(Debug, Serialize)]
pub struct CameraStatus {
    pub id: String,
    pub enabled: bool,
    /// `ok`, `stale` or `stopped`.
    pub health: &'static str,
    pub frames: u64,
    pub bytes: u64,
    pub viewers_tcp: usize,
    pub viewers_rtsp: usize,
    pub viewers_http: usize,
    pub frames_dropped: u64,
    pub camera_restarts: u64,
    pub last_frame_age_s: Option<f64>,
}

impl NodeState {
    pub fn new(
        info: Arc<watch::Sender<NodeInfo>>,
        cameras: Arc<Cameras>,
        watchdog: Duration,
    ) -> Self {
        NodeState {
            info,
            relay_plans: Arc::default(),
            cameras,
            watchdog,
        }
    }

    pub fn info(&self) -> NodeInfo {
        self.info.borrow().clone()
    }

    /// Follows NodeInfo changes (capture turned on or off).
    pub fn watch_info(&self) -> watch::Receiver<NodeInfo> {
        self.info.subscribe()
    }

    pub fn hub(&self, camera: &str) -> Option<Arc<Hub>> {
        self.cameras.get(camera).map(|e| Arc::clone(&e.hub))
    }

    /// Every camera's hub, in order.
    pub fn hubs(&self) -> Vec<Arc<Hub>> {
        self.cameras.hubs()
    }

    /// Republishes NodeInfo when the kernel's word on the clock changes
    /// (network time arrived, or was lost), checking every `every`.
    pub async fn follow_clock(&self, every: std::time::Duration, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        while cancel.run_until_cancelled(ticker.tick()).await.is_some() {
            let now = crate::clock::synchronized();
            let changed = self.info.send_if_modified(|info| {
                let changed = info.clock_synchronized != now;
                info.clock_synchronized = now;
                changed
            });
            if changed {
                tracing::info!(synchronized = ?now, "the clock's synchronisation status changed");
            }
        }
    }

    pub fn health(&self, hub: &Hub) -> Health {
        hub.health(self.watchdog)
    }

    pub fn camera_status(&self) -> Vec<CameraStatus> {
        self.hubs()
            .iter()
            .map(|hub| {
                let f = hub.snapshot();
                let by = |p: Protocol| f.viewers_by[p as usize];
                CameraStatus {
                    id: hub.camera_id().to_owned(),
                    enabled: hub.is_enabled(),
                    health: match self.health(hub) {
                        Health::Ok(_) => "ok",
                        Health::Stale(_) => "stale",
                        Health::Stopped => "stopped",
                    },
                    frames: f.frames,
                    bytes: f.bytes,
                    viewers_tcp: by(Protocol::Tcp),
                    viewers_rtsp: by(Protocol::Rtsp),
                    viewers_http: by(Protocol::Http),
                    frames_dropped: f.dropped,
                    camera_restarts: f.restarts,
                    last_frame_age_s: f.last_frame_at.map(|t| t.elapsed().as_secs_f64()),
                }
            })
            .collect()
    }
}
