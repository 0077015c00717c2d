//! The camera API: cameras added, changed and removed at runtime
//! (docs/sources.md). Reads are open to whoever may see the node's pages;
//! writes also need the API token when one is configured. Source URLs are
//! shown with their passwords replaced by `***`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use super::{error, HttpServer, Shared};
use crate::auth::same;
use crate::cameras::{CameraPatch, NewCamera, Refused};

/// Largest request body the camera API reads.
const MAX_BODY: usize = 16 * 1024;

/// The camera API's routes; every call but a read needs the token when
/// one is configured.
pub fn routes(server: Arc<HttpServer>) -> Router<Arc<HttpServer>> {
    Router::new()
        .route("/api/v1/cameras", get(list).post(add))
        .route("/api/v1/cameras/{id}", get(one).patch(patch).delete(remove))
        .route("/api/v1/cameras/{id}/start", post(start))
        .route("/api/v1/cameras/{id}/stop", post(stop))
        .route("/api/v1/cameras/{id}/restart", post(restart))
        .route("/api/v1/cameras/{id}/log", get(log))
        .route("/api/v1/controls", get(controls))
        .route("/api/v1/cameras/{id}/pushes", post(add_push))
        .route(
            "/api/v1/cameras/{id}/pushes/{push}",
            axum::routing::delete(remove_push),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            server,
            writes_need_the_token,
        ))
}

/// The camera controls a PATCH takes: name, kind, range, what it does.
async fn controls() -> Response {
    let list: Vec<serde_json::Value> = crate::source::controls::CONTROLS
        .iter()
        .map(|c| c.describe())
        .collect();
    Json(serde_json::json!({ "controls": list })).into_response()
}

async fn writes_need_the_token(
    State(s): Shared,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let read = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !read {
        if let Err(refused) = check_write(&s, request.headers()) {
            return answer(refused);
        }
    }
    next.run(request).await
}

/// The token a request carries: `Authorization: Bearer T` or
/// `X-Camfleet-Token: T`.
pub fn token_of(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers.get("x-camfleet-token") {
        return t.to_str().ok();
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

/// Whether `got` is the configured token (which then also stands for a
/// user name and password).
pub fn is_the_token(s: &HttpServer, got: &str) -> bool {
    s.api_token
        .as_ref()
        .is_some_and(|want| same(want.as_bytes(), got.as_bytes()))
}

/// A write call's check: the token, when one is configured.
pub fn check_write(s: &HttpServer, headers: &HeaderMap) -> Result<(), Refused> {
    let Some(want) = &s.api_token else {
        return Ok(());
    };
    match token_of(headers) {
        Some(got) if same(want.as_bytes(), got.as_bytes()) => Ok(()),
        got => {
            tracing::warn!(
                "camera API: write refused ({})",
                if got.is_some() {
                    "wrong token"
                } else {
                    "no token"
                }
            );
            Err(Refused {
                status: 401,
                why: "this node's camera API needs its token: Authorization: Bearer <token>".into(),
            })
        }
    }
}

pub fn answer(refused: Refused) -> Response {
    let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, refused.why)
}

fn body<T: DeserializeOwned>(bytes: &[u8], example: &str) -> Result<T, Refused> {
    if bytes.len() > MAX_BODY {
        return Err(Refused {
            status: 413,
            why: format!("at most {MAX_BODY} bytes"),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| Refused {
        status: 400,
        why: format!("{e}; expected JSON like {example}"),
    })
}

const NEW_EXAMPLE: &str =
    r#"{"id":"drone1","source":"rtmp://10.0.0.5/live/d1","width":1280,"height":720,"fps":15}"#;

async fn list(State(s): Shared) -> Response {
    let cameras: Vec<_> = s.node.cameras.list().iter().map(|e| e.view()).collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({ "cameras": cameras })),
    )
        .into_response()
}

async fn one(State(s): Shared, Path(id): Path<String>) -> Response {
    match s.node.cameras.get(&id) {
        Some(entry) => ([(header::CACHE_CONTROL, "no-store")], Json(entry.view())).into_response(),
        None => super::unknown_camera(&s, &id),
    }
}

async fn log(State(s): Shared, Path(id): Path<String>) -> Response {
    match s.node.cameras.get(&id) {
        Some(entry) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({ "camera": id, "lines": entry.status.log() })),
        )
            .into_response(),
        None => super::unknown_camera(&s, &id),
    }
}

async fn add(State(s): Shared, bytes: Bytes) -> Response {
    let new: NewCamera = match body(&bytes, NEW_EXAMPLE) {
        Ok(new) => new,
        Err(r) => return answer(r),
    };
    match s.node.cameras.add(new).await {
        Ok(entry) => (StatusCode::CREATED, Json(entry.view())).into_response(),
        Err(refused) => {
            tracing::info!("camera API: add refused: {}", refused.why);
            answer(refused)
        }
    }
}

async fn patch(State(s): Shared, Path(id): Path<String>, bytes: Bytes) -> Response {
    let change: CameraPatch = match body(&bytes, r#"{"source":"rtsp://cam/stream1","fps":10}"#) {
        Ok(change) => change,
        Err(r) => return answer(r),
    };
    match s.node.cameras.patch(&id, change).await {
        Ok(entry) => Json(entry.view()).into_response(),
        Err(refused) => answer(refused),
    }
}

async fn remove(State(s): Shared, Path(id): Path<String>) -> Response {
    match s.node.cameras.remove(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => answer(refused),
    }
}

async fn start(s: Shared, id: Path<String>) -> Response {
    switch(s, id, true).await
}

async fn stop(s: Shared, id: Path<String>) -> Response {
    switch(s, id, false).await
}

async fn switch(State(s): Shared, Path(id): Path<String>, on: bool) -> Response {
    match s.node.cameras.set_enabled(&id, on) {
        Some(_) => match s.node.cameras.get(&id) {
            Some(entry) => Json(entry.view()).into_response(),
            None => super::unknown_camera(&s, &id),
        },
        None => super::unknown_camera(&s, &id),
    }
}

async fn restart(State(s): Shared, Path(id): Path<String>) -> Response {
    match s.node.cameras.restart(&id) {
        Some(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "camera": id, "restarting": true })),
        )
            .into_response(),
        None => super::unknown_camera(&s, &id),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPush {
    url: String,
}

async fn add_push(State(s): Shared, Path(id): Path<String>, bytes: Bytes) -> Response {
    let new: NewPush = match body(&bytes, r#"{"url":"rtsp://user:pass@server:8554/door"}"#) {
        Ok(new) => new,
        Err(r) => return answer(r),
    };
    match s.node.cameras.add_push(&id, &new.url).await {
        Ok(push) => (StatusCode::CREATED, Json(push.view())).into_response(),
        Err(refused) => answer(refused),
    }
}

async fn remove_push(State(s): Shared, Path((id, push)): Path<(String, String)>) -> Response {
    match s.node.cameras.remove_push(&id, &push).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => answer(refused),
    }
}
