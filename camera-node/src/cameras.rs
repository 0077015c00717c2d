//! The node's cameras, which come and go at runtime: those of the config
//! file (stopped and started, never deleted) and those added over the API
//! (`/api/v1/cameras`). Each has its hub, its TCP listener, its RTSP entry,
//! its supervisor and its [`Status`]; the registry keeps NodeInfo and the
//! state file in step with them.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::messages::{CameraInfo, NodeInfo};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::camera::Camera;
use crate::config::{check_id, CameraConfig};
use crate::presence::host_port;
use crate::serve::rtsp::push::{Push, PushUrl, PushView};
use crate::serve::rtsp::{RtspCamera, RtspServer};
use crate::source::url::{self, Output};
use crate::source::{CaptureSettings, SourceSpec};
use crate::status::{RunState, Status, StatusView};
use crate::store::{Saved, SavedCamera, Store, VERSION};
use fanout::{tcp, Hub};

/// Cameras a node runs at most (the config file's and the API's).
pub const MAX_CAMERAS: usize = 32;
/// RTSP servers one camera is pushed to at most.
pub const MAX_PUSHES: usize = 4;
/// How far past the base port an added camera's port is looked for.
const PORT_SEARCH: u16 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Api,
}

/// Why a change was refused, as an HTTP status and a sentence.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub why: String,
}

fn refused(status: u16, why: impl Into<String>) -> Refused {
    Refused {
        status,
        why: why.into(),
    }
}

/// One camera of the node.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub origin: Origin,
    pub hub: Arc<Hub>,
    pub rtsp: Arc<RtspCamera>,
    pub tcp_port: u16,
    pub status: Arc<Status>,
    config: std::sync::Mutex<CameraConfig>,
    restart: Arc<Notify>,
    /// Ends what serves this camera (TCP listener and viewers, HTTP streams).
    pub stop: CancellationToken,
    supervisor: tokio::sync::Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    /// RTSP servers the camera is pushed to, with where each came from.
    pushes: std::sync::Mutex<Vec<(Origin, Arc<Push>)>>,
    /// Frames and kbit/s over the last [`RATE_EVERY`].
    rates: std::sync::Mutex<(f64, f64)>,
}

/// How often a camera's frame rate and bit rate are measured.
const RATE_EVERY: Duration = Duration::from_secs(2);

impl Entry {
    pub fn pushes(&self) -> Vec<Arc<Push>> {
        let pushes = self.pushes.lock().expect("pushes lock");
        pushes.iter().map(|(_, p)| Arc::clone(p)).collect()
    }

    pub fn config(&self) -> CameraConfig {
        self.config.lock().expect("config lock").clone()
    }

    /// What the API shows of the camera.
    pub fn view(&self) -> CameraView {
        let config = self.config();
        let figures = self.hub.snapshot();
        let (fps, kbit_s) = *self.rates.lock().expect("rates lock");
        CameraView {
            id: self.id.clone(),
            origin: self.origin,
            source: config.source.to_string(),
            enabled: self.hub.is_enabled(),
            output: config.output,
            tcp_port: self.tcp_port,
            fps,
            kbit_s,
            frames: figures.frames,
            bytes: figures.bytes,
            last_frame_age_s: figures.last_frame_at.map(|t| t.elapsed().as_secs_f64()),
            status: self.status.view(),
            pushes: self.pushes().iter().map(|p| p.view()).collect(),
        }
    }
}

/// A camera as `GET /api/v1/cameras` shows it (passwords redacted).
#[derive(Debug, Serialize)]
pub struct CameraView {
    pub id: String,
    pub origin: Origin,
    pub source: String,
    pub enabled: bool,
    pub output: Output,
    pub tcp_port: u16,
    /// Frames per second and kilobits per second out of the source, over
    /// the last two seconds.
    pub fps: f64,
    pub kbit_s: f64,
    pub frames: u64,
    pub bytes: u64,
    pub last_frame_age_s: Option<f64>,
    #[serde(flatten)]
    pub status: StatusView,
    pub pushes: Vec<PushView>,
}

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
    pub tcp_port: Option<u16>,
    pub enabled: Option<bool>,
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
    pub enabled: Option<bool>,
}

/// What every camera is started with.
#[derive(Debug)]
pub struct Env {
    pub node_id: String,
    pub bind: IpAddr,
    /// Host viewers reach the node at.
    pub host: String,
    pub rtsp_base: String,
    pub http_base: String,
    /// Port of the first camera (0: any free port).
    pub base_tcp_port: u16,
    pub max_viewers: usize,
    pub watchdog: Duration,
    /// Picture settings of a test camera added without them.
    pub defaults: CaptureSettings,
    pub rtsp: Arc<RtspServer>,
    /// Viewer-facing tasks; `servers_stop` ends them (shutdown step 1).
    pub servers: TaskTracker,
    pub servers_stop: CancellationToken,
    /// Supervisors; `cameras_stop` ends them (shutdown step 2).
    pub supervisors: TaskTracker,
    pub cameras_stop: CancellationToken,
    /// Whether the API may add `cmd:` and `file:` sources.
    pub allow_anything: bool,
}

#[derive(Debug)]
pub struct Cameras {
    entries: RwLock<Vec<Arc<Entry>>>,
    info: Arc<watch::Sender<NodeInfo>>,
    env: Env,
    store: Option<Store>,
    /// One change (add, remove, patch, start, stop) at a time.
    edits: tokio::sync::Mutex<()>,
    /// Bumped when the set or any camera's status changes.
    changed: watch::Sender<u64>,
}

impl Cameras {
    pub fn new(env: Env, info: Arc<watch::Sender<NodeInfo>>, store: Option<Store>) -> Arc<Self> {
        Arc::new(Cameras {
            entries: RwLock::default(),
            info,
            env,
            store,
            edits: tokio::sync::Mutex::new(()),
            changed: watch::Sender::new(0),
        })
    }

    pub fn list(&self) -> Vec<Arc<Entry>> {
        self.entries.read().expect("entries lock").clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.list().into_iter().find(|e| e.id == id)
    }

    pub fn hubs(&self) -> Vec<Arc<Hub>> {
        self.list().iter().map(|e| Arc::clone(&e.hub)).collect()
    }

    /// Hubs of the cameras the node cannot do without (its own cameras,
    /// not streams added over the API), for systemd's watchdog.
    pub fn vital_hubs(&self) -> Vec<Arc<Hub>> {
        let list = self.list();
        let vital = |e: &&Arc<Entry>| {
            e.origin == Origin::Config && !matches!(e.config().source, SourceSpec::Url(_))
        };
        list.iter()
            .filter(vital)
            .map(|e| Arc::clone(&e.hub))
            .collect()
    }

    /// Wakes on every change of the set or of a camera's status.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn state_file(&self) -> Option<&std::path::Path> {
        self.store.as_ref().map(|s| s.path())
    }

    /// Starts a camera on `listener`. Called for the config file's cameras
    /// at start, and by [`Cameras::add`].
    pub fn start(
        self: &Arc<Self>,
        config: CameraConfig,
        origin: Origin,
        listener: TcpListener,
        enabled: bool,
    ) -> std::io::Result<Arc<Entry>> {
        let port = tcp::local_port(&listener)?;
        let hub = Hub::new(&config.id);
        hub.set_enabled(enabled);
        let rtsp = Arc::new(RtspCamera::new(Arc::clone(&hub), config.capture.fps));
        let entry = Arc::new(Entry {
            id: config.id.clone(),
            origin,
            hub: Arc::clone(&hub),
            rtsp: Arc::clone(&rtsp),
            tcp_port: port,
            status: Arc::new(Status::new(if enabled {
                RunState::Starting
            } else {
                RunState::Stopped
            })),
            config: std::sync::Mutex::new(config.clone()),
            restart: Arc::new(Notify::new()),
            stop: self.env.servers_stop.child_token(),
            supervisor: tokio::sync::Mutex::new(None),
            pushes: std::sync::Mutex::default(),
            rates: std::sync::Mutex::default(),
        });
        self.env.servers.spawn(measure_rates(Arc::clone(&entry)));
        tracing::info!(camera = %config.id, "serving {} on TCP port {port} (source {})", config.id, config.source);
        let task = tcp::run(
            listener,
            Arc::clone(&hub),
            self.env.max_viewers,
            entry.stop.clone(),
            self.env.servers.clone(),
        );
        self.env
            .servers
            .spawn(task.instrument(tracing::info_span!("tcp", camera = %config.id)));
        self.env.rtsp.add_camera(rtsp);
        // Status changes reach the registry's watchers.
        let mut status = entry.status.watch();
        let registry = Arc::downgrade(self);
        let stop = entry.stop.clone();
        self.env.servers.spawn(async move {
            while stop
                .run_until_cancelled(status.changed())
                .await
                .is_some_and(|r| r.is_ok())
            {
                match registry.upgrade() {
                    Some(r) => r.bump(),
                    None => break,
                }
            }
        });
        self.entries
            .write()
            .expect("entries lock")
            .push(Arc::clone(&entry));
        for url in &config.pushes {
            match PushUrl::parse(url) {
                Ok(url) => {
                    self.start_push(&entry, url, Origin::Config);
                }
                Err(e) => tracing::warn!(camera = %entry.id, "push {}: {e}", url::redact(url)),
            }
        }
        let supervisor = self.supervise(&entry, config);
        *entry.supervisor.try_lock().expect("a new entry") = Some(supervisor);
        self.refresh_info();
        Ok(entry)
    }

    fn start_push(&self, entry: &Arc<Entry>, url: PushUrl, origin: Origin) -> Arc<Push> {
        let mut pushes = entry.pushes.lock().expect("pushes lock");
        let id = (1..)
            .map(|i| format!("p{i}"))
            .find(|id| !pushes.iter().any(|(_, p)| &p.id == id))
            .expect("a free id");
        let push = Push::new(id, url, entry.stop.child_token(), Arc::clone(&entry.status));
        let task = Arc::clone(&push).run(Arc::clone(&entry.rtsp), self.env.node_id.clone());
        let span = tracing::info_span!("push", camera = %entry.id);
        self.env.servers.spawn(task.instrument(span));
        pushes.push((origin, Arc::clone(&push)));
        push
    }

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

    fn supervise(
        &self,
        entry: &Arc<Entry>,
        config: CameraConfig,
    ) -> (CancellationToken, JoinHandle<()>) {
        let token = self.env.cameras_stop.child_token();
        let camera = Camera {
            config,
            hub: Arc::clone(&entry.hub),
            watchdog: self.env.watchdog,
            status: Arc::clone(&entry.status),
            restart: Arc::clone(&entry.restart),
        };
        let span = tracing::info_span!("camera", camera = %entry.id);
        let handle = self
            .env
            .supervisors
            .spawn(camera.run(token.clone()).instrument(span));
        (token, handle)
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
        let config = self.camera_config(id, source, new.width, new.height, new.fps, new.quality)?;
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

    /// Changes an API camera's source or output; its supervisor restarts
    /// with them while its viewers stay connected.
    pub async fn patch(&self, id: &str, patch: CameraPatch) -> Result<Arc<Entry>, Refused> {
        let _edit = self.edits.lock().await;
        let entry = self.existing(id)?;
        let changes_source = patch.source.is_some()
            || patch.width.is_some()
            || patch.height.is_some()
            || patch.fps.is_some()
            || patch.quality.is_some();
        if changes_source {
            if entry.origin == Origin::Config {
                return Err(refused(
                    409,
                    format!("{id} comes from the config file: change it there"),
                ));
            }
            let old = entry.config();
            let source = match &patch.source {
                Some(text) => self.check_source(text)?,
                None => old.source.clone(),
            };
            let config = self.camera_config(
                id.to_owned(),
                source,
                patch.width.or(old.output.width),
                patch.height.or(old.output.height),
                patch.fps.or(old.output.fps),
                patch.quality.or(Some(old.output.quality)),
            )?;
            let mut supervisor = entry.supervisor.lock().await;
            if let Some((token, handle)) = supervisor.take() {
                token.cancel();
                let _ = handle.await;
            }
            *entry.config.lock().expect("config lock") = config.clone();
            entry
                .status
                .note(&format!("changed through the API: {}", config.source));
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

    /// Turns capture on or off and saves it. `None` for an unknown camera,
    /// else whether anything changed.
    pub fn set_enabled(&self, id: &str, on: bool) -> Option<bool> {
        let entry = self.get(id)?;
        let changed = entry.hub.set_enabled(on);
        if changed {
            tracing::info!(
                camera = id,
                "capture turned {} through the API",
                if on { "on" } else { "off" }
            );
            self.refresh_info();
            self.save();
            self.bump();
        }
        Some(changed)
    }

    /// Ends the camera's current run and starts the next at once.
    pub fn restart(&self, id: &str) -> Option<()> {
        let entry = self.get(id)?;
        entry.restart.notify_one();
        Some(())
    }

    fn existing(&self, id: &str) -> Result<Arc<Entry>, Refused> {
        self.get(id)
            .ok_or_else(|| refused(404, format!("no camera {id:?}")))
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
            if text.len() > url::MAX_SOURCE_LEN {
                return Err(refused(
                    400,
                    format!("at most {} bytes", url::MAX_SOURCE_LEN),
                ));
            }
        } else {
            url::check_text(text).map_err(|e| refused(400, e))?;
        }
        text.parse().map_err(|e: String| refused(400, e))
    }

    fn camera_config(
        &self,
        id: String,
        source: SourceSpec,
        width: Option<u32>,
        height: Option<u32>,
        fps: Option<u32>,
        quality: Option<u8>,
    ) -> Result<CameraConfig, Refused> {
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
        };
        Ok(CameraConfig {
            id,
            source,
            capture: CaptureSettings {
                width: width.unwrap_or(d.width),
                height: height.unwrap_or(d.height),
                fps: fps.unwrap_or(d.fps),
                quality: output.quality,
            },
            tcp_port: 0,
            output,
            pushes: Vec::new(),
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
    async fn listener(&self, port: Option<u16>) -> Result<TcpListener, Refused> {
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
        let saved = Saved {
            v: VERSION,
            cameras,
        };
        if let Err(e) = store.save(&saved) {
            tracing::error!("{e:#}");
        }
    }

    /// Rebuilds NodeInfo's camera list; MQTT republishes it when it changed.
    pub fn refresh_info(&self) {
        let cameras: Vec<CameraInfo> = self.list().iter().map(|e| self.camera_info(e)).collect();
        self.info.send_if_modified(|info| {
            let changed = info.cameras != cameras;
            info.cameras = cameras;
            changed
        });
    }

    fn camera_info(&self, e: &Entry) -> CameraInfo {
        let config = e.config();
        let (width, height) = e
            .hub
            .latest()
            .and_then(|f| crate::mjpeg::dimensions(&f.jpeg))
            .unwrap_or((config.capture.width, config.capture.height));
        CameraInfo {
            id: e.id.clone(),
            width,
            height,
            fps: config.capture.fps,
            codec: "mjpeg".into(),
            tcp: host_port(&self.env.host, e.tcp_port),
            rtsp: Some(format!("{}/{}", self.env.rtsp_base, e.id)),
            http: Some(format!(
                "{}/cameras/{}/stream.mjpg",
                self.env.http_base, e.id
            )),
            enabled: e.hub.is_enabled(),
        }
    }

    /// Keeps NodeInfo in step with the cameras (a converted stream's
    /// picture size is known from its first frame) until `cancel`.
    pub async fn follow(self: Arc<Self>, cancel: CancellationToken) {
        let mut changed = self.watch();
        while cancel
            .run_until_cancelled(changed.changed())
            .await
            .is_some_and(|r| r.is_ok())
        {
            self.refresh_info();
        }
    }
}

/// Keeps a camera's frame rate and bit rate up to date until it is removed.
async fn measure_rates(entry: Arc<Entry>) {
    let mut ticker = tokio::time::interval(RATE_EVERY);
    let mut last: Option<(tokio::time::Instant, u64, u64)> = None;
    while entry
        .stop
        .run_until_cancelled(ticker.tick())
        .await
        .is_some()
    {
        let f = entry.hub.snapshot();
        let now = tokio::time::Instant::now();
        if let Some((then, frames, bytes)) = last {
            let secs = now.duration_since(then).as_secs_f64().max(1e-3);
            let fps = f.frames.saturating_sub(frames) as f64 / secs;
            let kbit_s = f.bytes.saturating_sub(bytes) as f64 * 8.0 / 1000.0 / secs;
            *entry.rates.lock().expect("rates lock") =
                ((fps * 10.0).round() / 10.0, kbit_s.round());
        }
        last = Some((now, f.frames, f.bytes));
    }
}
