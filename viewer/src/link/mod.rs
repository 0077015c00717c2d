//! A camera's link: from its node (or a relay viewer) to the viewer's live
//! hub and recorder.
//!
//! - [`supervisor`]: one task per camera, started, restarted and stopped
//!   as the nodes come and go.
//! - [`camera`]: a camera's connection: connect, read, reconnect, follow
//!   the relay plan.
//! - [`delivery`]: each frame read: counted, passed on once, recorded once.
//! - [`live`]: each camera's fan-out hub, read by the dashboard, the
//!   display, the relay server and Home Assistant.
//! - [`clock`]: each node's clock offset, measured.
//! - [`timeline`]: a camera's frames placed on the viewer's clock, in order.
//! - [`stats`]: what is counted of each link (a leaf).

pub mod camera;
pub mod clock;
pub mod delivery;
pub mod live;
pub mod stats;
pub mod supervisor;
pub mod timeline;
