//! camfleet camera node: captures MJPEG from a camera, splits it into
//! frames and fans them out to viewers (TCP frames, RTSP, HTTP); announces
//! itself on MQTT.
//!
//! # Layout
//! - [`config`]: flags, environment and TOML file, merged and checked.
//! - [`app`]: wires the tasks, owns the shutdown order.
//! - [`source`]: where frames come from (rpicam, `cmd:`, `file:`, test pattern).
//! - [`cameras`]: the node's cameras, added and removed at runtime (the
//!   camera API): each one's [`cameras::supervisor`] (runs a source,
//!   restarts it with backoff and a watchdog) and [`cameras::status`], and
//!   the [`cameras::store`] that keeps them across restarts.
//! - [`mjpeg`]: splits an MJPEG byte stream into JPEG frames.
//! - [`serve`]: what listens besides the TCP frame protocol (which, with
//!   the hub every server reads from, is the `fanout` library's):
//!   [`serve::rtsp`] (RTSP with RTP/JPEG, RFC 2435) and [`serve::http`]
//!   (index page, MJPEG, snapshots, JSON API, metrics, health).
//! - [`clock`]: the node's time and its synchronisation status, for viewers.
//! - [`info`]: NodeInfo kept current (cameras, clock), shared by the servers.
//! - [`auth`]: optional users for HTTP and RTSP.
//! - [`presence`]: status, NodeInfo, discovery answers and stats on MQTT.
//! - [`relay`]: the relay planner (who passes each camera to whom).
//! - [`notify`]: systemd readiness, watchdog and status.

pub mod app;
pub mod auth;
pub mod cameras;
pub mod clock;
pub mod config;
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
