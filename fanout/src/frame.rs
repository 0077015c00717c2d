//! A frame as the fan-out holds it: one shared `Bytes`, never copied per
//! viewer. The type is the wire's ([`shared::frame::Frame`]): a relay hands
//! on what it read as it is.

pub use shared::frame::{Codec, Frame};
