//! The player's HTTP API: looking back at a session, straight from the
//! recorded segments (no decoding, no re-encoding), for the dashboard's
//! player and for anyone with curl.
//!
//! `GET /api/sessions/<session>/<node>/<camera>/frame.jpg?at=<RFC 3339>`
//!
//! answers the JPEG the camera showed at the instant: the sample whose
//! interval holds it (`X-Frame-Time` says when that sample begins), or 404
//! where no frame covers it (before the camera's first frame, in a gap
//! while it was offline). Each segment's index is built once and kept (at
//! most [`CACHED_SEGMENTS`](crate::playback::CACHED_SEGMENTS)); a `.part`
//! being written is indexed again when it has grown, so a session can be
//! watched while it records.
//!
//! Also `GET .../<camera>/export.mp4?from=&to=` (a range as one MP4, the
//! JPEGs copied), `GET /api/sessions/<session>/export.zip` (the session as
//! it is on disk) and `GET /api/sessions/<session>/timeline` (every
//! camera's stretches and the sensor rows). The finding and the writing
//! are [`crate::playback`]'s; this file only answers HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use super::{error, Dashboard};
use crate::playback::index::SampleRef;
use crate::playback::{export, find, next_after, plain, read_sample, segments, spans, zip};

#[derive(Debug, Deserialize)]
pub(super) struct At {
    at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Span {
    from: Option<String>,
    to: Option<String>,
}

impl Span {
    /// The range in µs (open ends: the whole session), or why not.
    fn range(&self) -> Result<(i64, i64), String> {
        let parse = |t: &Option<String>, default: i64| -> Result<i64, String> {
            match t {
                None => Ok(default),
                Some(t) => DateTime::parse_from_rfc3339(t)
                    .map(|d| d.timestamp_micros())
                    .map_err(|e| format!("{t:?}: {e} (RFC 3339)")),
            }
        };
        match (parse(&self.from, i64::MIN)?, parse(&self.to, i64::MAX)?) {
            (from, to) if from < to => Ok((from, to)),
            _ => Err("from must come before to".into()),
        }
    }
}

/// Bytes of an export kept in flight between the writer and the client.
const EXPORT_CHUNKS: usize = 8;
/// Exports (MP4 ranges and session zips) running at once; more get 429.
const MAX_EXPORT_JOBS: usize = 2;

/// A slot for an export; `None` when [`MAX_EXPORT_JOBS`] are running.
fn export_slot() -> Option<tokio::sync::OwnedSemaphorePermit> {
    static JOBS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let jobs = JOBS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(MAX_EXPORT_JOBS)));
    Arc::clone(jobs).try_acquire_owned().ok()
}

fn busy() -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{MAX_EXPORT_JOBS} exports are running; try again when one is done"),
    )
}

/// Streams what `write` writes as the body of a download named `name`.
fn stream_download(
    name: &str,
    content_type: &'static str,
    permit: tokio::sync::OwnedSemaphorePermit,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<()> + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_CHUNKS);
    let label = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, ToBody(tx));
        match write(&mut out).and_then(|()| Ok(std::io::Write::flush(&mut out)?)) {
            Ok(()) => tracing::info!("export {label} done"),
            Err(e) => tracing::info!("export {label} ended: {e:#}"),
        }
    });
    let body = futures_lite::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)),
            rx,
        ))
    });
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// `GET /api/sessions/<session>/export.zip`: every closed segment and the
/// session's sensors.csv, as they are on disk, in one streamed ZIP.
pub(super) async fn export_zip(
    State(d): State<Arc<Dashboard>>,
    UrlPath(session): UrlPath<String>,
) -> Response {
    let dir = match session_dir(&d, &session) {
        Ok(dir) => dir,
        Err((status, why)) => return error(status, why),
    };
    let Some(permit) = export_slot() else {
        return busy();
    };
    let name = format!("{session}.zip");
    stream_download(&name, "application/zip", permit, move |out| {
        let mut zip = zip::ZipStream::new(out);
        for (node, camera, camera_dir) in export::cameras_of(&dir) {
            for (_, path) in segments(&camera_dir) {
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
                match file {
                    Some(file) if file.ends_with(".mp4") => {
                        zip.add_file(&format!("{session}/{node}/{camera}/{file}"), &path)?;
                    }
                    _ => {} // still being written
                }
            }
        }
        let sensors = dir.join("sensors.csv");
        if sensors.is_file() {
            zip.add_file(&format!("{session}/sensors.csv"), &sensors)?;
        }
        zip.finish()?;
        Ok(())
    })
}

/// An `io::Write` that hands what it gets to an HTTP body, a chunk at a
/// time (the export is streamed, never built in memory).
struct ToBody(tokio::sync::mpsc::Sender<Vec<u8>>);

impl std::io::Write for ToBody {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(buf.to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /api/sessions/<session>/<node>/<camera>/export.mp4?from=&to=`:
/// the range (default: all of it) as one MP4, the JPEGs copied.
pub(super) async fn export(
    State(d): State<Arc<Dashboard>>,
    UrlPath((session, node, camera)): UrlPath<(String, String, String)>,
    Query(span): Query<Span>,
) -> Response {
    let (samples, permit) = match export_samples(&d, &session, &node, &camera, &span).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let name = format!("{session}_{node}_{camera}.mp4");
    stream_download(&name, "video/mp4", permit, move |mut out| {
        export::write_mp4(&samples, &mut out, |_, _| {}).map(|_| ())
    })
}

/// Longest stretch one `media.mp4` answers: the player asks for the next
/// while it plays this one.
const MEDIA_SPAN_US: i64 = 30_000_000;

/// `GET /api/sessions/<session>/<node>/<camera>/media.mp4?from=&to=`: an
/// H.264 camera's recording of the range (at most [`MEDIA_SPAN_US`]) as
/// fragmented MP4 for the player's Media Source Extensions: from the
/// keyframe at or before `from`, the samples copied; `X-Media-Start` says
/// the instant its media time 0 stands for. Not an export: no slot taken.
pub(super) async fn media(
    State(d): State<Arc<Dashboard>>,
    UrlPath((session, node, camera)): UrlPath<(String, String, String)>,
    Query(span): Query<Span>,
) -> Response {
    let (from, to) = match span.range() {
        Ok((from, to)) if from != i64::MIN => (from, to.min(from.saturating_add(MEDIA_SPAN_US))),
        Ok(_) => return error(StatusCode::BAD_REQUEST, "say from when: ?from=<RFC 3339>"),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let dir = match camera_dir(&d, &session, &node, &camera) {
        Ok(dir) => dir,
        Err((status, why)) => return error(status, why),
    };
    let cache = Arc::clone(&d.segments);
    let made = tokio::task::spawn_blocking(move || -> Result<Option<(i64, Vec<u8>)>> {
        let samples = export::samples_in(&cache, &dir, from, to)?;
        if samples.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        let done = export::write_mp4(&samples, &mut out, |_, _| {})?;
        Ok(Some((done.first_us, out)))
    })
    .await;
    match made {
        Ok(Ok(Some((start, mp4)))) => (
            [
                (header::CONTENT_TYPE, "video/mp4".to_owned()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (HeaderName::from_static("x-media-start"), rfc3339_us(start)),
            ],
            mp4,
        )
            .into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no frame in the range"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A camera's samples in the asked range and a slot to export them, or
/// the answer saying why not (a bad range or name, no frame, busy).
pub(super) async fn export_samples(
    d: &Dashboard,
    session: &str,
    node: &str,
    camera: &str,
    span: &Span,
) -> Result<(Vec<(PathBuf, SampleRef)>, tokio::sync::OwnedSemaphorePermit), Response> {
    let (from, to) = span
        .range()
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let dir = camera_dir(d, session, node, camera).map_err(|(status, why)| error(status, why))?;
    let cache = Arc::clone(&d.segments);
    let find =
        tokio::task::spawn_blocking(move || export::samples_in(&cache, &dir, from, to)).await;
    let samples = match find {
        Ok(Ok(s)) if !s.is_empty() => s,
        Ok(Ok(_)) => return Err(error(StatusCode::NOT_FOUND, "no frame in the range")),
        Ok(Err(e)) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))),
        Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let permit = export_slot().ok_or_else(busy)?;
    Ok((samples, permit))
}

/// A session's folder, or why not (a bad name, no such session).
fn session_dir(d: &Dashboard, session: &str) -> Result<PathBuf, (StatusCode, String)> {
    if !plain(session) {
        return Err((StatusCode::BAD_REQUEST, "not a session name".into()));
    }
    let dir = d.recordings.join(session);
    if !dir.is_dir() {
        return Err((StatusCode::NOT_FOUND, format!("no session {session}")));
    }
    Ok(dir)
}

/// A camera's folder in a session, or why not (a bad name, none such).
fn camera_dir(
    d: &Dashboard,
    session: &str,
    node: &str,
    camera: &str,
) -> Result<PathBuf, (StatusCode, String)> {
    if ![session, node, camera].iter().all(|n| plain(n)) {
        let why = "not a session, node or camera name";
        return Err((StatusCode::BAD_REQUEST, why.into()));
    }
    let dir = d.recordings.join(session).join(node).join(camera);
    if !dir.is_dir() {
        let why = format!("session {session} has no camera {node}/{camera}");
        return Err((StatusCode::NOT_FOUND, why));
    }
    Ok(dir)
}

/// An instant as RFC 3339 to the microsecond.
fn rfc3339_us(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `GET /api/sessions/<session>/<node>/<camera>/frame.jpg?at=<RFC 3339>`.
/// What a frame request finds: the frame, or none and where the next is.
enum Found {
    Frame(Vec<u8>, SampleRef),
    None { next_us: Option<i64> },
}

/// What the index says of an instant.
enum Looked {
    Found(Found),
    /// An H.264 sample: its picture is decoded.
    Decode(PathBuf, SampleRef),
}

pub(super) async fn frame(
    State(d): State<Arc<Dashboard>>,
    UrlPath((session, node, camera)): UrlPath<(String, String, String)>,
    Query(q): Query<At>,
) -> Response {
    let Some(text) = q.at else {
        return error(
            StatusCode::BAD_REQUEST,
            "say when: ?at=2026-11-27T10:17:42.250Z (RFC 3339)",
        );
    };
    let at = match DateTime::parse_from_rfc3339(&text) {
        Ok(at) => at.with_timezone(&Utc),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("at={text:?}: {e} (RFC 3339)"),
            )
        }
    };
    let dir = match camera_dir(&d, &session, &node, &camera) {
        Ok(dir) => dir,
        Err((status, why)) => return error(status, why),
    };
    let cache = Arc::clone(&d.segments);
    let at_us = at.timestamp_micros();
    let looked = tokio::task::spawn_blocking(move || -> Result<Looked> {
        let Some((path, sample)) = find(&cache, &dir, at_us)? else {
            return Ok(Looked::Found(Found::None {
                next_us: next_after(&cache, &dir, at_us)?,
            }));
        };
        if crate::playback::is_h264(&cache, &path)? {
            return Ok(Looked::Decode(path, sample));
        }
        Ok(Looked::Found(Found::Frame(
            read_sample(&path, sample)?,
            sample,
        )))
    })
    .await;
    let found = match looked {
        Ok(Ok(Looked::Decode(path, sample))) => {
            let cache = Arc::clone(&d.segments);
            let jpeg = d.pictures.jpeg(cache, path, sample).await;
            Ok(jpeg.map(|j| Found::Frame(j.to_vec(), sample)))
        }
        Ok(Ok(Looked::Found(found))) => Ok(Ok(found)),
        Ok(Err(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    };
    match found {
        Ok(Ok(Found::Frame(jpeg, sample))) => {
            let time = rfc3339_us;
            (
                [
                    (header::CONTENT_TYPE, "image/jpeg".to_owned()),
                    (header::CACHE_CONTROL, "max-age=3600".to_owned()),
                    (
                        header::HeaderName::from_static("x-frame-time"),
                        time(sample.at_us),
                    ),
                    // When the next frame begins: a player steps by it.
                    (
                        header::HeaderName::from_static("x-frame-end"),
                        time(sample.at_us + sample.duration_us.max(1)),
                    ),
                    (
                        header::ACCESS_CONTROL_EXPOSE_HEADERS,
                        "x-frame-time, x-frame-end".to_owned(),
                    ),
                ],
                jpeg,
            )
                .into_response()
        }
        Ok(Ok(Found::None { next_us })) => {
            let mut reply = error(
                StatusCode::NOT_FOUND,
                format!("no frame of {node}/{camera} at {text}"),
            );
            // Where the camera's next frame begins, if it has one.
            if let Some(value) = next_us.and_then(|us| HeaderValue::from_str(&rfc3339_us(us)).ok())
            {
                let headers = reply.headers_mut();
                headers.insert(HeaderName::from_static("x-next-frame"), value);
                headers.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static("x-next-frame"),
                );
            }
            reply
        }
        Ok(Err(e)) => {
            tracing::warn!("playback of {session}/{node}/{camera}: {e:#}");
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Sensor rows read for a session's plot at most.
const MAX_SENSOR_ROWS: usize = 100_000;

/// `GET /api/sessions/<session>/timeline`: every camera's stretches and
/// every sensor row of the session, for the player.
pub(super) async fn timeline(
    State(d): State<Arc<Dashboard>>,
    UrlPath(session): UrlPath<String>,
) -> Response {
    let dir = match session_dir(&d, &session) {
        Ok(dir) => dir,
        Err((status, why)) => return error(status, why),
    };
    let cache = Arc::clone(&d.segments);
    let built = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
        let time = rfc3339_us;
        let mut cameras = Vec::new();
        let (mut start, mut end) = (i64::MAX, i64::MIN);
        for (node, camera, camera_dir) in export::cameras_of(&dir) {
            let spans = spans(&cache, &camera_dir)?;
            if let (Some(first), Some(last)) = (spans.first(), spans.last()) {
                start = start.min(first.0);
                end = end.max(last.1);
            }
            let spans: Vec<[String; 2]> = spans.iter().map(|(f, t)| [time(*f), time(*t)]).collect();
            let h264 = segments(&camera_dir)
                .first()
                .map(|(_, path)| crate::playback::is_h264(&cache, path))
                .transpose()?
                .unwrap_or(false);
            let codec = if h264 { "h264" } else { "mjpeg" };
            cameras.push(serde_json::json!({
                "node": node, "camera": camera, "codec": codec, "spans": spans
            }));
        }
        let sensors = sensor_rows(&dir.join("sensors.csv"));
        Ok(serde_json::json!({
            "session": dir.file_name().map(|n| n.to_string_lossy().into_owned()),
            "start": (start != i64::MAX).then(|| time(start)),
            "end": (end != i64::MIN).then(|| time(end)),
            "cameras": cameras,
            "sensors": sensors,
        }))
    })
    .await;
    match built {
        Ok(Ok(body)) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The session's sensor rows as `[time, topic, payload]` (at most
/// [`MAX_SENSOR_ROWS`]; none when there is no file).
fn sensor_rows(path: &Path) -> Vec<[String; 3]> {
    let Ok(mut reader) = csv::Reader::from_path(path) else {
        return Vec::new();
    };
    reader
        .records()
        .filter_map(Result::ok)
        .filter(|r| r.len() >= 3)
        .take(MAX_SENSOR_ROWS)
        .map(|r| [r[0].to_owned(), r[1].to_owned(), r[2].to_owned()])
        .collect()
}
