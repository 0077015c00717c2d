//! The viewer's web dashboard (default http://127.0.0.1:8090/): a live
//! tile per camera (the viewer re-serves the frames it already receives,
//! so browsers never load the Pis), the recording state with Start and
//! Stop (published on `command/rec`, exactly as `mosquitto_pub` would),
//! the sessions on disk with their segments, and the latest value of each
//! sensor topic. Live state goes out as server-sent events; the page is
//! plain HTML, CSS and JS inside the binary.

mod exports;
mod files;
pub mod login;
pub mod metrics;
mod playback;
mod sources;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use fanout::http::Peer;
use fanout::multipart::MjpegStream;
use fanout::Protocol;
use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use shared::messages::RecordingState;
use shared::topics::REC_COMMAND;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ViewerConfig;
use crate::link::live::Live;
use metrics::Metrics;

/// The dashboard's page, with the live tiles' script inline.
static INDEX: LazyLock<String> = LazyLock::new(|| with_live_tiles(include_str!("index.html")));

/// `page` with the live tiles' script where it has [`fanout::live::SCRIPT_MARK`].
pub fn with_live_tiles(page: &str) -> String {
    page.replace(
        fanout::live::SCRIPT_MARK,
        &fanout::live::script_tag("/api/live"),
    )
}

/// How often the page gets the state.
const EVENT_EVERY: Duration = Duration::from_secs(1);

/// What the MQTT side knows, kept for the dashboard.
#[derive(Debug, Default)]
pub struct Feed {
    pub state: Mutex<Option<RecordingState>>,
    /// Node id to online state and when it last changed or was heard.
    pub nodes: Mutex<BTreeMap<String, NodeSeen>>,
    /// Topic to its latest payload.
    pub sensors: Mutex<BTreeMap<String, SensorValue>>,
    /// Each node's last NodeInfo: where its camera API is.
    pub infos: Mutex<BTreeMap<String, shared::messages::NodeInfo>>,
    /// Each node's last health sample (its machine: throttling, Wi-Fi, ...).
    pub health: Mutex<BTreeMap<String, shared::messages::NodeHealth>>,
}

impl Feed {
    pub fn node_event(&self, event: &crate::discovery::NodeEvent) {
        use crate::discovery::NodeEvent;
        let (node, online) = match event {
            NodeEvent::Up(info) => {
                let mut infos = self.infos.lock().expect("feed");
                infos.insert(info.node_id.clone(), info.clone());
                (info.node_id.clone(), true)
            }
            NodeEvent::Down(node) => (node.clone(), false),
        };
        let seen = NodeSeen {
            online,
            seen_at: Utc::now(),
        };
        self.nodes.lock().expect("feed").insert(node, seen);
    }

    /// The latest payload of a sensor topic (text, lossily; at most 200
    /// characters shown).
    pub fn sensor(&self, topic: &str, payload: &[u8]) {
        let text: String = String::from_utf8_lossy(payload).chars().take(200).collect();
        let mut sensors = self.sensors.lock().expect("feed");
        // Bounded: a flood of distinct topics cannot grow the page for ever.
        if sensors.len() >= 500 && !sensors.contains_key(topic) {
            return;
        }
        let value = SensorValue {
            payload: text,
            at: Utc::now(),
        };
        sensors.insert(topic.to_owned(), value);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeSeen {
    pub online: bool,
    pub seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SensorValue {
    pub payload: String,
    pub at: DateTime<Utc>,
}

pub struct Dashboard {
    pub feed: Arc<Feed>,
    pub metrics: Arc<Metrics>,
    /// Every camera's live hub: the tiles' streams read it.
    pub live: Arc<Live>,
    pub client: AsyncClient,
    pub recordings: PathBuf,
    /// The nodes' camera API token (the Sources page's calls carry it).
    pub node_token: Option<String>,
    /// Indexes of recorded segments, for frames at an instant.
    pub segments: Arc<crate::playback::SegmentCache>,
    /// H.264 exports being made or waiting to be downloaded.
    pub exports: Arc<crate::playback::h264::Jobs>,
    /// Recorded H.264 pictures decoded for `frame.jpg`.
    pub pictures: Arc<crate::playback::pictures::Pictures>,
    /// Users, sessions and whether the dashboard is on TLS.
    pub access: Arc<login::Access>,
    pub closing: CancellationToken,
}

impl Dashboard {
    pub fn new(
        config: &ViewerConfig,
        feed: &Arc<Feed>,
        metrics: &Arc<Metrics>,
        live: &Arc<Live>,
        client: &AsyncClient,
        closing: &CancellationToken,
    ) -> Self {
        Dashboard {
            feed: Arc::clone(feed),
            metrics: Arc::clone(metrics),
            live: Arc::clone(live),
            client: client.clone(),
            recordings: config.recordings.clone(),
            node_token: config.node_api_token.clone(),
            segments: Arc::default(),
            pictures: Arc::default(),
            exports: Arc::default(),
            access: Arc::new(login::Access::new(
                config.users.clone(),
                config.tls.is_some(),
            )),
            closing: closing.clone(),
        }
    }
}

/// Serves until `dashboard.closing`, over TLS with `tls`.
pub async fn run(
    listener: TcpListener,
    tls: Option<shared::tls::TlsAcceptor>,
    dashboard: Arc<Dashboard>,
) {
    let stop = dashboard.closing.clone().cancelled_owned();
    if let Err(e) = fanout::http::serve(listener, tls, router(dashboard), stop).await {
        tracing::error!("dashboard stopped: {e}");
    }
}

pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX.as_str()) }))
        .route("/events", get(events))
        .route("/api/state", get(state))
        .route("/metrics", get(metrics))
        .route("/api/rec", post(record))
        .route("/cameras/{node}/{camera}/stream.mjpg", get(stream))
        .route("/cameras/{node}/{camera}/snapshot.jpg", get(picture))
        .route("/api/live", get(live))
        .route("/recordings/{*path}", get(files::download))
        .merge(sources::routes())
        .route(
            "/api/sessions/{session}/{node}/{camera}/frame.jpg",
            get(playback::frame),
        )
        .route(
            "/api/sessions/{session}/{node}/{camera}/export.mp4",
            get(playback::export),
        )
        .route(
            "/api/sessions/{session}/{node}/{camera}/export.h264",
            post(exports::start),
        )
        .route("/api/exports/{id}", get(exports::progress))
        .route("/api/exports/{id}/file", get(exports::file))
        .route("/api/sessions/{session}/timeline", get(playback::timeline))
        .route(
            "/api/sessions/{session}/{node}/{camera}/media.mp4",
            get(playback::media),
        )
        .route(
            "/api/sessions/{session}/export.zip",
            get(playback::export_zip),
        )
        .route(
            "/sessions/{session}",
            get(|| async { Html(include_str!("player.html")) }),
        )
        .route("/login", get(login::page).post(login::login))
        .route("/logout", post(login::logout))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&dashboard),
            login::guard,
        ))
        .with_state(dashboard)
}

type Shared = State<Arc<Dashboard>>;

pub fn error(status: StatusCode, why: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": why.into() }))).into_response()
}

#[derive(Debug, Serialize)]
struct Snapshot {
    recording: Option<RecordingState>,
    cameras: Vec<CameraTile>,
    sessions: Vec<files::SessionListing>,
    sensors: Vec<SensorRow>,
    at: String,
}

#[derive(Debug, Serialize)]
struct CameraTile {
    node: String,
    camera: String,
    stream: String,
    fps: f64,
    missed: u64,
    online: bool,
    /// Seconds since the camera's last frame, if it sent one.
    last_frame_age_s: Option<f64>,
    recording: bool,
    /// The node's clock as measured, with a warning when it is far off.
    clock: Option<shared::messages::ClockFigures>,
    /// The relay viewer the camera arrives through; `None`: its node.
    via: Option<String>,
    /// The node's machine as last sampled: its warnings make the badge.
    node_health: Option<shared::messages::NodeHealth>,
}

#[derive(Debug, Serialize)]
struct SensorRow {
    topic: String,
    payload: String,
    at: String,
}

fn snapshot(d: &Dashboard) -> Snapshot {
    let recording = d.feed.state.lock().expect("feed").clone();
    let nodes = d.feed.nodes.lock().expect("feed").clone();
    let health = d.feed.health.lock().expect("feed").clone();
    let links = recording
        .as_ref()
        .map(|r| r.links.clone())
        .unwrap_or_default();
    let cameras = d
        .live
        .list()
        .into_iter()
        .filter_map(|(key, live)| {
            let tile = live.tile();
            let (node, camera) = key.split_once('/')?;
            let link = links.iter().find(|l| l.node == node && l.camera == camera);
            Some(CameraTile {
                stream: format!("/cameras/{node}/{camera}/stream.mjpg"),
                // The tile's own smoothed rate: live, where the link figures are per 10 s.
                fps: tile.as_ref().map_or(0.0, |t| t.fps),
                missed: link.map_or(0, |l| l.missed),
                online: nodes.get(node).is_some_and(|n| n.online),
                last_frame_age_s: tile.as_ref().map(|t| t.at.elapsed().as_secs_f64()),
                recording: live.is_recording(),
                clock: link.and_then(|l| l.clock.clone()),
                via: link.and_then(|l| l.via.clone()),
                node_health: health.get(node).cloned(),
                node: node.to_owned(),
                camera: camera.to_owned(),
            })
        })
        .collect();
    let sensors = d
        .feed
        .sensors
        .lock()
        .expect("feed")
        .iter()
        .map(|(topic, v)| SensorRow {
            topic: topic.clone(),
            payload: v.payload.clone(),
            at: v.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        })
        .collect();
    Snapshot {
        recording,
        cameras,
        sessions: files::sessions(&d.recordings),
        sensors,
        at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

async fn metrics(State(d): Shared) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        d.metrics.render(),
    )
        .into_response()
}

async fn state(State(d): Shared) -> Response {
    Json(snapshot(&d)).into_response()
}

async fn events(State(d): Shared) -> Response {
    let ticks = tokio::time::interval(EVENT_EVERY);
    let stream = futures_lite::stream::unfold((d, ticks), |(d, mut ticks)| async move {
        tokio::select! {
            _ = d.closing.cancelled() => None,
            _ = ticks.tick() => {
                let data = serde_json::to_string(&snapshot(&d)).unwrap_or_default();
                Some((Ok::<_, Infallible>(Event::default().event("state").data(data)), (d, ticks)))
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecRequest {
    action: String,
}

/// Start or Stop: published on `command/rec` like any other client's
/// command, so every viewer on the broker acts on it.
async fn record(State(d): Shared, body: Bytes) -> Response {
    let request: RecRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"action\":\"start\"|\"stop\"}}: {e}"),
            )
        }
    };
    let action = request.action.to_ascii_lowercase();
    if action != "start" && action != "stop" {
        return error(
            StatusCode::BAD_REQUEST,
            format!("action {:?}: start or stop", request.action),
        );
    }
    match d
        .client
        .publish(REC_COMMAND, QoS::AtLeastOnce, false, action.clone())
        .await
    {
        Ok(()) => {
            tracing::info!("dashboard: published {action} on {REC_COMMAND}");
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "published": action })),
            )
                .into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot publish: {e}"),
        ),
    }
}

/// A camera's live MJPEG stream (`multipart/x-mixed-replace`), read from
/// its hub like the node's own: a slow browser skips to the newest frame,
/// nothing else waits; it ends when the camera goes or the viewer stops.
/// How long `stream.mjpg` waits for a camera's first frame (it tells the codec).
const FIRST_FRAME_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn stream(
    State(d): Shared,
    Path((node, camera)): Path<(String, String)>,
    peer: Option<Extension<ConnectInfo<Peer>>>,
) -> Response {
    let key = format!("{node}/{camera}");
    let Some(live) = d.live.get(&key) else {
        return error(StatusCode::NOT_FOUND, format!("no camera {key}"));
    };
    // What the camera sends is known from its first frame: wait for one.
    let mut first = live.hub.add_local_reader(Protocol::Http);
    let Ok(frame) = tokio::time::timeout(FIRST_FRAME_WAIT, first.next()).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{key} sent no frame within {} s",
                FIRST_FRAME_WAIT.as_secs()
            ),
        );
    };
    drop(first);
    if frame.codec == fanout::Codec::H264 {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{key} is an H.264 camera: its tile plays on the dashboard's page (the live WebSocket); /cameras/{node}/{camera}/snapshot.jpg is its newest picture"),
        );
    }
    let reader = live.hub.add_local_reader(Protocol::Http);
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    MjpegStream::from_reader(reader, peer.as_ref(), live.gone.clone()).into_response()
}

/// A camera's newest picture as a JPEG (an H.264 camera's decoded).
async fn picture(State(d): Shared, Path((node, camera)): Path<(String, String)>) -> Response {
    let key = format!("{node}/{camera}");
    let Some(live) = d.live.get(&key) else {
        return error(StatusCode::NOT_FOUND, format!("no camera {key}"));
    };
    match live.picture().await {
        Ok(jpeg) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{key}: no picture: {e:#}"),
        ),
    }
}

/// Every tile of a page over one WebSocket (docs/protocol.md, "The live
/// WebSocket"); the login guard has run, and a page of another site is
/// refused (WebSocket hijacking).
async fn live(
    State(d): Shared,
    headers: axum::http::HeaderMap,
    peer: Option<Extension<ConnectInfo<Peer>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    let cameras: Arc<dyn fanout::live::Cameras> = Arc::clone(&d.live) as _;
    fanout::live::upgrade(ws, &headers, d.access.tls, cameras, peer, d.closing.clone())
}

/// A dashboard reachable from the network without users (or with users
/// but passwords in the clear) is said so at start.
pub fn warn_if_exposed(local: std::net::SocketAddr, config: &ViewerConfig) {
    if local.ip().is_loopback() {
        return;
    }
    if config.users.is_empty() {
        tracing::warn!(
            "the dashboard on {local} has no users: anyone on the network can watch the cameras, start and stop \
             recordings and download them. Add [[user]] entries to the config file (viewer hash-password NAME) \
             or listen on 127.0.0.1 (docs/security.md)"
        );
    } else if config.tls.is_none() {
        tracing::warn!(
            "the dashboard on {local} takes passwords over plain HTTP: give it --tls-cert and --tls-key (docs/security.md)"
        );
    }
}
