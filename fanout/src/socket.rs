//! Socket settings for connections that carry frames.
//!
//! A kernel send buffer grows to megabytes; a viewer on a slow link would
//! then be "sent" frames seconds before it reads them and the ring would
//! never see it fall behind. Capping the unsent data makes a slow reader
//! block the writer within a fraction of a frame, so its next frame is
//! chosen when the link can take it: the newest.

use std::os::fd::AsFd;

use socket2::SockRef;

/// Unsent bytes a frame socket may hold (`TCP_NOTSENT_LOWAT`): past this
/// a write waits. A sixth of a 1080p frame; a viewer that keeps up drains
/// it at once, so its frames still go out in one or two writes, while a
/// slow one holds at most this much of an old frame in the kernel. Sent
/// but unacknowledged data is the link's own and is not limited.
pub const UNSENT_LIMIT: u32 = 16 * 1024;

/// Prepares an accepted viewer connection: no Nagle delay (a frame's tail
/// goes out at once) and capped unsent data. Failures are logged, not
/// fatal: the viewer is still served, only with the kernel's buffering.
pub fn prepare_viewer(stream: &impl AsFd) {
    let socket = SockRef::from(stream);
    if let Err(e) = socket.set_tcp_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    if let Err(e) = socket.set_tcp_notsent_lowat(UNSENT_LIMIT) {
        tracing::warn!(
            "cannot cap unsent data (TCP_NOTSENT_LOWAT): {e}; a slow viewer may get old frames"
        );
    }
}
