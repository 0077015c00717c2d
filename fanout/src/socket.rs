//! Socket settings for connections that carry frames.
//!
//! A kernel send buffer grows to megabytes; a viewer on a slow link would
//! then be "sent" frames seconds before it reads them and the ring would
//! never see it fall behind. Capping the unsent data (`TCP_NOTSENT_LOWAT`)
//! at about one frame makes a slow reader block the writer within a frame,
//! so its next frame is chosen when the link can take it: the newest. Sent
//! but unacknowledged data is the link's own and is not limited.

use std::os::fd::AsFd;

use socket2::SockRef;

/// The smallest unsent cap, and the one a connection starts with.
pub const MIN_UNSENT: u32 = 16 * 1024;

/// The largest unsent cap, whatever the frames: a 4K still at high quality.
pub const MAX_UNSENT: u32 = 1024 * 1024;

/// The unsent cap of a viewer that fell behind. Its socket then reports
/// writable only once the previous frame has all but left, so the frame it
/// is sent next is chosen as late as possible: the newest.
pub const BEHIND_UNSENT: u32 = 4 * 1024;

/// Prepares a connection that will carry frames: no Nagle delay (a
/// frame's tail goes out at once) and its unsent data capped from now on
/// (the only way to get an [`UnsentCap`], so no socket that carries frames
/// can be missed). Failures are logged, not fatal: the viewer is still
/// served, only with the kernel's buffering.
pub fn prepare_viewer(stream: &impl AsFd) -> UnsentCap {
    if let Err(e) = SockRef::from(stream).set_tcp_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    UnsentCap::new(stream)
}

/// Keeps one socket's unsent cap at about one frame (the frame's size
/// rounded up to 4 KiB, within [`MIN_UNSENT`]..=[`MAX_UNSENT`]) while its
/// viewer keeps up, and at [`BEHIND_UNSENT`] while it is behind.
///
/// One frame rather than a fixed small cap because a viewer that keeps up
/// should get each frame in one write: at 1080p30 (about 95 KB a frame)
/// and 64 viewers a 16 KiB cap cost the node 13% more CPU and 0.5 ms more
/// latency (docs/benchmarks.md). The cap only changes when the frames
/// outgrow it or shrink below half of it, so it is set rarely.
#[derive(Debug)]
pub struct UnsentCap {
    current: u32,
}

impl UnsentCap {
    /// Caps `socket`'s unsent data at [`MIN_UNSENT`] now, until
    /// [`UnsentCap::fit`] sizes it to the frames.
    fn new(socket: &impl AsFd) -> Self {
        if let Err(e) = SockRef::from(socket).set_tcp_notsent_lowat(MIN_UNSENT) {
            tracing::warn!(
                "cannot cap unsent data (TCP_NOTSENT_LOWAT): {e}; a slow viewer may get old frames"
            );
        }
        UnsentCap {
            current: MIN_UNSENT,
        }
    }

    /// Sizes the cap for a frame of `len` bytes about to be written to a
    /// viewer that keeps up (or is `behind`).
    pub fn fit(&mut self, socket: &impl AsFd, len: usize, behind: bool) {
        let want = if behind {
            BEHIND_UNSENT
        } else {
            Self::size_for(len)
        };
        let shrink = want.saturating_mul(2) < self.current;
        if want > self.current || shrink || (behind && want != self.current) {
            if let Err(e) = SockRef::from(socket).set_tcp_notsent_lowat(want) {
                tracing::debug!("TCP_NOTSENT_LOWAT: {e}");
            }
            self.current = want;
        }
    }

    pub fn current(&self) -> u32 {
        self.current
    }

    fn size_for(len: usize) -> u32 {
        let len = u32::try_from(len).unwrap_or(MAX_UNSENT).min(MAX_UNSENT);
        len.div_ceil(4096)
            .saturating_mul(4096)
            .clamp(MIN_UNSENT, MAX_UNSENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_the_frame_size_with_hysteresis() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let read = |s: &std::net::TcpListener| SockRef::from(s).tcp_notsent_lowat().unwrap();
        let mut cap = prepare_viewer(&socket);
        assert_eq!(read(&socket), MIN_UNSENT, "set when the cap is made");
        cap.fit(&socket, 95_000, false);
        assert_eq!((cap.current(), read(&socket)), (24 * 4096, 24 * 4096));
        cap.fit(&socket, 60_000, false); // more than half: unchanged
        assert_eq!(read(&socket), 24 * 4096);
        cap.fit(&socket, 30_000, false);
        assert_eq!(read(&socket), 8 * 4096);
        cap.fit(&socket, 100, false);
        assert_eq!(read(&socket), 8 * 4096, "16 KiB is half of 32 KiB: kept");
        cap.fit(&socket, 50 * 1024 * 1024, false);
        assert_eq!(read(&socket), MAX_UNSENT);
        cap.fit(&socket, 95_000, true);
        assert_eq!(read(&socket), BEHIND_UNSENT);
        cap.fit(&socket, 95_000, false);
        assert_eq!(read(&socket), 24 * 4096);
    }
}
