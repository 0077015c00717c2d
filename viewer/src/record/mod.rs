//! Recording: JPEG frames as they came, in fragmented MP4 segments.

pub mod desired;
pub mod fmp4;
pub mod recorder;
pub mod segmenter;
