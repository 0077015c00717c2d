//! The registry and its state file: every change saved, everything
//! brought back at start (docs/sources.md, "The state file").

use std::sync::Arc;

use super::{refused, Cameras, Entry, Origin};
use crate::serve::rtsp::push::PushUrl;
use crate::source::SourceSpec;
use crate::store::{Saved, SavedCamera, VERSION};

impl Cameras {
    /// Restores the state file: config cameras' desired state, API
    /// cameras on their ports. Returns the config cameras' saved states.
    pub async fn restore(self: &Arc<Self>, saved: Saved) {
        for cam in saved.cameras {
            if cam.origin == "config" {
                if let Some(entry) = self.get(&cam.id) {
                    if !cam.enabled {
                        entry.hub.set_enabled(false);
                        tracing::info!(camera = %cam.id, "stopped, as it was left (state file)");
                    }
                    self.restore_pushes(&entry, &cam.pushes);
                }
                continue;
            }
            let Some(text) = cam.source.as_deref() else {
                continue;
            };
            let restored = async {
                let source = text.parse::<SourceSpec>().map_err(|e| refused(400, e))?;
                if self.get(&cam.id).is_some() {
                    return Err(refused(409, "a config file camera has its id now"));
                }
                let o = cam.output.unwrap_or_default();
                let quality = (o.quality > 0).then_some(o.quality);
                let config =
                    self.camera_config(cam.id.clone(), source, o.width, o.height, o.fps, quality)?;
                let listener = match self.listener(Some(cam.tcp_port)).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(camera = %cam.id, "{}; taking another port", e.why);
                        self.listener(None).await?
                    }
                };
                self.start(config, Origin::Api, listener, cam.enabled)
                    .map_err(|e| refused(500, e.to_string()))
            };
            match restored.await {
                Ok(entry) => {
                    entry.status.note(&format!(
                        "restored from the state file ({})",
                        if cam.enabled { "running" } else { "stopped" }
                    ));
                    self.restore_pushes(&entry, &cam.pushes);
                }
                Err(e) => {
                    tracing::warn!(camera = %cam.id, "cannot restore the camera from the state file: {}", e.why)
                }
            }
        }
    }

    fn restore_pushes(&self, entry: &Arc<Entry>, urls: &[String]) {
        for url in urls {
            match PushUrl::parse(url) {
                Ok(url) if !entry.pushes().iter().any(|p| p.url == url) => {
                    self.start_push(entry, url, Origin::Api);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(camera = %entry.id, "saved push: {e}"),
            }
        }
    }

    /// Writes the state file (when there is one); a failure is logged.
    pub fn save(&self) {
        let Some(store) = &self.store else {
            return;
        };
        if let Err(e) = store.save(|| self.saved()) {
            tracing::error!("{e:#}");
        }
    }

    /// What the state file holds: every camera's desired state, and the
    /// API's cameras and pushes in full.
    fn saved(&self) -> Saved {
        let cameras = self
            .list()
            .iter()
            .map(|e| {
                let config = e.config();
                let api = e.origin == Origin::Api;
                SavedCamera {
                    id: e.id.clone(),
                    origin: if api { "api" } else { "config" }.into(),
                    enabled: e.hub.is_enabled(),
                    source: api.then(|| config.source.secret_text()),
                    tcp_port: e.tcp_port,
                    output: api.then_some(config.output),
                    pushes: e
                        .pushes
                        .lock()
                        .expect("pushes lock")
                        .iter()
                        .filter(|(origin, _)| *origin == Origin::Api)
                        .map(|(_, p)| p.url.secret().to_owned())
                        .collect(),
                }
            })
            .collect();
        Saved {
            v: VERSION,
            cameras,
        }
    }
}
