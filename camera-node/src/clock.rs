//! The node's wall clock as viewers need it: what it reads now, and whether
//! the kernel says it is kept in step (by NTP, chrony, systemd-timesyncd).
//!
//! A Pi has no real-time clock: until network time arrives it runs from
//! whatever it saved at shutdown. Viewers measure how far off it is over
//! `GET /api/v1/time` and place its frames on their own clock; the status
//! here tells a user why.

use shared::messages::TimeReply;
use shared::time::now_us;

/// The reply to `GET /api/v1/time`.
pub fn now() -> TimeReply {
    TimeReply {
        v: shared::messages::PAYLOAD_VERSION,
        unix_us: now_us(),
        synchronized: synchronized(),
    }
}

/// Whether the kernel's clock discipline says the clock is synchronised:
/// `adjtimex(2)` read-only, not `TIME_ERROR` and `STA_UNSYNC` clear (what
/// `timedatectl`'s "System clock synchronized" shows). `None` where the
/// call is not available.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub fn synchronized() -> Option<bool> {
    use nix::libc;
    // SAFETY: `timex` is plain integers (and a `timeval`), for which all
    // zeroes is a valid value; `modes == 0` makes `adjtimex` only read the
    // kernel's state into the struct, which lives for the whole call.
    let (state, status) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut tx);
        (state, tx.status)
    };
    if state == -1 {
        return None;
    }
    Some(state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn synchronized() -> Option<bool> {
    None
}
