//! camfleet viewer: finds every camera node on the broker, keeps one task
//! per camera, and records gapless fragmented-MP4 segments on `command/rec`.
//!
//! # Layout
//! - [`record`]: the fMP4 writer and the segmenter that cuts on wall-clock
//!   boundaries.

pub mod record;
