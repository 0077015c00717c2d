//! The node's state file and the registry's use of it: cameras added over
//! the API and every camera's desired state, saved on every change and
//! brought back at start, so a restarted node comes back as it was left
//! (docs/sources.md, "The state file").
//!
//! One JSON file, `cameras.json` under `--state-dir`, mode 0600 (source
//! URLs may hold passwords), replaced atomically: written beside, synced,
//! renamed over, the directory synced. A node killed mid-write leaves the
//! old file or the new one, never half of one.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{refused, Cameras, Entry, Origin};
use crate::config::CameraConfig;
use crate::push::PushUrl;
use crate::source::controls::{self, Controls};
use crate::source::{Output, SourceSpec};

pub const FILE_NAME: &str = "cameras.json";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub v: u32,
    pub cameras: Vec<SavedCamera>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCamera {
    pub id: String,
    /// `api` or `config`; a config camera keeps only its desired state.
    pub origin: String,
    pub enabled: bool,
    /// The source as given, password included (API cameras only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub tcp_port: u16,
    #[serde(default)]
    pub output: Option<Output>,
    /// RTSP servers the camera is pushed to, passwords included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushes: Vec<String>,
    /// Camera controls: a config camera's, once changed over the API or
    /// MQTT, replace the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controls: Option<Controls>,
}

impl Saved {
    /// A config camera with the controls it was left with, when they
    /// were changed and still pass the checks.
    pub fn with_controls(&self, mut config: CameraConfig) -> CameraConfig {
        let saved = self
            .cameras
            .iter()
            .find(|c| c.origin == "config" && c.id == config.id)
            .and_then(|c| c.controls.as_ref());
        if let Some(saved) = saved {
            match controls::checked(saved) {
                Ok(controls) => config.controls = controls,
                Err(e) => tracing::warn!(camera = %config.id, "saved controls ignored: {e}"),
            }
        }
        config
    }
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    /// One write at a time: two would share the temporary file, and one
    /// could rename the other's half-written bytes into place.
    writing: std::sync::Mutex<()>,
}

impl Store {
    /// Creates the directory (mode 0700) when it is missing.
    pub fn open(dir: &Path) -> Result<Store> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        }
        Ok(Store {
            path: dir.join(FILE_NAME),
            writing: std::sync::Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; empty when there is no file yet. A file that
    /// cannot be read is an error (the node must not start and then
    /// overwrite what it could not read).
    pub fn load(&self) -> Result<Saved> {
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()))
            }
        };
        let saved: Saved = serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is damaged (move it aside to start afresh)",
                self.path.display()
            )
        })?;
        if saved.v != VERSION {
            bail!(
                "{} is version {}; this node reads version {VERSION}",
                self.path.display(),
                saved.v
            );
        }
        Ok(saved)
    }

    /// Replaces the file atomically with what `now` gives, taken while no
    /// other write runs (so an older picture never lands after a newer one).
    pub fn save(&self, now: impl FnOnce() -> Saved) -> Result<()> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let saved = &now();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&serde_json::to_vec_pretty(saved).unwrap_or_default())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            anyhow::Error::from(e).context(format!("cannot write {}", self.path.display()))
        })
    }
}

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
                let mut config =
                    self.camera_config(cam.id.clone(), source, cam.output.unwrap_or_default())?;
                if let Some(saved) = &cam.controls {
                    config.controls = controls::checked(saved).map_err(|e| refused(400, e))?;
                }
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
                    controls: (api || e.controls_changed()).then_some(config.controls),
                }
            })
            .collect();
        Saved {
            v: VERSION,
            cameras,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saves_privately_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("camfleet-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("state")).unwrap();
        assert_eq!(store.load().unwrap(), Saved::default());
        let saved = Saved {
            v: VERSION,
            cameras: vec![SavedCamera {
                id: "drone1".into(),
                origin: "api".into(),
                enabled: false,
                source: Some("rtsp://u:pw@h/x".into()),
                tcp_port: 8003,
                output: None,
                pushes: vec![],
                controls: None,
            }],
        };
        store.save(|| saved.clone()).unwrap();
        assert_eq!(store.load().unwrap(), saved);
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(store.path(), b"{\"v\":1,\"cam").unwrap();
        assert!(format!("{:#}", store.load().unwrap_err()).contains("damaged"));
        let _ = fs::remove_dir_all(&dir);
    }
}
