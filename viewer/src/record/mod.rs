//! Recording: JPEG frames as they came, in fragmented MP4 segments, and the
//! sensor topics beside them, while a session is on.
//!
//! - [`session`]: the record command's state machine.
//! - [`desired`]: the session asked for, on disk, resumed after a restart.
//! - [`recorder`]: one camera's writer thread, and its events.
//! - [`segmenter`]: frames into segments cut on the wall clock.
//! - [`fmp4`]: the fragmented MP4 boxes.
//! - [`sensors`]: sensor messages to CSV.
//! - [`retention`]: deletes the oldest segments to keep the budget.

pub mod desired;
pub mod fmp4;
pub mod recorder;
pub mod retention;
pub mod segmenter;
pub mod sensors;
pub mod session;
