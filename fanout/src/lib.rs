//! camfleet fan-out: one camera's frames to any number of viewers, used by
//! the camera node and by viewers that relay a camera on.
//!
//! Every frame is one shared `Bytes`. The camera publishes into a short
//! ring and never waits; each viewer has its own cursor: a viewer that
//! keeps up gets every frame, also when they arrive in bursts, one that
//! falls behind (its next frame older than [`ring::STALE_AFTER`], or out
//! of the ring) jumps to the newest and the frames it skipped are counted.
//! Sockets that carry frames cap their unsent data ([`socket`]), so a slow
//! link shows as a slow reader here rather than as seconds of backlog in
//! the kernel.
//!
//! - [`frame`]: the frame type.
//! - [`ring`]: the bounded history and the cursor rule (pure).
//! - [`hub`]: one camera's ring, readers and counters.
//! - [`figures`]: protocols, counters, latency, health.
//! - [`socket`]: settings for frame-carrying sockets.
//! - [`tcp`]: the TCP frame protocol v1 server.
//! - [`http`]: pacing multipart HTTP bodies by what the socket took; serving a router.
//! - [`multipart`]: MJPEG for browsers, the boundary after each JPEG.
//! - [`live`]: every tile of a page over one WebSocket.
//! - [`snapshot`]: an H.264 camera's newest picture as a JPEG (ffmpeg).

pub mod figures;
pub mod frame;
pub mod http;
pub mod hub;
pub mod live;
pub mod multipart;
pub mod ring;
pub mod snapshot;
pub mod socket;
pub mod tcp;

pub use figures::{Health, HubFigures, LatencyCounts, LatencyHistogram, Protocol};
pub use frame::{Codec, Frame};
pub use hub::{Hub, Reader};
