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

#[cfg(test)]
mod tests {
    //! The link follows its plan whatever the moment the plan arrives:
    //! before the link starts, while it is still connecting to the node
    //! (forced: the node's accept queue is full, so the connection waits
    //! for the SYN to be sent again), or once frames flow. Real sockets
    //! stand in for the node and the relay.

    use super::*;
    use crate::link::delivery::tests::rig;
    use shared::frame::{FrameHeader, HELLO};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpSocket};
    use tokio::sync::mpsc;

    /// Serves the frame protocol on every connection `listener` accepts
    /// (a frame each 20 ms) and says which upstream took one.
    fn upstream(
        listener: TcpListener,
        name: &'static str,
        accepted: mpsc::UnboundedSender<&'static str>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = accepted.send(name);
                tokio::spawn(async move {
                    let _ = stream.write_all(HELLO).await;
                    let jpeg = b"\xFF\xD8 a frame \xFF\xD9";
                    for seq in 0.. {
                        let header = FrameHeader {
                            len: jpeg.len() as u32,
                            seq,
                            captured_at_us: shared::time::now_us(),
                        };
                        let sent = async {
                            stream.write_all(&header.encode()).await?;
                            stream.write_all(jpeg).await
                        };
                        if sent.await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
            }
        })
    }

    fn to_relay(relay: &str, node: &str) -> Option<Route> {
        Some(Route {
            epoch: 1,
            parent: Some("r1".into()),
            parent_addr: relay.to_owned(),
            backup: None,
            backup_addr: node.to_owned(),
        })
    }

    /// Whether this process has a connection to `port` still being made.
    fn connecting_to(port: u16) -> bool {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|r| r.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&"02") // SYN_SENT
        })
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_plan_is_followed_whenever_it_arrives() {
        for ordering in ["before", "during", "after"] {
            let node_socket = TcpSocket::new_v4().unwrap();
            node_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            // A backlog of 0 holds one connection that is not accepted.
            let node_listener = node_socket.listen(0).unwrap();
            let node = node_listener.local_addr().unwrap();
            let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let relay = relay_listener.local_addr().unwrap().to_string();
            let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
            let _relay = upstream(relay_listener, "relay", accepted_tx.clone());
            let plan = to_relay(&relay, &node.to_string());
            let (route_tx, route) = watch::channel(if ordering == "before" {
                plan.clone()
            } else {
                None
            });

            // "during": the accept queue is full, so the link's connection
            // hangs until the queue has room again.
            let blocker = if ordering == "during" {
                Some(TcpStream::connect(node).await.unwrap())
            } else {
                None
            };
            let r = rig(&format!("route-{ordering}"));
            let stats = Arc::clone(&r.counters.link);
            let link = CameraLink {
                tcp: node.to_string(),
                stats: Arc::clone(&stats),
                route,
            };
            let cancel = CancellationToken::new();
            let running = tokio::spawn(link.run(r.delivery, cancel.clone()));
            let node_up = match ordering {
                "during" => {
                    until("the link connecting to the node", || {
                        connecting_to(node.port())
                    })
                    .await;
                    route_tx.send_replace(plan.clone());
                    // Room in the queue: the blocker goes, the link's
                    // connection is taken on the SYN's next try.
                    let (held, _) = node_listener.accept().await.unwrap();
                    drop((held, blocker));
                    upstream(node_listener, "node", accepted_tx.clone())
                }
                _ => upstream(node_listener, "node", accepted_tx.clone()),
            };
            if ordering == "after" {
                assert_eq!(accepted.recv().await, Some("node"));
                until("frames from the node", || {
                    stats.frames.load(Ordering::Relaxed) > 3
                })
                .await;
                route_tx.send_replace(plan.clone());
            }
            until(&format!("{ordering}: the link on the relay"), || {
                stats.via.lock().unwrap().as_deref() == Some("r1")
            })
            .await;
            let on_relay = stats.frames.load(Ordering::Relaxed);
            until(&format!("{ordering}: frames through the relay"), || {
                stats.frames.load(Ordering::Relaxed) > on_relay + 3
            })
            .await;
            let mut order = Vec::new();
            while let Ok(name) = accepted.try_recv() {
                order.push(name);
            }
            match ordering {
                "before" => assert_eq!(order, ["relay"], "never the node"),
                "during" => {
                    // Which upstream's accept loop wakes first is theirs.
                    order.sort_unstable();
                    assert_eq!(order, ["node", "relay"], "on to the relay once connected");
                }
                _ => assert_eq!(order, ["relay"], "after the node seen above"),
            }
            cancel.cancel();
            running.await.unwrap();
            node_up.abort();
        }
    }
}
