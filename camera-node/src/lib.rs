//! camfleet camera node: captures MJPEG or H.264 from a camera, splits it
//! into frames and fans them out to viewers (TCP frames, RTSP, HTTP); announces
//! itself on MQTT.
//!
//! # Layout
//! In data order (a frame from the camera out to viewers), then what the
//! whole node shares:
//! - [`source`]: where frames come from (rpicam, `cmd:`, `file:`, test
//!   pattern, URLs and devices through ffmpeg), and [`source::secrets`]:
//!   passwords kept out of logs, the API and MQTT.
//! - [`mjpeg`]: splits an MJPEG byte stream into JPEG frames.
//! - [`h264`]: splits an H.264 Annex B byte stream into access units.
//! - [`cameras`]: the node's cameras, added and removed at runtime (the
//!   camera API): each one's [`cameras::supervisor`] (runs a source,
//!   restarts it with backoff and a watchdog) and [`cameras::status`], and
//!   the [`cameras::store`] that keeps them across restarts.
//! - [`serve`]: what listens besides the TCP frame protocol (which, with
//!   the hub every server reads from, is the `fanout` library's):
//!   [`serve::rtsp`] (RTSP for players) and [`serve::http`] (index page,
//!   MJPEG, snapshots, JSON API, metrics, health).
//! - [`push`]: what goes out: a camera pushed to an RTSP server.
//! - [`rtp`]: RTP/JPEG (RFC 2435), RTP H.264 (RFC 6184) and RTCP, for RTSP
//!   and the push.
//! - [`presence`]: status, NodeInfo, discovery answers, stats and health on
//!   MQTT, and camera controls asked on MQTT.
//! - [`health`]: the Pi's own figures (throttling, temperature, Wi-Fi, free
//!   space), sampled with the stats.
//! - [`relay`]: the relay planner (who passes each camera to whom) and the
//!   plans it published.
//! - [`info`]: NodeInfo kept current (cameras, clock), shared by the servers.
//! - [`net`]: the addresses advertised to viewers.
//! - [`clock`]: the node's time and its synchronisation status, for viewers.
//! - [`config`]: flags, environment and TOML file, merged and checked.
//! - [`app`]: wires the tasks, owns the shutdown order (`main.rs` parses
//!   the flags and handles signals).
//! - [`auth`]: optional users for HTTP and RTSP.
//! - [`notify`]: systemd readiness, watchdog and status.

pub mod app;
pub mod auth;
pub mod cameras;
pub mod clock;
pub mod config;
pub mod h264;
pub mod health;
pub mod info;
pub mod mjpeg;
pub mod net;
pub mod notify;
pub mod presence;
pub mod push;
pub mod relay;
pub mod rtp;
pub mod serve;
pub mod source;

pub use app::run;
pub use config::{Cli, NodeConfig};
