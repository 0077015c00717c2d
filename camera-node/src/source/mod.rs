//! Where frames come from (DESIGN.md, "Contract: camera sources").
//!
//! A [`Source`] is one run of a camera: open it, pull frames until it fails,
//! close it. Restarting is the supervisor's business
//! (`cameras/supervisor.rs`).

pub mod controls;
mod file;
pub mod h264_pattern;
pub mod pattern;
mod process;
pub mod rpicam;
pub mod secrets;
pub mod url;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use shared::frame::Codec;

use crate::cameras::status::Status;
use controls::Controls;
use url::UrlSource;

pub use process::{board_is_pi5, find_in_path, kill_all_camera_processes, rpicam_program};

/// The `--source` spec of a camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `rpicam-vid`, or `libcamera-vid` where only that is installed.
    Rpicam,
    /// Any command writing concatenated JPEGs to stdout, run by `sh -c`.
    Cmd(String),
    /// An MJPEG or H.264 (Annex B) file replayed in a loop at the
    /// configured frame rate.
    File(PathBuf),
    /// The built-in moving test pattern.
    Test,
    /// A stream or device read by ffmpeg (`rtsp://`, `rtmp://`, `/dev/video0`, ...).
    Url(UrlSource),
}

impl SourceSpec {
    /// The text to store: a URL's password included (the state file is
    /// private to the node); [`fmt::Display`] redacts it.
    pub fn secret_text(&self) -> String {
        match self {
            SourceSpec::Url(u) => u.secret().to_owned(),
            other => other.to_string(),
        }
    }

    /// Whether the source runs a program or reads a file of the caller's
    /// choosing: refused over the API unless the node allows it.
    pub fn runs_anything(&self) -> bool {
        matches!(self, SourceSpec::Cmd(_) | SourceSpec::File(_))
    }

    /// Passwords to scrub from the source's log lines.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            SourceSpec::Url(u) => u.password().into_iter().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        if let Some(parsed) = UrlSource::parse(spec) {
            return parsed.map(SourceSpec::Url);
        }
        if spec == "rpicam" {
            Ok(SourceSpec::Rpicam)
        } else if spec == "test" {
            Ok(SourceSpec::Test)
        } else if let Some(cmd) = spec.strip_prefix("cmd:") {
            match cmd.trim() {
                "" => Err("cmd: needs a command line after the colon".into()),
                cmd => Ok(SourceSpec::Cmd(cmd.to_owned())),
            }
        } else if let Some(path) = spec.strip_prefix("file:") {
            match path {
                "" => Err("file: needs a path after the colon".into()),
                path => Ok(SourceSpec::File(path.into())),
            }
        } else {
            Err(format!(
                "{:?} is not a source; use rpicam, test, cmd:<command>, file:<path>, a URL (rtsp://, rtmp://, http://, srt://, rtmp-listen://) or a /dev/video path",
                secrets::redact(spec)
            ))
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Rpicam => f.write_str("rpicam"),
            SourceSpec::Cmd(c) => write!(f, "cmd:{c}"),
            SourceSpec::File(p) => write!(f, "file:{}", p.display()),
            SourceSpec::Test => f.write_str("test"),
            SourceSpec::Url(u) => write!(f, "{u}"),
        }
    }
}

/// Picture settings passed to the camera (or used by the test pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
    /// What the camera sends: MJPEG, or H.264 from the encoder.
    pub codec: Codec,
    pub h264: H264Settings,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            width: 1280,
            height: 720,
            fps: 30,
            quality: 80,
            codec: Codec::Mjpeg,
            h264: H264Settings::DEFAULT,
        }
    }
}

/// The H.264 encoder's settings (rpicam-vid's `--intra`, `--bitrate`,
/// `--profile`, `--level`; the test pattern uses the keyframe interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct H264Settings {
    /// Seconds between keyframes: how long a viewer that joins or falls
    /// behind waits at most, and how finely recordings can be cut.
    pub keyframe_seconds: u32,
    /// Bits a second; 0 picks one by picture size ([`H264Settings::bitrate_for`]).
    pub bitrate: u32,
    pub profile: H264Profile,
    /// Level times ten (40 = 4.0, 41, 42): the Pi 4's encoder refuses
    /// what its level cannot carry.
    pub level: u8,
    /// rpicam-vid's software encoder (Pi 5): `None` tells it from the
    /// board's model.
    pub libav: Option<bool>,
}

impl H264Settings {
    pub const DEFAULT: H264Settings = H264Settings {
        keyframe_seconds: 1,
        bitrate: 0,
        profile: H264Profile::Main,
        level: 41,
        libav: None,
    };

    /// The bitrate to ask for: the setting, else about 0.08 bit a pixel a
    /// frame (5.2 Mbit/s for 1080p30, 2.3 for 720p30), near what
    /// surveillance cameras and mediamtx's default use.
    pub fn bitrate_for(&self, width: u32, height: u32, fps: u32) -> u32 {
        match self.bitrate {
            0 => ((u64::from(width) * u64::from(height) * u64::from(fps)) / 12)
                .clamp(250_000, 25_000_000) as u32,
            b => b,
        }
    }
}

impl Default for H264Settings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The H.264 profiles the Pi's hardware encoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum H264Profile {
    Baseline,
    Main,
    High,
}

impl H264Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            H264Profile::Baseline => "baseline",
            H264Profile::Main => "main",
            H264Profile::High => "high",
        }
    }
}

impl FromStr for H264Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "baseline" => Ok(H264Profile::Baseline),
            "main" => Ok(H264Profile::Main),
            "high" => Ok(H264Profile::High),
            other => Err(format!(
                "{other:?} is not a profile; use baseline, main or high"
            )),
        }
    }
}

/// One picture from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub codec: Codec,
    /// Decodable on its own (every JPEG; an H.264 IDR with its SPS/PPS).
    pub key: bool,
    /// A JPEG, or an H.264 access unit in AVCC.
    pub data: Bytes,
}

impl Picture {
    pub fn jpeg(data: Bytes) -> Picture {
        Picture {
            codec: Codec::Mjpeg,
            key: true,
            data,
        }
    }
}

/// What a URL source's conversion produces; `None` keeps the input's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Output {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    /// JPEG quality 1-100.
    pub quality: u8,
    /// The codec asked for: `None` copies MJPEG and H.264 inputs and
    /// converts others to MJPEG; MJPEG or H.264 converts what is not that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<Codec>,
}

/// One open run of a camera.
pub enum Source {
    Process(Box<process::ProcessSource>),
    File(file::FileSource),
    Test(pattern::TestPattern),
}

impl Source {
    /// Logs go to the caller's span, which names the camera, and a
    /// program's stderr also to `status`'s ring.
    pub async fn open(
        spec: &SourceSpec,
        settings: CaptureSettings,
        output: Output,
        controls: &Controls,
        status: &Arc<Status>,
    ) -> Result<Source> {
        Ok(match spec {
            SourceSpec::Rpicam => Source::Process(Box::new(process::ProcessSource::rpicam(
                settings, controls, status,
            )?)),
            SourceSpec::Cmd(cmd) => {
                Source::Process(Box::new(process::ProcessSource::shell(cmd, status)?))
            }
            SourceSpec::Url(u) => {
                let plan = if u.scheme == url::Scheme::Device {
                    device_plan(u, &output, status).await
                } else if u.worth_probing() {
                    probe(u, &output, status).await?
                } else {
                    url::Plan::unprobed(&output)
                };
                status.set_input(plan.describe(u.scheme.name()));
                Source::Process(Box::new(process::ProcessSource::ffmpeg(
                    u, &output, plan, status,
                )?))
            }
            SourceSpec::File(path) => {
                Source::File(file::FileSource::open(path, settings.fps).await?)
            }
            SourceSpec::Test => Source::Test(pattern::TestPattern::new(settings).await?),
        })
    }

    /// The next whole picture. An error ends this run (the process exited,
    /// the file vanished); damaged input is logged and skipped inside.
    pub async fn next_frame(&mut self) -> Result<Picture> {
        match self {
            Source::Process(p) => p.next_frame().await,
            Source::File(f) => f.next_frame().await,
            Source::Test(t) => t.next_frame().await,
        }
    }

    /// Stops the run; a camera process and its group are terminated.
    pub async fn close(self) {
        if let Source::Process(p) = self {
            p.close().await;
        }
    }
}

/// Asks ffmpeg which formats device `u` offers: its own MJPEG or H.264 is
/// copied. A listing that fails or times out leaves the device converted
/// from raw pictures, as it was before listings (ffmpeg then says why).
async fn device_plan(u: &UrlSource, output: &Output, status: &Status) -> url::Plan {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(u.list_formats_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let listing = match tokio::time::timeout(url::PROBE_LIMIT, cmd.output()).await {
        Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stderr).into_owned()),
        Ok(Err(e)) => Err(format!("cannot run ffmpeg to list them: {e}")),
        Err(_) => Err(format!(
            "ffmpeg listed none within {} s",
            url::PROBE_LIMIT.as_secs()
        )),
    };
    let (formats, offers) = match &listing {
        Ok(text) => {
            for line in text.lines() {
                status.line("ffmpeg", line);
            }
            let formats = url::DeviceFormats::parse(text);
            let offers = format!("the device offers {}", formats.describe());
            (formats, offers)
        }
        Err(why) => {
            tracing::warn!("{u}: its formats are unknown ({why}); reading raw pictures");
            (
                url::DeviceFormats::default(),
                format!("its formats are unknown ({why})"),
            )
        }
    };
    let plan = formats.plan(output);
    status.note(&format!("{offers}: {}", plan.describe(u.scheme.name())));
    plan
}

/// Asks `ffprobe` what `u` carries: whether it can be copied to `output`.
async fn probe(u: &UrlSource, output: &Output, status: &Status) -> Result<url::Plan> {
    let mut cmd = tokio::process::Command::new("ffprobe");
    cmd.args(u.probe_args())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let answer = tokio::time::timeout(url::PROBE_LIMIT, cmd.output())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "ffprobe found nothing within {} s",
                url::PROBE_LIMIT.as_secs()
            )
        })?
        .context("cannot run ffprobe (install ffmpeg)")?;
    for line in String::from_utf8_lossy(&answer.stderr).lines() {
        status.line("ffprobe", line);
    }
    if !answer.status.success() {
        anyhow::bail!("ffprobe cannot read the input ({})", answer.status);
    }
    let probed = url::parse_probe(&answer.stdout).map_err(anyhow::Error::msg)?;
    let plan = url::Plan::of(&probed, output);
    status.note(&format!(
        "input: {} {}x{}{}; {}",
        probed.codec,
        probed.width,
        probed.height,
        probed
            .fps
            .map(|f| format!(" at {f} fps"))
            .unwrap_or_default(),
        plan.describe("it is")
    ));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for spec in [
            "rpicam",
            "test",
            "cmd:ffmpeg -i x -f mjpeg -",
            "cmd:ffmpeg -i http://cam/video.mjpg -c copy -f mjpeg -",
            "file:/tmp/a.mjpeg",
            "rtsp://cam/stream1",
            "/dev/video0",
        ] {
            assert_eq!(spec.parse::<SourceSpec>().unwrap().to_string(), spec);
        }
        assert!("webcam"
            .parse::<SourceSpec>()
            .unwrap_err()
            .contains("rpicam, test"));
        assert!("cmd:".parse::<SourceSpec>().is_err());
        let secret: SourceSpec = "rtsp://u:pw1234@cam/x".parse().unwrap();
        assert_eq!(secret.to_string(), "rtsp://u:***@cam/x");
        assert_eq!(secret.secret_text(), "rtsp://u:pw1234@cam/x");
        assert!("ftp://x/y"
            .parse::<SourceSpec>()
            .unwrap_err()
            .contains("unknown scheme"));
    }
}
