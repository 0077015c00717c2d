//! The embedded MQTT broker (rumqttd, MQTT 3.1.1) for a fleet without one:
//! `viewer --embedded-broker [ADDR]` and `viewer demo`. Nodes,
//! `mosquitto_pub` and `mosquitto_sub` talk to it like to mosquitto.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::ViewerConfig;

/// Where `--embedded-broker` listens when given no address.
pub const DEFAULT_ADDR: &str = "0.0.0.0:1883";

/// When the config asks for an embedded broker: starts it and points the
/// viewer at it (`--broker`, when also given, is ignored with a warning).
pub fn serve_for(config: &mut ViewerConfig, broker_given: bool) -> Result<()> {
    let Some(addr) = config.embedded_broker else {
        return Ok(());
    };
    if broker_given {
        tracing::warn!("--broker is ignored: the viewer runs its own broker (--embedded-broker)");
    }
    let local = start(addr)?;
    config.mqtt.broker = format!("mqtt://{local}")
        .parse()
        .with_context(|| format!("embedded broker address {local}"))?;
    Ok(())
}

/// Starts the broker on `addr` (port 0: a free port) in its own threads,
/// for the life of the process; returns the address it listens on once it
/// accepts connections.
pub fn start(addr: SocketAddr) -> Result<SocketAddr> {
    // rumqttd reports a failed bind only in its log: check the port here.
    let probe = TcpListener::bind(addr).with_context(|| {
        format!("embedded broker: cannot listen on {addr} (another broker running? try --embedded-broker 0.0.0.0:1884)")
    })?;
    let addr = probe.local_addr()?;
    drop(probe);
    let config = format!(
        r#"
id = 0
[router]
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "camfleet"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 262144
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&config).context("embedded broker settings")?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .context("cannot start the embedded broker's thread")?;
    // Ready once rumqttd holds the port (a probe connection would make it log an error).
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpListener::bind(addr).is_ok() {
        if Instant::now() > deadline {
            bail!("embedded broker: not listening on {addr} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let local = match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], a.port()))
        }
        other => other,
    };
    tracing::info!("embedded MQTT broker listening on {addr}");
    Ok(local)
}
