//! The node's cameras, which come and go at runtime: those of the config
//! file (stopped and started, never deleted) and those added over the API
//! (`/api/v1/cameras`). Each has its hub, its TCP listener, its RTSP entry,
//! its supervisor and its [`Status`]; the registry keeps NodeInfo and the
//! state file in step with them.
//!
//! - [`supervisor`]: one camera's supervisor (restarts, backoff, watchdog).
//! - [`status`]: what a supervisor is doing, and its log ring.
//! - `edit`: the API's changes (add, patch, remove, pushes), checked.
//! - [`store`]: the state file, written on every change and read at start.

mod edit;
pub mod status;
pub mod store;
pub mod supervisor;

pub use edit::{CameraPatch, NewCamera, MAX_CAMERAS, MAX_PUSHES};

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use shared::messages::{CameraInfo, NodeInfo};
use shared::net::host_port;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::CameraConfig;
use crate::push::{Push, PushUrl, PushView};
use crate::serve::rtsp::{RtspCamera, RtspServer};
use crate::source::secrets::redact;
use crate::source::{CaptureSettings, Output, SourceSpec};
use fanout::Codec;
use fanout::{tcp, Hub};
use shared::h264::Params;

use self::status::{RunState, Status, StatusView};
use self::store::Store;
use self::supervisor::Camera;

pub use shared::messages::Origin;

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
    /// `snapshot.jpg` decoded, for an H.264 camera.
    pub snapshot: fanout::snapshot::Snapshot,
    /// Why the last change on the camera's MQTT `set` topic was refused.
    control_error: std::sync::Mutex<Option<String>>,
    /// A config camera's controls as its file gives them: the state file
    /// keeps its controls only when they differ.
    file_controls: std::sync::Mutex<crate::source::controls::Controls>,
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

    /// Whether the controls differ from the config file's.
    pub fn controls_changed(&self) -> bool {
        let file = self.file_controls.lock().expect("controls lock");
        *file != self.config.lock().expect("config lock").controls
    }

    /// What `"controls": null` goes back to: the config file's controls
    /// (an API camera's are empty).
    pub fn file_controls(&self) -> crate::source::controls::Controls {
        match self.origin {
            Origin::Config => self.file_controls.lock().expect("controls lock").clone(),
            Origin::Api => Default::default(),
        }
    }

    /// The config file's controls, when the camera started with saved ones.
    pub fn set_file_controls(&self, controls: crate::source::controls::Controls) {
        *self.file_controls.lock().expect("controls lock") = controls;
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
            controls: config.controls,
            control_error: self
                .control_error
                .lock()
                .expect("control error lock")
                .clone(),
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
    /// Camera controls set (rpicam cameras), by rpicam-vid's option names.
    pub controls: crate::source::controls::Controls,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_error: Option<String>,
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
            snapshot: fanout::snapshot::Snapshot::default(),
            control_error: std::sync::Mutex::default(),
            file_controls: std::sync::Mutex::new(config.controls.clone()),
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
                Err(e) => tracing::warn!(camera = %entry.id, "push {}: {e}", redact(url)),
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
        let key = e.hub.latest_key();
        let codec = key.as_ref().map_or(config.capture.codec, |f| f.codec);
        let params = key
            .as_ref()
            .filter(|f| f.codec == Codec::H264)
            .and_then(|f| Params::of_keyframe(&f.data).ok());
        let size = match (&key, &params) {
            (_, Some(p)) => Some((p.info.width, p.info.height)),
            (Some(f), None) => {
                shared::jpeg::dimensions(&f.data).map(|(w, h)| (u32::from(w), u32::from(h)))
            }
            (None, None) => None,
        };
        let (width, height) = size.unwrap_or((config.capture.width, config.capture.height));
        CameraInfo {
            id: e.id.clone(),
            width,
            height,
            fps: config.capture.fps,
            codec: codec.as_str().into(),
            codec_string: params.as_ref().map(|p| p.info.codec_string()),
            gop_frames: match codec {
                Codec::H264 => e.hub.gop_frames(),
                Codec::Mjpeg => None,
            },
            tcp: host_port(&self.env.host, e.tcp_port),
            rtsp: Some(format!("{}/{}", self.env.rtsp_base, e.id)),
            http: (codec == Codec::Mjpeg)
                .then(|| format!("{}/cameras/{}/stream.mjpg", self.env.http_base, e.id)),
            enabled: e.hub.is_enabled(),
        }
    }

    /// Keeps NodeInfo in step with the cameras until `cancel`: at each
    /// change, and every [`RATE_EVERY`] for what the stream itself tells (a
    /// converted stream's picture size from its first frame, an H.264
    /// stream's group length from its second keyframe). NodeInfo is
    /// republished only when it changed.
    pub async fn follow(self: Arc<Self>, cancel: CancellationToken) {
        let mut changed = self.watch();
        let mut tick = tokio::time::interval(RATE_EVERY);
        loop {
            let woke = cancel
                .run_until_cancelled(async {
                    tokio::select! {
                        r = changed.changed() => r.is_ok(),
                        _ = tick.tick() => true,
                    }
                })
                .await;
            if woke != Some(true) {
                break;
            }
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
