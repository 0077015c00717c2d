//! MQTT client setup and the one task that drives the event loop.
//!
//! rumqttc's `poll()` reconnects at once after an error, and a clean
//! session loses its subscriptions: [`Driver::next`] adds the backoff and
//! reports every ConnAck as [`MqttEvent::Connected`], where the caller
//! resubscribes and republishes its retained state.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, Publish, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::broker::BrokerUrl;
use crate::error::MqttSetupError;

/// Largest MQTT packet accepted or sent. NodeInfo of a node with many
/// cameras is a few KiB, sensor payloads are small, a Home Assistant
/// snapshot is one JPEG (a few hundred KiB at 1080p). rumqttc's default
/// (10 KiB) is too tight for all of them.
pub const MAX_PACKET_LEN: usize = 2 * 1024 * 1024;
/// Keep-alive: the broker publishes a vanished peer's last will after 1.5x.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Requests the client may queue before `try_publish` fails.
pub const REQUEST_CAPACITY: usize = 256;

/// Everything needed to reach the broker.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub broker: BrokerUrl,
    pub client_id: String,
    /// PEM CA bundle for `mqtts://`; the system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Keep the session at the broker across disconnects (clean session
    /// off): QoS 1 messages to its subscriptions wait for it while it is
    /// away. Needs a stable `client_id`.
    pub persistent: bool,
    /// Keep-alive when not the default: a relaying viewer uses a short one
    /// so its last will (and the plan without it) comes within seconds.
    pub keep_alive: Option<Duration>,
}

/// A retained message the broker publishes when this client vanishes.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: String,
}

/// Client and event loop, set up but not yet connected.
pub fn connect(
    settings: &MqttSettings,
    will: Option<Will>,
) -> Result<(AsyncClient, Driver), MqttSetupError> {
    let b = &settings.broker;
    let mut options = MqttOptions::new(&settings.client_id, &b.host, b.port);
    options
        .set_keep_alive(settings.keep_alive.unwrap_or(KEEP_ALIVE))
        .set_clean_session(!settings.persistent)
        .set_max_packet_size(MAX_PACKET_LEN, MAX_PACKET_LEN)
        .set_request_channel_capacity(REQUEST_CAPACITY);
    if let Some(user) = &b.username {
        options.set_credentials(user, b.password.as_deref().unwrap_or(""));
    }
    if let Some(will) = will {
        options.set_last_will(LastWill::new(
            will.topic,
            will.payload,
            QoS::AtLeastOnce,
            true,
        ));
    }
    if b.tls {
        let config = crate::tls::client_config(settings.ca_file.as_deref())?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    Ok((client, Driver::spawn(eventloop, b.to_string())))
}

/// Brokers restart quickly; a cap of 10 s brings a fleet back soon after.
fn mqtt_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(10))
}

/// What the event loop reports to its owner.
#[derive(Debug)]
pub enum MqttEvent {
    /// A ConnAck: subscribe and publish retained state now.
    Connected,
    /// A message on a subscribed topic.
    Message(Publish),
    /// The broker acknowledged a subscription: from now on it delivers.
    Subscribed,
}

/// The receiving end of the event loop. A task of its own polls rumqttc's
/// `EventLoop` and nothing else: a poll dropped half-way (as `select!` does
/// with the branches that lose) would drop a connection in the middle of
/// its handshake, after the broker has its last will, and the broker would
/// publish that will. Waiting on [`Driver::next`] is cancel-safe.
pub struct Driver {
    events: mpsc::Receiver<MqttEvent>,
    connected: Arc<AtomicBool>,
    pump: JoinHandle<()>,
    broker: String,
}

/// Events queued between the event loop and its owner.
const EVENT_QUEUE: usize = 64;

impl Driver {
    fn spawn(eventloop: EventLoop, broker: String) -> Self {
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        let pump = tokio::spawn(
            pump(eventloop, tx, Arc::clone(&connected), broker.clone()).in_current_span(),
        );
        Driver {
            events,
            connected,
            pump,
            broker,
        }
    }

    /// The next connect or message; `None` once the event loop has stopped
    /// (after a disconnect). Connection errors are logged and retried with
    /// backoff inside.
    pub async fn next(&mut self) -> Option<MqttEvent> {
        self.events.recv().await
    }

    /// True from a ConnAck until the next connection error.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The flag behind [`Driver::is_connected`], for readers elsewhere
    /// (metrics).
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    /// Waits, at most `limit`, for what is queued (the `offline` status, the
    /// disconnect) to be sent; call after `client.try_disconnect()`.
    pub async fn close(mut self, limit: Duration) {
        self.events.close();
        if tokio::time::timeout(limit, &mut self.pump).await.is_err() {
            tracing::warn!(broker = %self.broker, "MQTT disconnect did not complete in {limit:?}");
            self.pump.abort();
        }
    }
}

/// Polls the event loop until the client disconnects, retrying failed
/// connections with backoff.
async fn pump(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<MqttEvent>,
    connected: Arc<AtomicBool>,
    broker: String,
) {
    let mut backoff = mqtt_backoff();
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected.store(true, Ordering::Relaxed);
                backoff.reset();
                backoff.attempt_started();
                tracing::info!(broker = %broker, "connected to MQTT broker");
                MqttEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => MqttEvent::Message(p),
            Ok(Event::Incoming(Packet::SubAck(_))) => MqttEvent::Subscribed,
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                connected.store(false, Ordering::Relaxed);
                if tx.is_closed() {
                    return; // shutting down; nothing more to send
                }
                let delay = backoff.next_delay();
                tracing::warn!(
                    broker = %broker,
                    "MQTT connection failed: {}; retrying in {:.1} s",
                    explain(&e),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        // A closed receiver means the owner is shutting down: keep polling
        // so its last publishes and the disconnect go out.
        let _ = tx.send(event).await;
    }
}

/// A connection error in words a user can act on.
pub fn explain(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => {
                "the broker refused the user name or password (check user:pass in the broker URL)"
                    .into()
            }
            ConnectReturnCode::NotAuthorized => {
                // mosquitto 2 answers a wrong password this way too.
                "the broker refused the connection: not authorised (check user:pass in the broker URL \
                 and the broker's ACL)"
                    .into()
            }
            other => format!("the broker refused the connection: {other:?}"),
        },
        ConnectionError::Io(io) => format!("{io}"),
        other => {
            let text = other.to_string();
            if text.contains("invalid peer certificate") {
                format!(
                    "{text} (the broker's certificate is not signed by the CA in ca_file/--ca-file, \
                     or is not for this host name)"
                )
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named() {
        let settings = MqttSettings {
            broker: "mqtts://h".parse().unwrap(),
            client_id: "t".into(),
            persistent: false,
            keep_alive: None,
            ca_file: Some("/nonexistent/ca.pem".into()),
        };
        let err = connect(&settings, None).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn refused_passwords_are_explained() {
        let e = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        assert!(explain(&e).contains("user name or password"));
    }
}
