//! What listens for viewers. The TCP frame protocol server is the fan-out
//! library's own (`fanout::tcp`, shared with relaying viewers); these are
//! the node's other two: RTSP (with RTP/JPEG) for players and HTTP for
//! browsers, scripts and Prometheus.

pub mod http;
pub mod rtsp;
