//! `GET /api/v1/status`: NodeInfo, and each camera's live figures.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::Shared;
use crate::info::NodeState;
use fanout::{Health, Protocol};

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

pub(super) async fn status(State(s): Shared) -> Response {
    let mut body = serde_json::to_value(s.node.info()).unwrap_or_default();
    body["stats"] = serde_json::to_value(camera_status(&s.node)).unwrap_or_default();
    Json(body).into_response()
}

/// Every camera's figures, in order.
fn camera_status(node: &NodeState) -> Vec<CameraStatus> {
    node.hubs()
        .iter()
        .map(|hub| {
            let f = hub.snapshot();
            let by = |p: Protocol| f.viewers_by[p as usize];
            CameraStatus {
                id: hub.camera_id().to_owned(),
                enabled: hub.is_enabled(),
                health: match node.health(hub) {
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
