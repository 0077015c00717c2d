//! The embedded MQTT broker (rumqttd, MQTT 3.1.1) for a fleet without one:
//! `viewer --embedded-broker [ADDR]` and `viewer demo`. Nodes,
//! `mosquitto_pub` and `mosquitto_sub` talk to it like to mosquitto.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use shared::broker::BrokerUrl;

use crate::security::passwd;

/// Starts the embedded broker on `addr`, with the users of `users_file`
/// (`--broker-users`) if given; answers the URL the viewer itself connects
/// with.
pub fn serve(addr: SocketAddr, users_file: Option<&Path>) -> Result<BrokerUrl> {
    let users = match users_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--broker-users {}", file.display()))?;
            let users = crate::security::passwd::parse_file(&text)
                .map_err(|e| anyhow::anyhow!("--broker-users {}: {e}", file.display()))?;
            if users.is_empty() {
                bail!("--broker-users {}: no users in it", file.display());
            }
            Some(users)
        }
        None => {
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    "the embedded broker on {addr} takes anyone who reaches it: a device on the network can pose \
                     as a node, send command/rec and read every topic. Give it users with --broker-users FILE, \
                     or listen on 127.0.0.1 (docs/security.md)"
                );
            }
            None
        }
    };
    // The viewer's own connection: a user only this process knows.
    let own = ("camfleet-viewer".to_owned(), passwd::random_password(32));
    let local = start(
        addr,
        users.map(|u| Users {
            own: own.clone(),
            users: u,
        }),
    )?;
    let credentials = match users_file {
        Some(_) => format!("{}:{}@", own.0, own.1),
        None => String::new(),
    };
    format!("mqtt://{credentials}{local}")
        .parse()
        .with_context(|| format!("embedded broker address {local}"))
}

/// Who may connect to the embedded broker: the password file's users and
/// the viewer itself.
#[derive(Debug, Clone)]
pub struct Users {
    own: (String, String),
    users: Vec<(String, String)>,
}

impl Users {
    fn allows(&self, user: &str, password: &str) -> bool {
        if user == self.own.0 {
            return password == self.own.1;
        }
        self.users
            .iter()
            .any(|(name, hash)| name == user && passwd::verify(password, hash))
    }
}

/// Starts the broker on `addr` (port 0: a free port) in its own threads,
/// for the life of the process; returns the address it listens on once it
/// accepts connections.
pub fn start(addr: SocketAddr, users: Option<Users>) -> Result<SocketAddr> {
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
max_payload_size = 2097152
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let mut config: rumqttd::Config =
        toml::from_str(&config).context("embedded broker settings")?;
    if let Some(users) = users {
        let count = users.users.len();
        for server in config.v4.iter_mut().flat_map(|v4| v4.values_mut()) {
            let users = users.clone();
            server
                .connections
                .set_auth_handler(move |client: String, user: String, password: String| {
                    let allowed = users.allows(&user, &password);
                    if !allowed {
                        tracing::warn!(
                            "embedded broker: refused client {client:?}: unknown user {user:?} or wrong password"
                        );
                    }
                    std::future::ready(allowed)
                });
        }
        tracing::info!(
            "embedded broker: {count} users, each with a password; no ACL (docs/security.md)"
        );
    }
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
