//! Recording: frames as they came (JPEGs, H.264 access units), in
//! fragmented MP4 segments (`shared::fmp4`), and the sensor topics beside
//! them, while a session is on.
//!
//! - [`session`]: the record command's state machine.
//! - [`desired`]: the session asked for, on disk, resumed after a restart.
//! - [`recorder`]: one camera's writer thread, and its events.
//! - [`segmenter`]: frames into segments cut on the wall clock.
//! - [`sensors`]: sensor messages to CSV.
//! - [`retention`]: deletes the oldest segments to keep the budget.

pub mod desired;
pub mod recorder;
pub mod retention;
pub mod segmenter;
pub mod sensors;
pub mod session;
