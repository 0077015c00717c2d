//! What a failed password, session cookie or token costs (docs/security.md,
//! "Password guessing"), the same on the viewer's dashboard and the node's
//! HTTP server whatever the scheme.
//!
//! Attempts from one address are checked one at a time, and a failure
//! holds that address's turn for its delay before it is answered: a script
//! that opens a hundred connections gets one guess per delay, not a hundred,
//! and a correct password among parallel guesses is not answered early.
//! Other addresses have turns of their own and are not slowed. Repeated
//! failures cost more ([`delay_for`]); an address that stops failing is
//! forgotten after [`FORGET_AFTER`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// What a failure costs at first: a person who mistyped hardly notices, a
/// script is held to one guess a second per address.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Failures within [`FORGET_AFTER`] that cost [`FAILURE_DELAY`]; each
/// further ten cost twice the ten before, up to [`MAX_DELAY`]. Ten leaves
/// a person room to try every password they might have used.
pub const FAILURES_PER_STEP: u32 = 10;
/// The most one failure costs: 30 s keeps a guessing script at under
/// 3000 guesses a day per address and lets a person back in within the
/// half minute once they remember.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// An address that has not failed for this long starts again from
/// [`FAILURE_DELAY`].
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most; past it, addresses that are not being
/// slowed now are forgotten, and if all are, new addresses share one turn
/// (a flood of source addresses slows only the newcomers).
pub const MAX_ADDRESSES: usize = 4096;

/// The delay of an address's `failures`-th failure within [`FORGET_AFTER`].
pub fn delay_for(failures: u32) -> Duration {
    let step = failures.saturating_sub(1) / FAILURES_PER_STEP;
    let factor = 1u32.checked_shl(step.min(16)).unwrap_or(u32::MAX);
    FAILURE_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

/// The failures of each address, and whose turn it is.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    addresses: Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<Failures>>>>,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Passed,
    /// Refused, after waiting this long (answer it now).
    Failed {
        waited: Duration,
        failures: u32,
    },
}

impl Attempt {
    /// The end of a failure's log line: where from, how many in a row,
    /// and what it cost (`None` for a success).
    pub fn failure_text(&self, peer: Option<std::net::SocketAddr>) -> Option<String> {
        let Attempt::Failed { waited, failures } = self else {
            return None;
        };
        let peer = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.to_string());
        Some(format!(
            "from {peer}: failure {failures} in a row from this address, answered after {:.0} s",
            waited.as_secs_f64()
        ))
    }
}

impl AuthThrottle {
    /// Runs `check` in `peer`'s turn (`None`: a peer whose address is not
    /// known, all such together); a failure waits its delay before
    /// returning, still in the turn.
    pub async fn attempt(&self, peer: Option<IpAddr>, check: impl FnOnce() -> bool) -> Attempt {
        let turn = self.turn_of(peer.map(key).unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let mut failures = turn.lock().await;
        if failures.last.is_some_and(|at| at.elapsed() > FORGET_AFTER) {
            failures.count = 0;
        }
        if check() {
            failures.count = 0;
            return Attempt::Passed;
        }
        failures.count = failures.count.saturating_add(1);
        let waited = delay_for(failures.count);
        tokio::time::sleep(waited).await;
        failures.last = Some(Instant::now());
        Attempt::Failed {
            waited,
            failures: failures.count,
        }
    }

    fn turn_of(&self, address: IpAddr) -> Arc<tokio::sync::Mutex<Failures>> {
        let mut addresses = self.addresses.lock().expect("auth throttle");
        if !addresses.contains_key(&address) && addresses.len() >= MAX_ADDRESSES {
            addresses.retain(|_, turn| {
                let busy = Arc::strong_count(turn) > 1;
                let recent = turn.try_lock().map_or(true, |f| {
                    f.last.is_some_and(|at| at.elapsed() <= FORGET_AFTER)
                });
                busy || recent
            });
            if addresses.len() >= MAX_ADDRESSES {
                let shared = IpAddr::from([255, 255, 255, 255]);
                return Arc::clone(addresses.entry(shared).or_default());
            }
        }
        Arc::clone(addresses.entry(address).or_default())
    }
}

/// The address a peer is counted under: IPv4 as it is, IPv6 by its /64
/// (one host has a whole /64 to pick addresses from).
fn key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_cost_more_in_steps_of_ten_up_to_the_cap() {
        assert_eq!(delay_for(1), FAILURE_DELAY);
        assert_eq!(delay_for(10), FAILURE_DELAY);
        assert_eq!(delay_for(11), 2 * FAILURE_DELAY);
        assert_eq!(delay_for(21), 4 * FAILURE_DELAY);
        assert_eq!(delay_for(51), MAX_DELAY);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn an_ipv6_host_is_one_address_whatever_it_picks_in_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(other));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(key(mapped), "10.0.0.7".parse::<IpAddr>().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_guesses_from_one_address_wait_in_line_and_others_do_not() {
        let throttle = Arc::new(AuthThrottle::default());
        let guesser: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        let guesses: Vec<_> = (0..12)
            .map(|_| {
                let throttle = Arc::clone(&throttle);
                tokio::spawn(async move { throttle.attempt(Some(guesser), || false).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // Another address with the right password is answered at once.
        let user = throttle
            .attempt(Some("192.0.2.2".parse().unwrap()), || true)
            .await;
        assert_eq!((user, start.elapsed()), (Attempt::Passed, Duration::ZERO));
        for guess in guesses {
            assert!(matches!(guess.await.unwrap(), Attempt::Failed { .. }));
        }
        // Ten at 1 s, then two at 2 s, one after the other.
        assert_eq!(start.elapsed(), Duration::from_secs(14));
        // The right password from the guessing address waits its turn only.
        let late = Instant::now();
        assert_eq!(
            throttle.attempt(Some(guesser), || true).await,
            Attempt::Passed
        );
        assert_eq!(late.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_that_stops_failing_is_forgotten() {
        let throttle = AuthThrottle::default();
        let peer: IpAddr = "192.0.2.3".parse().unwrap();
        for _ in 0..15 {
            throttle.attempt(Some(peer), || false).await;
        }
        tokio::time::sleep(FORGET_AFTER + Duration::from_secs(1)).await;
        let again = throttle.attempt(Some(peer), || false).await;
        assert_eq!(
            again,
            Attempt::Failed {
                waited: FAILURE_DELAY,
                failures: 1
            }
        );
    }
}
