//! The dashboard's Sources page: every node's cameras with their state,
//! restarts, last error and log, and a form that adds a stream to a node.
//! The viewer passes each call on to the node's camera API
//! (`/api/v1/cameras`, docs/sources.md) with the token from its config;
//! the browser never talks to the nodes itself.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::io::BufReader;

use super::{error, Dashboard, Shared};
use crate::link::clock::http_authority;
use crate::node_http::{NodeHttp, MAX_BODY};

/// How long a call to a node may take, connecting included.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Largest body passed on to a node.
const BODY_LIMIT: usize = 16 * 1024;

/// The Sources page, with the live tiles' script inline.
static PAGE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| super::with_live_tiles(include_str!("sources.html")));

pub fn routes() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/sources", get(|| async { Html(PAGE.as_str()) }))
        .route("/api/sources", get(list))
        .route("/api/sources/{node}/cameras", post(add))
        .route(
            "/api/sources/{node}/cameras/{id}",
            axum::routing::delete(remove).patch(patch),
        )
        .route("/api/sources/{node}/controls", get(controls))
        .route("/api/sources/{node}/cameras/{id}/log", get(log))
        .route("/api/sources/{node}/cameras/{id}/{action}", post(act))
        .route(
            "/api/sources/{node}/cameras/{id}/pushes/{push}",
            axum::routing::delete(remove_push),
        )
}

/// `host:port` of a node's HTTP server, from its NodeInfo.
fn node_http(d: &Dashboard, node: &str) -> Option<String> {
    let infos = d.feed.infos.lock().expect("feed");
    let info = infos.get(node)?;
    info.cameras
        .iter()
        .find_map(|c| c.http.as_deref().and_then(http_authority))
}

/// Every known node's cameras as its API gives them (or why not).
async fn list(State(d): Shared) -> Response {
    let nodes: Vec<(String, bool)> = {
        let seen = d.feed.nodes.lock().expect("feed");
        seen.iter().map(|(n, s)| (n.clone(), s.online)).collect()
    };
    let mut out = Vec::with_capacity(nodes.len());
    for (node, online) in nodes {
        let answer = match (online, node_http(&d, &node)) {
            (false, _) => json!({"node": node, "online": false, "cameras": []}),
            (true, None) => {
                json!({"node": node, "online": true, "cameras": [], "error": "the node announces no HTTP address"})
            }
            (true, Some(http)) => {
                match call(
                    &http,
                    Method::GET,
                    "/api/v1/cameras",
                    None,
                    d.node_token.as_deref(),
                )
                .await
                {
                    Ok((200, body)) => {
                        let cameras = serde_json::from_slice::<Value>(&body)
                            .map(|v| v["cameras"].clone())
                            .unwrap_or(Value::Null);
                        json!({"node": node, "online": true, "http": http, "cameras": cameras})
                    }
                    Ok((status, body)) => json!({"node": node, "online": true, "cameras": [],
                        "error": format!("the node answered {status}: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>())}),
                    Err(e) => {
                        json!({"node": node, "online": true, "cameras": [], "error": format!("{e:#}")})
                    }
                }
            }
        };
        out.push(answer);
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "nodes": out })),
    )
        .into_response()
}

/// Passes a call on to `node` and its answer back.
async fn forward(
    d: &Dashboard,
    node: &str,
    method: Method,
    path: &str,
    body: Option<&[u8]>,
) -> Response {
    let Some(http) = node_http(d, node) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no node {node:?} with an HTTP address"),
        );
    };
    if body.is_some_and(|b| b.len() > BODY_LIMIT) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {BODY_LIMIT} bytes"),
        );
    }
    match call(&http, method.clone(), path, body, d.node_token.as_deref()).await {
        Ok((status, answer)) => {
            tracing::info!(node, "Sources page: {method} {path} -> {status}");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, [(header::CONTENT_TYPE, "application/json")], answer).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("node {node}: {e:#}")),
    }
}

/// Ids travel in a path: only what the node's ids may hold.
fn plain(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

async fn add(State(d): Shared, Path(node): Path<String>, body: Bytes) -> Response {
    forward(&d, &node, Method::POST, "/api/v1/cameras", Some(&body)).await
}

async fn remove(State(d): Shared, Path((node, id)): Path<(String, String)>) -> Response {
    if !plain(&id) {
        return error(StatusCode::BAD_REQUEST, "not a camera id");
    }
    forward(
        &d,
        &node,
        Method::DELETE,
        &format!("/api/v1/cameras/{id}"),
        None,
    )
    .await
}

/// A camera's settings panel: its controls changed (`{"controls":{..}}`).
async fn patch(
    State(d): Shared,
    Path((node, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !plain(&id) {
        return error(StatusCode::BAD_REQUEST, "not a camera id");
    }
    let path = format!("/api/v1/cameras/{id}");
    forward(&d, &node, Method::PATCH, &path, Some(&body)).await
}

/// The controls a node's cameras take, for the settings panel's form.
async fn controls(State(d): Shared, Path(node): Path<String>) -> Response {
    forward(&d, &node, Method::GET, "/api/v1/controls", None).await
}

async fn log(State(d): Shared, Path((node, id)): Path<(String, String)>) -> Response {
    if !plain(&id) {
        return error(StatusCode::BAD_REQUEST, "not a camera id");
    }
    forward(
        &d,
        &node,
        Method::GET,
        &format!("/api/v1/cameras/{id}/log"),
        None,
    )
    .await
}

async fn act(
    State(d): Shared,
    Path((node, id, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if !plain(&id) {
        return error(StatusCode::BAD_REQUEST, "not a camera id");
    }
    match action.as_str() {
        "start" | "stop" | "restart" => {
            forward(
                &d,
                &node,
                Method::POST,
                &format!("/api/v1/cameras/{id}/{action}"),
                None,
            )
            .await
        }
        "pushes" => {
            forward(
                &d,
                &node,
                Method::POST,
                &format!("/api/v1/cameras/{id}/pushes"),
                Some(&body),
            )
            .await
        }
        _ => error(StatusCode::NOT_FOUND, "start, stop, restart or pushes"),
    }
}

async fn remove_push(
    State(d): Shared,
    Path((node, id, push)): Path<(String, String, String)>,
) -> Response {
    if !plain(&id) || !plain(&push) {
        return error(StatusCode::BAD_REQUEST, "not a camera or push id");
    }
    let path = format!("/api/v1/cameras/{id}/pushes/{push}");
    forward(&d, &node, Method::DELETE, &path, None).await
}

/// One HTTP/1.1 call to a node at `base` (`http(s)://host:port`,
/// `Connection: close`): its status and body.
pub async fn call(
    base: &str,
    method: Method,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>)> {
    let node = NodeHttp::parse(base).with_context(|| format!("{base:?} is not an http(s) URL"))?;
    let authority = node.authority.as_str();
    let exchange = async {
        let mut stream = BufReader::new(node.connect().await?);
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: camfleet-viewer\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method == Method::POST {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        crate::node_http::request(&mut stream, &bytes, MAX_BODY)
            .await
            .map(|reply| (reply.status, reply.body))
    };
    tokio::time::timeout(CALL_LIMIT, exchange)
        .await
        .map_err(|_| {
            anyhow!(
                "no answer from {authority} within {} s",
                CALL_LIMIT.as_secs()
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_travel_in_paths() {
        assert!(plain("drone1") && plain("cam-0.b"));
        assert!(!plain("../x") && !plain("") && !plain("a/b") && !plain("a?b"));
    }
}
