//! The node's HTTP server (DESIGN.md, "node HTTP"): an index page, MJPEG
//! streams and snapshots for browsers, a small JSON API, Prometheus
//! metrics and a health check.
//!
//! Streams read the camera's hub through their own cursor and take the
//! next frame only when the previous one has left for the kernel
//! (`fanout::http`): a browser that keeps up gets every frame, a slow one
//! skips whole frames and gets the newest. A client that stops reading
//! altogether is cut off after `fanout::http::STALL_LIMIT`, so it cannot
//! hold a viewer slot for ever.

mod api;
mod pages;
mod status;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{basic_name, Users, REALM};
use crate::info::NodeState;
use crate::relay::PublishedPlans;
use fanout::http::Peer;
use fanout::multipart::MjpegStream;
use fanout::{Codec, Protocol};
use shared::auth_throttle::AuthThrottle;

#[derive(Debug)]
pub struct HttpServer {
    pub node: Arc<NodeState>,
    /// What `/api/v1/relay` shows.
    pub relay_plans: Arc<PublishedPlans>,
    pub users: Users,
    /// What the camera API's write calls must carry, when set.
    pub api_token: Option<String>,
    pub max_viewers: usize,
    /// Served over HTTPS (a page's `Origin` says https).
    pub tls: bool,
    /// What each wrong password or token costs its address.
    pub throttle: AuthThrottle,
    /// Stops the server and ends the endless MJPEG bodies.
    pub closing: CancellationToken,
}

/// Serves until `server.closing`, then lets open requests end; over TLS
/// with `tls`.
pub async fn run(
    listener: TcpListener,
    tls: Option<shared::tls::TlsAcceptor>,
    server: Arc<HttpServer>,
) {
    let stop = server.closing.clone().cancelled_owned();
    if let Err(e) = fanout::http::serve(listener, tls, router(Arc::clone(&server)), stop).await {
        tracing::error!("HTTP server failed: {e}");
    }
    tracing::info!("HTTP listener closed");
}

pub fn router(server: Arc<HttpServer>) -> Router {
    let guarded = Router::new()
        .route("/", get(pages::index))
        .route("/cameras/{id}/stream.mjpg", get(stream))
        .route("/cameras/{id}/snapshot.jpg", get(snapshot))
        .route("/api/v1/live", get(live))
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/stream", get(stream_urls))
        .route("/api/v1/relay", get(relay_plans))
        .route("/api/v1/control", post(control))
        .merge(api::routes(Arc::clone(&server)))
        .route("/metrics", get(pages::metrics))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&server),
            require_user,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        // Open like /healthz: the time of day is no secret, and viewers
        // without the node's password still need it for one timeline.
        .route("/api/v1/time", get(time))
        .merge(guarded)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such page; try / or /api/v1/status",
            )
        })
        .with_state(server)
}

type Shared = State<Arc<HttpServer>>;

/// With HTTP users, every request but the open ones needs a user's Basic
/// password or the API token. Any password or token presented that does
/// not match (the token also where no users are set) waits in its
/// address's turn and is logged (`shared::auth_throttle`, docs/security.md).
async fn require_user(State(s): Shared, request: Request, next: Next) -> Response {
    let authorization = (request.headers().get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let token = (api::token_of(request.headers()))
        .filter(|_| s.api_token.is_some())
        .map(str::to_owned);
    let method = request.method().as_str().to_owned();
    let open = s.users.is_open();
    let presented = token.is_some() || (!open && authorization.is_some());
    if !presented {
        return if open {
            next.run(request).await
        } else {
            challenge()
        };
    }
    let peer = (request.extensions())
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.addr);
    let check = || match &token {
        Some(token) => api::is_the_token(&s, token),
        None => s.users.allows(authorization.as_deref(), &method, ""),
    };
    let attempt = s.throttle.attempt(peer.map(|p| p.ip()), check).await;
    let Some(text) = attempt.failure_text(peer) else {
        return next.run(request).await;
    };
    let who = match token {
        Some(_) => "the API token".to_owned(),
        None => format!(
            "{:?}",
            basic_name(authorization.as_deref()).unwrap_or_default()
        ),
    };
    tracing::warn!(path = %request.uri().path(), "HTTP: wrong password or token as {who} {text}");
    challenge()
}

/// 401 with the Basic challenge.
fn challenge() -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "user name and password required");
    let challenge = format!("Basic realm=\"{REALM}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// A JSON error body: `{"error": "..."}`.
pub fn error(status: StatusCode, why: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": why.into() }))).into_response()
}

fn unknown_camera(s: &HttpServer, id: &str) -> Response {
    let hubs = s.node.hubs();
    let known: Vec<&str> = hubs.iter().map(|h| h.camera_id()).collect();
    error(
        StatusCode::NOT_FOUND,
        format!("no camera {id:?}; cameras: {}", known.join(", ")),
    )
}

/// Each camera's relay plan (`{}` when relaying is off).
async fn relay_plans(State(s): Shared) -> Response {
    let plans = s.relay_plans.all();
    ([(header::CACHE_CONTROL, "no-store")], Json(plans)).into_response()
}

async fn time() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(crate::clock::now()),
    )
        .into_response()
}

async fn healthz(State(s): Shared) -> Response {
    let mut fine = true;
    let mut text = String::new();
    let vital = s.node.cameras.vital_hubs();
    for hub in &s.node.hubs() {
        let health = s.node.health(hub);
        if vital.iter().any(|v| Arc::ptr_eq(v, hub)) {
            fine &= health.is_fine();
        }
        text.push_str(&format!("{} {health}\n", hub.camera_id()));
    }
    let status = if fine {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CACHE_CONTROL, "no-store")], text).into_response()
}

async fn snapshot(State(s): Shared, Path(id): Path<String>) -> Response {
    let Some(entry) = s.node.cameras.get(&id) else {
        return unknown_camera(&s, &id);
    };
    let jpeg = match entry.hub.latest() {
        None => Err(format!("camera {id} has no frame yet")),
        Some(frame) if frame.codec == Codec::Mjpeg => Ok(frame.data),
        Some(_) => entry.snapshot.jpeg(&entry.hub).await.map_err(|e| {
            tracing::warn!(camera = %id, "snapshot: {e:#}");
            format!("camera {id}: {e:#}")
        }),
    };
    match jpeg {
        Ok(jpeg) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg,
        )
            .into_response(),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn stream(
    State(s): Shared,
    Path(id): Path<String>,
    peer: Option<Extension<ConnectInfo<Peer>>>,
) -> Response {
    let Some(entry) = s.node.cameras.get(&id) else {
        return unknown_camera(&s, &id);
    };
    let codec = entry
        .hub
        .latest()
        .map_or(entry.config().capture.codec, |f| f.codec);
    if codec == Codec::H264 {
        let rtsp = s
            .node
            .info()
            .cameras
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.rtsp.clone())
            .unwrap_or_else(|| format!("rtsp://<node>:8554/{id}"));
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("camera {id} is H.264, which multipart MJPEG cannot carry; play {rtsp} (or read its snapshot.jpg)"),
        );
    }
    let Some(reader) = entry.hub.add_viewer(s.max_viewers, Protocol::Http) else {
        tracing::warn!(camera = %id, "refusing HTTP viewer: {} viewers already connected (max_viewers)", s.max_viewers);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("camera {id} has {} viewers already", s.max_viewers),
        );
    };
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    // Ends with the node's shutdown or the camera's removal.
    MjpegStream::from_reader(reader, peer.as_ref(), entry.stop.clone()).into_response()
}

/// Every camera of the node's page over one WebSocket (docs/protocol.md,
/// "The live WebSocket"). Each camera shown takes a viewer slot, as a
/// stream would; another site's page is refused (WebSocket hijacking).
async fn live(
    State(s): Shared,
    headers: axum::http::HeaderMap,
    peer: Option<Extension<ConnectInfo<Peer>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    let cameras = Arc::new(LiveCameras {
        server: Arc::clone(&s),
        node_prefix: format!("{}/", s.node.info().node_id),
    });
    fanout::live::upgrade(ws, &headers, s.tls, cameras, peer, s.closing.clone())
}

/// The node's cameras for its live WebSocket, by id or `node/id`.
struct LiveCameras {
    server: Arc<HttpServer>,
    node_prefix: String,
}

impl fanout::live::Cameras for LiveCameras {
    fn hub(&self, key: &str) -> Option<Arc<fanout::Hub>> {
        let id = key.strip_prefix(&self.node_prefix).unwrap_or(key);
        self.server.node.hub(id)
    }

    fn reader(&self, hub: &Arc<fanout::Hub>) -> Result<fanout::Reader, String> {
        let max = self.server.max_viewers;
        hub.add_viewer(max, Protocol::Http).ok_or_else(|| {
            tracing::warn!(camera = %hub.camera_id(), "refusing a live WebSocket viewer: {max} viewers already connected (max_viewers)");
            format!("camera {} has {max} viewers already", hub.camera_id())
        })
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    camera: Option<String>,
}

async fn stream_urls(State(s): Shared, Query(q): Query<StreamQuery>) -> Response {
    let Some(id) = q.camera else {
        return error(
            StatusCode::BAD_REQUEST,
            "say which camera: /api/v1/stream?camera=cam0",
        );
    };
    let info = s.node.info();
    let Some(cam) = info.cameras.iter().find(|c| c.id == id) else {
        return unknown_camera(&s, &id);
    };
    let snapshot = cam
        .http
        .as_ref()
        .map(|u| u.replace("/stream.mjpg", "/snapshot.jpg"));
    Json(serde_json::json!({
        "camera": cam.id,
        "enabled": cam.enabled,
        "width": cam.width,
        "height": cam.height,
        "fps": cam.fps,
        "tcp": cam.tcp,
        "rtsp": cam.rtsp,
        "http": cam.http,
        "snapshot": snapshot,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlRequest {
    camera: String,
    action: String,
}

async fn control(State(s): Shared, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = api::check_write(&s, &headers) {
        return api::answer(refused);
    }
    let request: ControlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                "expected {{\"camera\":\"cam0\",\"action\":\"start\"|\"stop\"|\"restart\"}}: {e}"
            ),
            )
        }
    };
    let action = request.action.to_ascii_lowercase();
    let cameras = &s.node.cameras;
    let changed = match action.as_str() {
        "start" | "stop" => cameras.set_enabled(&request.camera, action == "start"),
        "restart" => cameras.restart(&request.camera).map(|()| true),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("action {other:?}: expected \"start\", \"stop\" or \"restart\""),
            )
        }
    };
    match changed {
        None => unknown_camera(&s, &request.camera),
        Some(changed) => Json(serde_json::json!({
            "camera": request.camera,
            "action": action,
            "enabled": s.node.hub(&request.camera).is_some_and(|h| h.is_enabled()),
            "changed": changed,
        }))
        .into_response(),
    }
}
