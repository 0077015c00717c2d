//! camfleet viewer: finds every camera node on the broker, keeps one task
//! per camera, records gapless fragmented-MP4 segments on `command/rec` and
//! logs the sensor topics to CSV.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`app`]: MQTT, the record command, the retained state, shutdown order.
//! - [`discovery`]: which nodes are up, from retained info/status and getIP.
//! - [`supervisor`]: one task per camera, started, restarted and stopped.
//! - [`camera`]: a camera's connection: read, reconnect, record.
//! - [`clock`]: each node's clock offset, frames placed on one timeline.
//! - [`relay`]: passing cameras on to other viewers (`--relay`), as planned.
//! - [`record`]: the fMP4 writer, the segmenter, the writer thread.
//! - [`sensors`]: sensor messages to CSV.
//! - [`screens`]: the newest frame of each camera, for the display.
//! - `display` (feature `display`): the OpenCV windows.
//! - [`dashboard`]: the web dashboard (tiles, record buttons, sessions, sensors).
//! - [`metrics`]: the Prometheus figures the dashboard serves at `/metrics`.
//! - [`playback`]: looking back at a session: a camera's frame at an instant.
//! - [`retention`]: deletes the oldest segments to keep the recordings' budget.
//! - [`broker`]: the embedded MQTT broker (`--embedded-broker`).
//! - [`demo`]: `viewer demo`, a whole fleet on one machine.

pub mod app;
pub mod broker;
pub mod camera;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod discovery;
#[cfg(feature = "display")]
pub mod display;
pub mod homeassistant;
pub mod metrics;
pub mod node_http;
pub mod playback;
pub mod record;
pub mod relay;
pub mod retention;
pub mod screens;
pub mod security;
pub mod sensors;
pub mod supervisor;

pub use app::run;
pub use config::{Cli, ViewerConfig};
