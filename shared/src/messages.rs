//! JSON payloads on MQTT (DESIGN.md, "Contract: MQTT").

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub use crate::states::{Origin, PushStatus, RecordingStatus, RunState};

/// Version of the NodeInfo and stats payloads.
pub const PAYLOAD_VERSION: u32 = 1;

/// Status payloads (retained; `offline` is the last will).
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// What a node is and where its cameras can be reached. Retained on
/// `<prefix>/node/<id>/info` and sent on `response/getIP`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub v: u32,
    pub node_id: String,
    pub hostname: String,
    pub version: String,
    /// Addresses viewers should use, best first.
    pub addresses: Vec<String>,
    #[serde(with = "rfc3339_seconds")]
    pub started_at: DateTime<Utc>,
    pub cameras: Vec<CameraInfo>,
    /// Whether the kernel says the node's clock is synchronised (adjtimex);
    /// absent where the node cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_synchronized: Option<bool>,
    /// The Pi's cameras as `rpicam-vid --list-cameras` found them at start;
    /// absent where there is no rpicam-vid or no rpicam camera.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pi_cameras: Vec<PiCamera>,
}

/// A camera connected to the Pi (docs/mqtt.md, "NodeInfo").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiCamera {
    /// What `camera = N` picks.
    pub index: u32,
    /// The sensor (`imx708`, `imx219`, `ov5647`, ...).
    pub model: String,
    /// The sensor's full size.
    pub width: u32,
    pub height: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<SensorMode>,
}

/// One of a sensor's modes: what the `mode` control picks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorMode {
    /// The pixel format (`SRGGB10_CSI2P`).
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// The most frames a second it gives.
    pub fps: f64,
}

/// The node's answer to `GET /api/v1/time`: its clock, read while it
/// answered, for viewers that measure how far off it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeReply {
    pub v: u32,
    /// Microseconds since the Unix epoch by the node's clock.
    pub unix_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronized: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraInfo {
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// `mjpeg` or `h264`.
    pub codec: String,
    /// H.264: the RFC 6381 codec string (`avc1.4D4029`), for browsers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_string: Option<String>,
    /// H.264: frames from one keyframe to the next, as the stream has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gop_frames: Option<u64>,
    /// `host:port` of the TCP frame protocol (v1 for MJPEG, v2 for H.264).
    pub tcp: String,
    /// RTSP URL, present once the node serves RTSP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp: Option<String>,
    /// HTTP multipart MJPEG URL, present once the node serves HTTP (MJPEG
    /// cameras only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// False while capture is stopped on purpose.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A camera's source as its node supervises it, retained on
/// `<prefix>/node/<id>/camera/<camera>/state` (an empty retained message
/// once the camera is removed). Passwords in `source` are `***`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraState {
    pub v: u32,
    pub node_id: String,
    pub camera: String,
    /// `config` (the node's config file) or `api` (added at runtime).
    pub origin: Origin,
    pub source: String,
    pub enabled: bool,
    /// starting, running, waiting, stalled, backoff, stopped or failed.
    pub state: RunState,
    pub restarts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// RTSP servers the camera is pushed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushes: Vec<PushState>,
    /// The camera controls set (rpicam cameras), by rpicam-vid's option names.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub controls: std::collections::BTreeMap<String, serde_json::Value>,
    /// Why the last change asked on the camera's `set` topic was refused;
    /// absent once one is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_error: Option<String>,
}

/// One push of a camera to an RTSP server, in [`CameraState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushState {
    pub id: String,
    /// The server's URL, its password as `***`.
    pub url: String,
    /// `connecting`, `recording` or `backoff`.
    pub state: PushStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Periodic figures on `<prefix>/node/<id>/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    pub v: u32,
    pub node_id: String,
    #[serde(with = "rfc3339_seconds")]
    pub at: DateTime<Utc>,
    pub cameras: Vec<CameraStats>,
    /// The machine's own figures; absent from nodes before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<NodeHealth>,
}

/// A node's machine, sampled with its stats (docs/mqtt.md, "Health").
/// Every figure is absent where the machine does not tell it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// The firmware's throttling flags (`get_throttled`): now, and since boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_voltage: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_voltage_since_boot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_since_boot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freq_capped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freq_capped_since_boot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soc_temp_c: Option<f64>,
    /// Busy share of all cores since the last sample, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// One-minute load average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_1m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_total_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_available_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wifi: Option<WifiHealth>,
    /// Free space of the file system holding the state directory, and of
    /// the one holding the logs (`/var/log`), in percent of its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_free_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_free_percent: Option<f64>,
    /// Summed over the node's cameras: frames some viewer skipped, and
    /// camera process restarts, since the node started.
    pub frames_dropped: u64,
    pub camera_restarts: u64,
    /// What crossed a line, one sentence each naming the figure; empty when
    /// all is well.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The Wi-Fi interface's link.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WifiHealth {
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_dbm: Option<f64>,
    /// Link quality as the driver gives it (out of 70 for most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_quality: Option<f64>,
    /// The transmit bit rate, where `iw` tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_mbit_s: Option<f64>,
    /// Packets the driver gave up on after retrying, since the interface
    /// came up (`/proc/net/wireless`'s `retry` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStats {
    pub id: String,
    /// Frames per second from the camera over the last interval.
    pub fps: f64,
    /// Viewers connected now, over every protocol (TCP frames, RTSP, HTTP).
    pub viewers: usize,
    /// Frames since the node started.
    pub frames: u64,
    /// Frames some viewer skipped because it was slower than the camera.
    pub frames_dropped: u64,
    /// Times the camera process was restarted.
    pub camera_restarts: u64,
    /// Seconds since the last frame, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_frame_age_s: Option<f64>,
    /// Over this interval, from a frame's last byte read from the camera to
    /// its last byte written to a TCP viewer: median and 99th percentile, in
    /// milliseconds (upper bounds of histogram buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_latency_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_latency_p99_ms: Option<f64>,
}

/// Retained on `<prefix>/viewer/<id>/recording`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingState {
    /// `recording` or `idle`.
    pub state: RecordingStatus,
    /// The session folder name while recording (`YYYYmmddTHHMMSSZ`).
    pub session: Option<String>,
    /// When the session started, RFC 3339.
    pub since: Option<String>,
    /// Cameras recording now.
    pub cameras: usize,
    /// The last problem: a refused command, a write error.
    pub error: Option<String>,
    /// What the last command did, e.g. "start ignored: already recording".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Every camera the viewer is connected to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkFigures>,
    /// The recordings' budget and what it has deleted, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionFigures>,
}

/// What retention keeps and has deleted since the viewer started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionFigures {
    /// The budget in words, e.g. "keep 7 days, 10% free".
    pub budget: String,
    pub deleted_segments: u64,
    pub freed_bytes: u64,
}

/// One camera as a viewer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkFigures {
    pub node: String,
    pub camera: String,
    /// Frames per second received over the last interval.
    pub fps: f64,
    /// Frames the node skipped for this viewer (sequence gaps), in total.
    pub missed: u64,
    pub reconnects: u64,
    /// Frames received again after a reconnect and not recorded twice.
    #[serde(default)]
    pub duplicates: u64,
    /// H.264 frames received but not recorded because they came after a
    /// (re)connect or a gap and before the next keyframe (nothing could
    /// decode them).
    #[serde(default)]
    pub before_key: u64,
    pub frames: u64,
    /// The relay (viewer id) the camera arrives through; absent when it
    /// comes from its node directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// How far the node's clock is from the viewer's, once measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockFigures>,
}

/// A node's clock as a viewer measured it (DESIGN.md: one timeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockFigures {
    /// Node clock minus viewer clock, in milliseconds: -5400000 for a node
    /// 90 minutes behind.
    pub offset_ms: f64,
    /// Round trip of the exchange the offset comes from; the offset is
    /// right to within half of it.
    pub rtt_ms: f64,
    /// Whether frames are placed on the viewer's clock (the offset is over
    /// the threshold) or keep the node's capture time.
    pub corrected: bool,
    /// What the node's kernel says of its clock, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronized: Option<bool>,
    /// Why a user should look: a large offset, a recent step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A `command/rec` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecCommand {
    Start,
    Stop,
}

impl RecCommand {
    /// `start` or `stop`, any case, surrounding whitespace ignored.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?.trim();
        if text.eq_ignore_ascii_case("start") {
            Some(RecCommand::Start)
        } else if text.eq_ignore_ascii_case("stop") {
            Some(RecCommand::Stop)
        } else {
            None
        }
    }
}

/// RFC 3339 in UTC with a `Z` and whole seconds, as in the contract's example.
mod rfc3339_seconds {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"v":1,"node_id":"pi-door","hostname":"pi-door","version":"0.1.0",
 "addresses":["192.168.1.23"],"started_at":"2026-11-21T10:15:00Z",
 "cameras":[{"id":"cam0","width":1920,"height":1080,"fps":30,"codec":"mjpeg",
   "tcp":"192.168.1.23:8000","rtsp":"rtsp://192.168.1.23:8554/cam0",
   "http":"http://192.168.1.23:8080/cameras/cam0/stream.mjpg"}]}"#;

    #[test]
    fn the_contract_example_parses_and_round_trips() {
        let info: NodeInfo = serde_json::from_str(EXAMPLE).unwrap();
        assert_eq!(info.cameras[0].tcp, "192.168.1.23:8000");
        assert!(info.cameras[0].enabled);
        let text = serde_json::to_string(&info).unwrap();
        assert!(
            text.contains(r#""started_at":"2026-11-21T10:15:00Z""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<NodeInfo>(&text).unwrap(), info);
    }

    #[test]
    fn rec_commands_are_lenient_about_case_and_space() {
        assert_eq!(RecCommand::parse(b" START\n"), Some(RecCommand::Start));
        assert_eq!(RecCommand::parse(b"stop"), Some(RecCommand::Stop));
        assert_eq!(RecCommand::parse(b"go"), None);
        assert_eq!(RecCommand::parse(b"\xffstart"), None);
    }
}
