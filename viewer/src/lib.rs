//! camfleet viewer: finds every camera node on the broker, keeps one task
//! per camera, records gapless fragmented-MP4 segments on `command/rec` and
//! logs the sensor topics to CSV.
//!
//! # Layout
//! A frame's path: [`link`] (node -> hub and recorder) -> [`record`],
//! [`relay`], [`dashboard`], [`display`], [`homeassistant`]; the MQTT side
//! is [`control`], and [`app`] wires them and stops them in order.
//! - [`config`]: flags, environment and the config file.
//! - [`app`]: the wiring and the shutdown order.
//! - [`control`]: the MQTT loop: discovery, the record command, sensor
//!   rows, relay plans, the retained state.
//! - [`discovery`]: which nodes are up, from retained info/status and getIP.
//! - [`link`]: one task per camera: connect, read, reconnect; each
//!   camera's live hub; the node clocks and the timeline; the counters.
//! - [`relay`]: passing cameras on to other viewers (`--relay`), as planned.
//! - [`record`]: the record command's session, the fMP4 writer, the
//!   segmenter, the writer thread, sensor CSVs, retention.
//! - [`playback`]: reading sessions back: segment indexes, frames at an
//!   instant, MP4/H.264 exports, the session zip.
//! - [`dashboard`]: the web dashboard (tiles, record buttons, sessions,
//!   sensors, the player, Sources, `/metrics`) and its login.
//! - [`display`]: the OpenCV windows (feature `display`).
//! - [`homeassistant`]: Home Assistant MQTT discovery and snapshots.
//! - [`node_http`]: talking to a node's HTTP API (clock, camera API).
//! - [`security`]: `viewer broker-config`, certificates, password files.
//! - [`broker`]: the embedded MQTT broker (`--embedded-broker`).
//! - [`demo`]: `viewer demo`, a whole fleet on one machine.

pub mod app;
pub mod broker;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod demo;
pub mod discovery;
pub mod display;
pub mod homeassistant;
pub mod link;
pub mod node_http;
pub mod playback;
pub mod record;
pub mod relay;
pub mod security;

pub use app::run;
pub use config::{Cli, ViewerConfig};
