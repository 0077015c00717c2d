//! What the node serves to viewers.

pub mod tcp;
