//! The node's NodeInfo kept current, which MQTT publishes on every change:
//! the registry writes its cameras, [`NodeState::follow_clock`] the clock's
//! synchronisation status. With the cameras and their health, it is what
//! the node's servers share.

use std::sync::Arc;
use std::time::Duration;

use shared::messages::NodeInfo;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use fanout::{Health, Hub};

use crate::cameras::Cameras;

#[derive(Debug)]
pub struct NodeState {
    info: Arc<watch::Sender<NodeInfo>>,
    pub cameras: Arc<Cameras>,
    /// The cameras' watchdog: a camera silent for longer is not healthy.
    pub watchdog: Duration,
    /// The machine's latest health sample.
    pub machine: Arc<crate::health::Latest>,
}

impl NodeState {
    pub fn new(
        info: Arc<watch::Sender<NodeInfo>>,
        cameras: Arc<Cameras>,
        watchdog: Duration,
    ) -> Self {
        NodeState {
            info,
            cameras,
            watchdog,
            machine: Arc::default(),
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
}
