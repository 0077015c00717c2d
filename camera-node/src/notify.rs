//! systemd service notifications (sd_notify(3)) for `Type=notify` units:
//! `READY=1` once every camera has delivered a frame and MQTT is connected,
//! `WATCHDOG=1` only while every camera's frames are fresh (so a hung node
//! or a dead camera gets the service restarted), `STATUS=` for `systemctl
//! status`, and `STOPPING=1` at shutdown. Without `NOTIFY_SOCKET` all of it
//! is a no-op.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cameras::Cameras;
use fanout::Health;

/// Past this, the node reports ready with frames but without MQTT: a
/// broker that is down at boot must not make systemd kill a working camera.
pub const READY_WITHOUT_MQTT_AFTER: Duration = Duration::from_secs(30);

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `WATCHDOG_USEC`, when systemd asks for a watchdog.
    watchdog_every: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC`/`WATCHDOG_PID`.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let addr = socket_addr(path.as_encoded_bytes())
                .map_err(|e| tracing::warn!("NOTIFY_SOCKET {path:?} unusable: {e}"))
                .ok()?;
            let socket = UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s));
            socket
                .map_err(|e| tracing::warn!("cannot open a notify socket: {e}"))
                .ok()
                .map(|s| (s, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map(|pid| pid.parse() == Ok(std::process::id()))
            .unwrap_or(true);
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|us| us.parse::<u64>().ok())
            .filter(|&us| us > 0 && for_us && socket.is_some())
            .map(|us| Duration::from_micros(us / 2));
        Notifier {
            socket,
            watchdog_every,
        }
    }

    pub fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.socket {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!("sd_notify {state:?}: {e}");
            }
        }
    }

    /// Notifies until `cancel`, then says `STOPPING=1`. `stale_after` is the
    /// cameras' own watchdog: a camera silent for longer is not healthy.
    pub async fn run(
        self,
        cameras: Arc<Cameras>,
        mqtt_connected: Arc<AtomicBool>,
        stale_after: Duration,
        cancel: CancellationToken,
    ) {
        if self.socket.is_none() {
            cancel.cancelled().await;
            return;
        }
        let started = Instant::now();
        // A tick per half watchdog period (systemd's advice), at least every second.
        let tick = self
            .watchdog_every
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let mut ticker = tokio::time::interval(tick);
        let mut ready = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            // Streams added over the API come and go; the node's own
            // cameras decide whether it is healthy.
            let hubs = cameras.vital_hubs();
            let health: Vec<Health> = hubs.iter().map(|h| h.health(stale_after)).collect();
            let frames_flow = health.iter().all(|h| h.is_fine());
            let mqtt = mqtt_connected.load(Ordering::Relaxed);
            // Ready once every enabled camera has delivered a frame.
            let all_started = health.iter().all(|h| !matches!(h, Health::Stale(None)));
            if !ready && all_started {
                if mqtt {
                    ready = true;
                    self.send("READY=1\nSTATUS=streaming; MQTT connected");
                    tracing::info!("told systemd the node is ready");
                } else if started.elapsed() >= READY_WITHOUT_MQTT_AFTER {
                    ready = true;
                    self.send("READY=1\nSTATUS=streaming; MQTT not connected");
                    tracing::warn!("ready for systemd without MQTT: the broker has not answered");
                }
            }
            if ready && frames_flow && self.watchdog_every.is_some() {
                self.send("WATCHDOG=1");
            }
            if ready {
                let cameras: Vec<String> = hubs
                    .iter()
                    .zip(&health)
                    .map(|(h, health)| match health {
                        Health::Ok(_) => format!("{} ok", h.camera_id()),
                        Health::Stopped => format!("{} stopped", h.camera_id()),
                        Health::Stale(_) => format!("{} no frames", h.camera_id()),
                    })
                    .collect();
                let mqtt = if mqtt {
                    "MQTT connected"
                } else {
                    "MQTT not connected"
                };
                self.send(&format!("STATUS={}; {mqtt}", cameras.join(", ")));
            }
        }
        self.send("STOPPING=1");
    }
}

/// A path, or `@name` for an abstract socket.
fn socket_addr(path: &[u8]) -> std::io::Result<SocketAddr> {
    match path.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))
        }
    }
}
