//! Passing cameras on (`viewer --relay`): a relaying viewer serves every
//! camera it receives to other viewers ([`serve`]), and each of its camera
//! links takes its camera from where the node's relay plan says
//! ([`route`]).

pub mod route;
pub mod serve;

pub use route::{advertised_host, parse_plan, Route};
pub use serve::{left, Relays};
