//! The camera API's changes: a camera added, changed or removed, a push
//! started or stopped. Each is checked (source, id, sizes, ports, limits),
//! done, then saved; one at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;

use super::{refused, Cameras, Entry, Origin, Refused};
use crate::config::{check_id, CameraConfig};
use crate::push::{Push, PushUrl};
use crate::source::controls::{self, Controls};
use crate::source::secrets::{check_text, MAX_SOURCE_LEN};
use crate::source::url;
use crate::source::{CaptureSettings, Output, SourceSpec};
use shared::frame::Codec;

/// Cameras a node runs at most (the config file's and the API's).
pub const MAX_CAMERAS: usize = 32;
/// RTSP servers one camera is pushed to at most.
pub const MAX_PUSHES: usize = 4;
/// How far past the base port an added camera's port is looked for.
const PORT_SEARCH: u16 = 64;

/// `POST /api/v1/cameras`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCamera {
    pub id: Option<String>,
    pub source: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub quality: Option<u8>,
    /// `mjpeg` or `h264`; absent: MJPEG, or an H.264 input copied.
    pub codec: Option<Codec>,
    pub tcp_port: Option<u16>,
    pub enabled: Option<bool>,
    /// Camera controls (rpicam sources).
    #[serde(default)]
    pub controls: Controls,
    /// RTSP servers to push it to.
    #[serde(default)]
    pub pushes: Vec<String>,
}

/// `PATCH /api/v1/cameras/{id}`: what is given changes; the camera's
/// source restarts with it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraPatch {
    pub source: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub quality: Option<u8>,
    pub codec: Option<Codec>,
    pub enabled: Option<bool>,
    /// Camera controls to change (rpicam sources; config-file cameras
    /// too): each checked, `null` removing one. `"controls": null` goes
    /// back to the config file's (none for an API camera).
    #[serde(default, deserialize_with = "present")]
    pub controls: Option<Option<BTreeMap<String, Value>>>,
}

/// A key that is present, even as `null` (`Some(None)`), told from one
/// left out (`None`, the default).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl Cameras {
    /// Starts pushing a camera to an RTSP server; saved.
    pub async fn add_push(&self, id: &str, url: &str) -> Result<Arc<Push>, Refused> {
        let _edit = self.edits.lock().await;
        let entry = self.existing(id)?;
        let url = PushUrl::parse(url).map_err(|e| refused(400, e))?;
        if entry.pushes().len() >= MAX_PUSHES {
            return Err(refused(
                409,
                format!("{id} is pushed to {MAX_PUSHES} servers already"),
            ));
        }
        if entry.pushes().iter().any(|p| p.url == url) {
            return Err(refused(409, format!("{id} is pushed to {url} already")));
        }
        let push = self.start_push(&entry, url, Origin::Api);
        entry.status.note(&format!("pushing to {}", push.url));
        self.save();
        self.bump();
        Ok(push)
    }

    /// Stops a push; one from the config file cannot be removed.
    pub async fn remove_push(&self, id: &str, push: &str) -> Result<(), Refused> {
        let _edit = self.edits.lock().await;
        let entry = self.existing(id)?;
        let mut pushes = entry.pushes.lock().expect("pushes lock");
        let Some(at) = pushes.iter().position(|(_, p)| p.id == push) else {
            return Err(refused(404, format!("{id} has no push {push:?}")));
        };
        if pushes[at].0 == Origin::Config {
            return Err(refused(409, "this push comes from the config file"));
        }
        let (_, gone) = pushes.remove(at);
        drop(pushes);
        gone.stop.cancel();
        entry
            .status
            .note(&format!("no longer pushing to {}", gone.url));
        self.save();
        self.bump();
        Ok(())
    }

    /// Adds a camera from an API request: checked, given a port, started,
    /// saved.
    pub async fn add(self: &Arc<Self>, new: NewCamera) -> Result<Arc<Entry>, Refused> {
        let _edit = self.edits.lock().await;
        let source = self.check_source(&new.source)?;
        let id = match new.id {
            Some(id) => id,
            None => self.free_id(),
        };
        check_id("id", &id).map_err(|e| refused(400, e.to_string()))?;
        if self.get(&id).is_some() {
            return Err(refused(409, format!("there is a camera {id:?} already")));
        }
        if self.list().len() >= MAX_CAMERAS {
            return Err(refused(
                409,
                format!("this node runs {MAX_CAMERAS} cameras already"),
            ));
        }
        let config = self.camera_config(
            id,
            source,
            Output {
                width: new.width,
                height: new.height,
                fps: new.fps,
                quality: new.quality.unwrap_or(0),
                codec: new.codec,
            },
        )?;
        let config = CameraConfig {
            controls: self.controls_for(&config, &Controls::new(), &new.controls)?,
            ..config
        };
        let listener = self.listener(new.tcp_port).await?;
        let pushes = new
            .pushes
            .iter()
            .map(|u| PushUrl::parse(u).map_err(|e| refused(400, format!("push: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if pushes.len() > MAX_PUSHES {
            return Err(refused(400, format!("at most {MAX_PUSHES} pushes")));
        }
        let enabled = new.enabled.unwrap_or(true);
        let entry = self
            .start(config, Origin::Api, listener, enabled)
            .map_err(|e| refused(500, format!("cannot start the camera: {e}")))?;
        for url in pushes {
            self.start_push(&entry, url, Origin::Api);
        }
        entry
            .status
            .note(&format!("added through the API: {}", entry.config().source));
        self.save();
        Ok(entry)
    }

    /// Removes a camera added over the API: its viewers are disconnected
    /// and its converter stopped.
    pub async fn remove(&self, id: &str) -> Result<(), Refused> {
        let _edit = self.edits.lock().await;
        let entry = self.existing(id)?;
        if entry.origin == Origin::Config {
            return Err(refused(
                409,
                format!("{id} comes from the config file: stop it, or remove it from the file"),
            ));
        }
        self.entries
            .write()
            .expect("entries lock")
            .retain(|e| e.id != id);
        entry.stop.cancel();
        self.env.rtsp.remove_camera(id).await;
        if let Some((token, handle)) = entry.supervisor.lock().await.take() {
            token.cancel();
            let _ = handle.await;
        }
        tracing::info!(camera = id, "camera removed through the API");
        self.refresh_info();
        self.save();
        self.bump();
        Ok(())
    }

    /// Changes a camera's source, output or controls; its supervisor
    /// restarts with them while its viewers stay connected. A config-file
    /// camera takes controls and `enabled` only.
    pub async fn patch(&self, id: &str, patch: CameraPatch) -> Result<Arc<Entry>, Refused> {
        let _edit = self.edits.lock().await;
        let entry = self.existing(id)?;
        let changes_source = patch.source.is_some()
            || patch.width.is_some()
            || patch.height.is_some()
            || patch.fps.is_some()
            || patch.quality.is_some()
            || patch.codec.is_some();
        if changes_source && entry.origin == Origin::Config {
            return Err(refused(
                409,
                format!("{id} comes from the config file: change its source there"),
            ));
        }
        let old = entry.config();
        let mut config = old.clone();
        if changes_source {
            let source = match &patch.source {
                Some(text) => self.check_source(text)?,
                None => old.source.clone(),
            };
            config = self.camera_config(
                id.to_owned(),
                source,
                Output {
                    width: patch.width.or(old.output.width),
                    height: patch.height.or(old.output.height),
                    fps: patch.fps.or(old.output.fps),
                    quality: patch.quality.unwrap_or(old.output.quality),
                    codec: patch.codec.or(old.output.codec),
                },
            )?;
            // Controls are rpicam-vid's: another source leaves them behind.
            if config.source == SourceSpec::Rpicam {
                config.controls = old.controls.clone();
            }
        }
        match &patch.controls {
            Some(Some(changes)) => {
                config.controls = self.controls_for(&config, &old.controls, changes)?;
            }
            Some(None) => config.controls = entry.file_controls(),
            None => {}
        }
        if changes_source || config.controls != old.controls {
            let mut supervisor = entry.supervisor.lock().await;
            if let Some((token, handle)) = supervisor.take() {
                token.cancel();
                let _ = handle.await;
            }
            *entry.config.lock().expect("config lock") = config.clone();
            let what = match changes_source {
                true => format!("changed through the API: {}", config.source),
                false => format!("controls now {}", describe_controls(&config.controls)),
            };
            tracing::info!(camera = id, "{what}");
            entry.status.note(&what);
            *supervisor = Some(self.supervise(&entry, config));
        }
        if let Some(on) = patch.enabled {
            entry.hub.set_enabled(on);
        }
        self.refresh_info();
        self.save();
        self.bump();
        Ok(entry)
    }

    /// A change asked on the camera's MQTT `set` topic (`{"controls":{..}}`,
    /// `{"enabled":false}`): done as a PATCH would, or refused with a WARN
    /// and the reason on the camera's state topic; nothing restarts then.
    pub async fn set_from_mqtt(&self, id: &str, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Set {
            #[serde(default, deserialize_with = "present")]
            controls: Option<Option<std::collections::BTreeMap<String, serde_json::Value>>>,
            enabled: Option<bool>,
        }
        let Some(entry) = self.get(id) else {
            tracing::warn!(
                camera = id,
                "a set message for a camera this node does not have"
            );
            return;
        };
        let done = match serde_json::from_slice::<Set>(payload) {
            Ok(set) => self
                .patch(
                    id,
                    CameraPatch {
                        controls: set.controls,
                        enabled: set.enabled,
                        ..CameraPatch::default()
                    },
                )
                .await
                .map(|_| ()),
            Err(e) => Err(refused(
                400,
                format!("not a set message ({{\"controls\":{{..}}}} or {{\"enabled\":..}}): {e}"),
            )),
        };
        let error = done.err().map(|r| r.why);
        if let Some(why) = &error {
            tracing::warn!(camera = id, "refused a change from MQTT: {why}");
        }
        *entry.control_error.lock().expect("control error lock") = error;
        self.bump();
    }

    /// `changes` applied to `current` for the camera `config` describes:
    /// controls are rpicam-vid's, so other sources take none.
    fn controls_for(
        &self,
        config: &CameraConfig,
        current: &Controls,
        changes: &BTreeMap<String, Value>,
    ) -> Result<Controls, Refused> {
        if changes.is_empty() {
            return Ok(current.clone());
        }
        if config.source != SourceSpec::Rpicam {
            return Err(refused(
                409,
                format!(
                    "camera controls are rpicam-vid's; {} is {}",
                    config.id, config.source
                ),
            ));
        }
        controls::apply(current, changes).map_err(|e| refused(400, e))
    }

    fn check_source(&self, text: &str) -> Result<SourceSpec, Refused> {
        let command = text.starts_with("cmd:");
        if (command || text.starts_with("file:")) && !self.env.allow_anything {
            return Err(refused(
                403,
                "cmd: and file: sources run programs or read files of the caller's choosing; \
                 start the node with --api-allow-commands to allow them over the API",
            ));
        }
        if command {
            // A shell line has spaces by nature; only its length is bounded.
            if text.len() > MAX_SOURCE_LEN {
                return Err(refused(400, format!("at most {MAX_SOURCE_LEN} bytes")));
            }
        } else {
            check_text(text).map_err(|e| refused(400, e))?;
        }
        text.parse().map_err(|e: String| refused(400, e))
    }

    pub(super) fn camera_config(
        &self,
        id: String,
        source: SourceSpec,
        asked: Output,
    ) -> Result<CameraConfig, Refused> {
        let Output {
            width,
            height,
            fps,
            quality,
            codec,
        } = asked;
        let quality = (quality > 0).then_some(quality);
        let check = |key: &str, v: Option<u32>, min: u32, max: u32| match v {
            Some(v) if !(min..=max).contains(&v) => Err(refused(
                400,
                format!("{key}: {v} is not between {min} and {max}"),
            )),
            _ => Ok(()),
        };
        check("width", width, 16, url::MAX_WIDTH)?;
        check("height", height, 16, url::MAX_HEIGHT)?;
        check("fps", fps, 1, url::MAX_FPS)?;
        check("quality", quality.map(u32::from), 1, 100)?;
        let d = self.env.defaults;
        let output = Output {
            width,
            height,
            fps,
            quality: quality.unwrap_or(d.quality),
            codec,
        };
        Ok(CameraConfig {
            id,
            source,
            capture: CaptureSettings {
                width: width.unwrap_or(d.width),
                height: height.unwrap_or(d.height),
                fps: fps.unwrap_or(d.fps),
                quality: output.quality,
                codec: codec.unwrap_or(d.codec),
                h264: d.h264,
            },
            tcp_port: 0,
            output,
            pushes: Vec::new(),
            controls: Controls::new(),
        })
    }

    fn free_id(&self) -> String {
        let taken: Vec<String> = self.list().iter().map(|e| e.id.clone()).collect();
        (0..)
            .map(|i| format!("cam{i}"))
            .find(|id| !taken.contains(id))
            .expect("a free id")
    }

    /// A listener on the requested port, or on the first free port after
    /// the base (any free port when the base is 0).
    pub(super) async fn listener(&self, port: Option<u16>) -> Result<TcpListener, Refused> {
        let bind = self.env.bind;
        if let Some(port) = port.filter(|p| *p != 0) {
            return TcpListener::bind((bind, port))
                .await
                .map_err(|e| refused(409, format!("cannot listen on TCP port {port}: {e}")));
        }
        if self.env.base_tcp_port != 0 {
            let used: Vec<u16> = self.list().iter().map(|e| e.tcp_port).collect();
            let base = self.env.base_tcp_port;
            for port in (base..base.saturating_add(PORT_SEARCH)).filter(|p| !used.contains(p)) {
                if let Ok(listener) = TcpListener::bind((bind, port)).await {
                    return Ok(listener);
                }
            }
        }
        TcpListener::bind((bind, 0))
            .await
            .map_err(|e| refused(500, format!("cannot listen on any TCP port: {e}")))
    }
}

/// `shutter=10000, hflip=true`, or `rpicam-vid's defaults`.
fn describe_controls(controls: &Controls) -> String {
    if controls.is_empty() {
        return "rpicam-vid's defaults".into();
    }
    controls
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
