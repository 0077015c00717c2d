//! The cameras of the node's config: each `[[camera]]` table (or the
//! one camera of the file's top-level keys) merged with the flags and the
//! file's defaults, checked, into a [`CameraConfig`] (docs/config.md).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use shared::frame::Codec;

use super::{check_id, check_range, Cli};
use crate::source::controls::{self, Controls};
use crate::source::{CaptureSettings, H264Profile, H264Settings, Output, SourceSpec};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCamera {
    pub id: Option<String>,
    pub source: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub quality: Option<u8>,
    #[serde(flatten)]
    pub h264: FileH264,
    pub tcp_port: Option<u16>,
    /// Which camera of the Pi (rpicam-vid's `--camera`).
    pub camera: Option<u32>,
    /// Camera controls (rpicam sources), by rpicam-vid's option names.
    #[serde(default)]
    pub controls: Controls,
    /// RTSP servers to push the camera to (`rtsp://[user:pass@]host:port/path`).
    #[serde(default)]
    pub push: Vec<String>,
}

/// The codec keys of the file and of each `[[camera]]`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FileH264 {
    pub codec: Option<Codec>,
    pub keyframe_seconds: Option<u32>,
    pub bitrate: Option<u32>,
    pub h264_profile: Option<H264Profile>,
    pub h264_level: Option<String>,
    pub rpicam_libav: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct CameraConfig {
    pub id: String,
    pub source: SourceSpec,
    pub capture: CaptureSettings,
    /// 0 means any free port.
    pub tcp_port: u16,
    /// What a URL source's conversion produces (the sizes given explicitly).
    pub output: Output,
    /// RTSP servers the camera is pushed to (the config file's).
    pub pushes: Vec<String>,
    /// Camera controls (rpicam sources), checked.
    pub controls: Controls,
}

impl CameraConfig {
    /// Whether the source waits for a publisher (no watchdog before one).
    pub fn source_waits(&self) -> bool {
        matches!(&self.source, SourceSpec::Url(u) if u.waits_for_publisher())
    }
}

/// The file's cameras (one from the defaults when it lists none), each
/// key from the flag, else the camera's own table, else the file's default.
pub(super) fn merge_cameras(
    cli: &Cli,
    defaults: &FileCamera,
    listed: Vec<FileCamera>,
    base_port: u16,
) -> Result<Vec<CameraConfig>> {
    let mut cameras = Vec::with_capacity(listed.len());
    for (i, cam) in listed.into_iter().enumerate() {
        let key = |name: &str| format!("camera[{i}].{name}");
        let id = cam.id.unwrap_or_else(|| format!("cam{i}"));
        check_id(&key("id"), &id)?;
        if cameras.iter().any(|c: &CameraConfig| c.id == id) {
            bail!("{}: {id:?} is used by two cameras", key("id"));
        }
        // A flag applies to every camera; a camera's own key beats the file's default.
        let spec = cli
            .source
            .clone()
            .or(cam.source)
            .or(defaults.source.clone())
            .unwrap_or("rpicam".into());
        let source = spec
            .parse::<SourceSpec>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", key("source")))?;
        let output = Output {
            width: cli.width.or(cam.width).or(defaults.width),
            height: cli.height.or(cam.height).or(defaults.height),
            fps: cli.fps.or(cam.fps).or(defaults.fps),
            quality: cli
                .quality
                .or(cam.quality)
                .or(defaults.quality)
                .unwrap_or(80),
            codec: None,
        };
        let (own, all) = (&cam.h264, &defaults.h264);
        let codec = cli.codec.or(own.codec).or(all.codec);
        let output = Output { codec, ..output };
        let level = cli
            .h264_level
            .clone()
            .or(own.h264_level.clone())
            .or(all.h264_level.clone());
        let h264 = H264Settings {
            keyframe_seconds: cli
                .keyframe_seconds
                .or(own.keyframe_seconds)
                .or(all.keyframe_seconds)
                .unwrap_or(1),
            bitrate: cli.bitrate.or(own.bitrate).or(all.bitrate).unwrap_or(0),
            profile: cli
                .h264_profile
                .or(own.h264_profile)
                .or(all.h264_profile)
                .unwrap_or(H264Profile::Main),
            level: match level.as_deref() {
                None => 41,
                Some("4" | "4.0") => 40,
                Some("4.1") => 41,
                Some("4.2") => 42,
                Some(other) => bail!("{}: {other:?} is not 4, 4.1 or 4.2", key("h264_level")),
            },
            libav: cli.rpicam_libav.or(own.rpicam_libav).or(all.rpicam_libav),
        };
        check_range(&key("keyframe_seconds"), h264.keyframe_seconds, 1, 60)?;
        if h264.bitrate != 0 {
            check_range(&key("bitrate"), h264.bitrate, 100_000, 50_000_000)?;
        }
        let capture = CaptureSettings {
            width: output.width.unwrap_or(1280),
            height: output.height.unwrap_or(720),
            fps: output.fps.unwrap_or(30),
            quality: output.quality,
            codec: codec.unwrap_or_default(),
            h264,
        };
        check_range(&key("width"), capture.width, 16, 8192)?;
        check_range(&key("height"), capture.height, 16, 8192)?;
        check_range(&key("fps"), capture.fps, 1, 120)?;
        check_range(&key("quality"), u32::from(capture.quality), 1, 100)?;
        let tcp_port = match (cam.tcp_port, base_port) {
            (Some(p), _) if cli.tcp_port.is_none() => p,
            (_, 0) => 0,
            (_, base) => base
                .checked_add(i as u16)
                .with_context(|| format!("{}: past 65535", key("tcp_port")))?,
        };
        for url in &cam.push {
            crate::push::PushUrl::parse(url)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key("push")))?;
        }
        let mut wanted = defaults.controls.clone();
        wanted.extend(cam.controls);
        if let Some(n) = cli.camera.or(cam.camera) {
            wanted.insert("camera".into(), n.into());
        }
        let controls =
            controls::checked(&wanted).map_err(|e| anyhow::anyhow!("{}: {e}", key("controls")))?;
        cameras.push(CameraConfig {
            id,
            source,
            capture,
            tcp_port,
            output,
            pushes: cam.push,
            controls,
        });
    }
    Ok(cameras)
}
