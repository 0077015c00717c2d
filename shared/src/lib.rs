//! What the camfleet node and viewer agree on.
//!
//! # Layout
//! - [`topics`]: every MQTT topic string, and nowhere else.
//! - [`messages`]: the JSON payloads (NodeInfo, stats, record commands).
//! - [`frame`]: the frame type and the TCP frame protocols v1 (JPEG) and v2 (H.264).
//! - [`h264`]: parameter sets, `avcC`, codec strings, AVCC and Annex B.
//! - [`head`]: the lines and numbers of HTTP and RTSP reply heads.
//! - [`jpeg`]: a JPEG's width and height from its frame header.
//! - [`broker`]: parsing `mqtt://` and `mqtts://` broker URLs.
//! - [`config`]: the settings both binaries have (broker, id, prefix,
//!   TLS), merged and checked one way.
//! - [`mqtt`]: client options (last will, TLS) and the event-loop driver.
//! - [`net`]: `host:port` as both write it (brackets for IPv6).
//! - [`relay`]: the relay payloads: viewers' announcements and stats, and
//!   the plans the node publishes (the node's planner makes them).
//! - [`states`]: the states the payloads carry as words, as enums.
//! - [`time`]: the wall clock in microseconds, and the NTP epoch.
//! - [`backoff`]: the retry delay every long-lived peer uses.
//! - [`auth_throttle`]: what a failed password, cookie or token costs.
//! - [`process`]: logging and the two-stage shutdown signal of both binaries.
//! - [`error`]: the error enums callers match on.

pub mod auth_throttle;
pub mod backoff;
pub mod broker;
pub mod config;
pub mod error;
pub mod fmp4;
pub mod frame;
pub mod h264;
pub mod head;
pub mod jpeg;
pub mod messages;
pub mod mqtt;
pub mod net;
pub mod process;
pub mod relay;
pub mod states;
pub mod time;
pub mod tls;
pub mod topics;

pub use error::{BrokerUrlError, FrameError, MqttSetupError};
