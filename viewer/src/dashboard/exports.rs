//! The H.264 export jobs' HTTP API: a range of one camera re-encoded by
//! ffmpeg for players without MJPEG. Encoding takes a while, so it is a
//! job: `POST .../export.h264` starts it, `GET /api/exports/<id>` tells how
//! far it is, `GET /api/exports/<id>/file` downloads the result. The jobs
//! themselves (their files in the system's temporary directory, and the
//! encoding) are [`crate::playback::h264`]'s.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::playback::{export_samples, Span};
use super::{error, Dashboard};
use crate::playback::h264;

/// `POST /api/sessions/<session>/<node>/<camera>/export.h264?from=&to=`:
/// starts re-encoding the range; 202 with the job's progress.
pub(super) async fn start(
    State(d): State<Arc<Dashboard>>,
    UrlPath((session, node, camera)): UrlPath<(String, String, String)>,
    Query(span): Query<Span>,
) -> Response {
    let (samples, permit) = match export_samples(&d, &session, &node, &camera, &span).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let name = format!("{session}_{node}_{camera}.h264.mp4");
    let (id, job) = match d.exports.add(name) {
        Ok(added) => added,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("no room for the export: {e}"),
            )
        }
    };
    let label = format!("{session}/{node}/{camera}");
    tracing::info!("export {label}: H.264 job {id} started");
    h264::run(Arc::clone(&job), id, label, samples, permit);
    (StatusCode::ACCEPTED, Json(job.progress(id))).into_response()
}

/// `GET /api/exports/<id>`: how far the job is.
pub(super) async fn progress(
    State(d): State<Arc<Dashboard>>,
    UrlPath(id): UrlPath<u64>,
) -> Response {
    match d.exports.get(id) {
        Some(job) => Json(job.progress(id)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such export"),
    }
}

/// `GET /api/exports/<id>/file`: the finished H.264 MP4.
pub(super) async fn file(State(d): State<Arc<Dashboard>>, UrlPath(id): UrlPath<u64>) -> Response {
    let Some(job) = d.exports.get(id) else {
        return error(StatusCode::NOT_FOUND, "no such export");
    };
    if !job.is_done() {
        return error(StatusCode::CONFLICT, "the export is not ready");
    }
    let file = match tokio::fs::File::open(&job.file).await {
        Ok(f) => f,
        Err(e) => return error(StatusCode::GONE, format!("the export is gone: {e}")),
    };
    let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    (
        [
            (header::CONTENT_TYPE, "video/mp4".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", job.name),
            ),
        ],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response()
}
