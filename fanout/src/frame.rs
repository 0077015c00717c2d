//! A frame as the fan-out holds it: one shared `Bytes`, never copied per
//! viewer.

use bytes::Bytes;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Frame {
    /// Frames since the origin node started (a relay forwards it as is).
    pub seq: u64,
    /// Capture time on the origin node's clock, microseconds since the
    /// Unix epoch: when the frame's last byte was read from the camera.
    pub captured_at_us: u64,
    /// When this process had the frame in full (read from the camera or
    /// from the wire): the staleness limit and the send latency count
    /// from here, on the local monotonic clock.
    pub read_at: Instant,
    pub jpeg: Bytes,
}
