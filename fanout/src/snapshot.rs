//! `snapshot.jpg` of an H.264 camera: the newest picture, decoded by an
//! `ffmpeg` subprocess from the keyframe group that leads to it. One
//! decode at a time per camera; its result serves every request for
//! [`FRESH_FOR`]; the input is the hub's group (bounded by the ring's
//! group limits) and the decode by [`DECODE_LIMIT`].

use std::process::Stdio;
use std::time::Duration;

use crate::Hub;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long one decoded snapshot answers requests: the node page refreshes
/// each second, so a second's worth of requests cost one decode.
pub const FRESH_FOR: Duration = Duration::from_millis(900);
/// Longest a decode may take before it is abandoned (and ffmpeg killed).
pub const DECODE_LIMIT: Duration = Duration::from_secs(10);

/// One camera's decoded snapshot, for H.264 cameras.
#[derive(Debug, Default)]
pub struct Snapshot {
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl Snapshot {
    /// Whether a decode is under way.
    pub fn is_busy(&self) -> bool {
        self.last.try_lock().is_err()
    }

    /// The newest picture as a JPEG: the cached one while fresh, else a
    /// decode (requests meanwhile wait for it rather than start another).
    pub async fn jpeg(&self, hub: &Hub) -> Result<Bytes> {
        let mut last = self.last.lock().await;
        if let Some((at, jpeg)) = &*last {
            if at.elapsed() < FRESH_FOR {
                return Ok(jpeg.clone());
            }
        }
        let group: Vec<Bytes> = hub.group().into_iter().map(|f| f.data).collect();
        if group.is_empty() {
            bail!("camera {} has no keyframe yet", hub.camera_id());
        }
        let jpeg = decode_last(&group).await?;
        *last = Some((Instant::now(), jpeg.clone()));
        Ok(jpeg)
    }
}

/// The last picture of a keyframe group (AVCC access units, the keyframe
/// first) as a JPEG, by `ffmpeg`, within [`DECODE_LIMIT`].
pub async fn decode_last(group: &[Bytes]) -> Result<Bytes> {
    tokio::time::timeout(DECODE_LIMIT, decode(group))
        .await
        .map_err(|_| anyhow::anyhow!("decoding took over {} s", DECODE_LIMIT.as_secs()))?
}

async fn decode(group: &[Bytes]) -> Result<Bytes> {
    let mut annex_b = Vec::with_capacity(group.iter().map(|f| f.len() + 16).sum());
    for unit in group {
        shared::h264::to_annex_b(unit, &mut annex_b);
    }
    let last = group.len() - 1;
    let mut child = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "h264",
            "-i",
            "pipe:0",
        ])
        .args(["-vf", &format!("select=eq(n\\,{last})"), "-frames:v", "1"])
        .args(["-q:v", "4", "-f", "mjpeg", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run ffmpeg to decode H.264 (install ffmpeg)")?;
    let mut stdin = child.stdin.take().context("ffmpeg has no stdin")?;
    let feed = async move {
        // A decoder that quits early closes its input: not an error here.
        let _ = stdin.write_all(&annex_b).await;
    };
    let (_, out) = tokio::join!(feed, child.wait_with_output());
    let out = out.context("waiting for ffmpeg")?;
    if !out.status.success() || !out.stdout.starts_with(&[0xFF, 0xD8]) {
        bail!(
            "ffmpeg could not decode the keyframe group ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Bytes::from(out.stdout))
}
