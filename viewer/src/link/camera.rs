//! One camera of one node: connect (to its node, or to the relay viewer
//! the plan names), read frames (protocol v1), reconnect with backoff,
//! switch parents make-before-break, restart on a silent stream. What each
//! frame then goes through is [`super::delivery`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures_lite::StreamExt;
use shared::backoff::Backoff;
use shared::frame::FrameDecoder;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::relay::route::{pick, Route, RELAY_STALL};

use super::delivery::Delivery;
use super::stats::LinkStats;

/// A stream that stays open but sends nothing for this long is reconnected.
pub const STREAM_WATCHDOG: Duration = Duration::from_secs(5);
/// A node or relay that has not accepted the connection in this long is
/// tried again later (a Pi on a lost Wi-Fi does not refuse, it stays silent).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A planned move to another parent: its connection, made before the old
/// one is left (the recorder goes on across the move).
struct Move {
    to: String,
    stream: TcpStream,
}

pub struct CameraLink {
    /// The camera's address on its node (`host:port`).
    pub tcp: String,
    pub stats: Arc<LinkStats>,
    /// Where the relay plan says to take the camera from (`None`: the node).
    pub route: watch::Receiver<Option<Route>>,
}

impl CameraLink {
    /// Connects and reads until `cancel`, handing each frame to `delivery`:
    /// to the parent the relay plan names (the node when there is no plan),
    /// to the backup at once when a relay parent closes or goes quiet, to
    /// the node after that; the node itself is retried with backoff.
    pub async fn run(self, mut delivery: Delivery, cancel: CancellationToken) {
        let mut backoff = Backoff::standard();
        // Relay parents that failed under the current plan.
        let mut failed: Vec<String> = Vec::new();
        let mut epoch = None;
        let mut carried: Option<Move> = None;
        loop {
            let route = self.route.borrow().clone();
            if route.as_ref().map(|r| r.epoch) != epoch {
                epoch = route.as_ref().map(|r| r.epoch);
                failed.clear();
            }
            let (addr, via) = pick(route.as_ref(), &failed, &self.tcp);
            // A planned move made its connection before leaving the old one.
            let moved = match carried.take() {
                Some(m) if m.to == addr => Some(m),
                Some(_) => {
                    delivery.stop_recorder().await;
                    None
                }
                None => None,
            };
            backoff.attempt_started();
            let result = self
                .run_once(
                    &cancel,
                    (&addr, via.as_deref()),
                    &route,
                    moved,
                    &mut delivery,
                )
                .await;
            if !matches!(result, Ok(Some(_))) {
                // Closed, or a gap until the next connection: the segment ends.
                delivery.stop_recorder().await;
            }
            if cancel.is_cancelled() {
                return;
            }
            let error = match result {
                Ok(next) => {
                    carried = next;
                    continue;
                }
                Err(error) => error,
            };
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            if let Some(parent) = via {
                tracing::warn!(
                    "relay {parent} ({addr}): {error:#}; switching to the backup at once"
                );
                failed.push(addr);
                continue;
            }
            failed.clear();
            let delay = backoff.next_delay();
            tracing::warn!("{error:#}; reconnecting in {:.1} s", delay.as_secs_f64());
            if cancel
                .run_until_cancelled(tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// Reads from `tcp` (through relay `via`, if any), chosen by the plan
    /// `planned`, until `cancel` (Ok), a plan that moves the camera
    /// elsewhere (Ok with the connection to the new parent, made before
    /// this one is left), or an error. A plan that came while connecting
    /// counts as one that came after.
    async fn run_once(
        &self,
        cancel: &CancellationToken,
        (tcp, via): (&str, Option<&str>),
        planned: &Option<Route>,
        moved: Option<Move>,
        delivery: &mut Delivery,
    ) -> Result<Option<Move>> {
        let stream = match moved {
            Some(m) => m.stream,
            None => tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(tcp))
                .await
                .map_err(|_| anyhow!("connecting to {tcp} timed out"))?
                .with_context(|| format!("connecting to {tcp}"))?,
        };
        match via {
            Some(parent) => tracing::info!("connected to {tcp} (relay {parent})"),
            None => tracing::info!("connected to {tcp}"),
        }
        let stall = if via.is_some() {
            RELAY_STALL
        } else {
            STREAM_WATCHDOG
        };
        *self.stats.via.lock().expect("via lock") = via.map(str::to_owned);
        let mut route = self.route.clone();
        if route.borrow_and_update().as_ref() != planned.as_ref() {
            route.mark_changed();
        }
        let mut frames = FramedRead::new(stream, FrameDecoder::new());
        delivery.connected();
        loop {
            let frame = tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                Ok(()) = route.changed() => {
                    let to = route.borrow_and_update().as_ref().map_or_else(|| self.tcp.clone(), |r| r.parent_addr.clone());
                    if to == tcp {
                        continue;
                    }
                    match make_before_break(tcp, &to).await {
                        Some(stream) => return Ok(Some(Move { to, stream })),
                        None => continue,
                    }
                }
                next = tokio::time::timeout(stall, frames.next()) => match next {
                    Err(_) => return Err(anyhow!("no frame from {tcp} for {:.1} s", stall.as_secs_f64())),
                    Ok(None) => return Err(anyhow!("{tcp} closed the stream")),
                    Ok(Some(Err(e))) => return Err(anyhow!("{tcp}: {e}")),
                    Ok(Some(Ok(frame))) => frame,
                },
            };
            delivery.on_frame(frame).await?;
        }
    }
}

/// The new parent's connection, made before the old one (`from`) is left;
/// `None` (staying) when it refuses or does not answer within [`RELAY_STALL`].
async fn make_before_break(from: &str, to: &str) -> Option<TcpStream> {
    match tokio::time::timeout(RELAY_STALL, TcpStream::connect(to)).await {
        Ok(Ok(stream)) => {
            tracing::info!("the relay plan moves this camera from {from} to {to}");
            Some(stream)
        }
        Ok(Err(e)) => {
            tracing::warn!("the relay plan names {to}, which refuses ({e}); staying on {from}");
            None
        }
        Err(_) => {
            tracing::warn!("the relay plan names {to}, which does not answer; staying on {from}");
            None
        }
    }
}
