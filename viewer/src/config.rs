//! Viewer settings: flags win over the environment (`CAMFLEET_<FLAG>`),
//! which wins over the TOML file, which wins over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use shared::broker::{BrokerUrl, DEFAULT_BROKER};
use shared::mqtt::MqttSettings;
use shared::topics::SENSOR_FILTER;

use crate::record::retention::{parse_keep_free, parse_size, Retention};

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/camfleet/viewer.toml";
/// The web dashboard's address unless told otherwise.
pub const DEFAULT_DASHBOARD: &str = "127.0.0.1:8090";
/// Where `--embedded-broker` listens when given no address.
pub const DEFAULT_EMBEDDED_BROKER: &str = "0.0.0.0:1883";

#[derive(Debug, Parser)]
#[command(
    name = "viewer",
    version,
    about = "Shows every camfleet camera live and records them on command",
    long_about = "Finds every camfleet camera node on the MQTT broker (retained node info and \
        command/getIP), keeps one connection per camera, shows them live (OpenCV windows, unless \
        --headless or there is no display), and records 1-minute MP4 segments of every camera \
        while recording is on: `mosquitto_pub -t command/rec -m start` (and `stop`). \
        Recordings: <recordings>/<session>/<node>/<camera>/<segment start>.mp4; sensor topics \
        go to CSV beside them.\n\n\
        Every flag can also be set in the config file or as CAMFLEET_<FLAG> in the environment; \
        flags win.",
    after_help = "Examples:\n  viewer demo                                   # a simulated fleet, no Pi or broker needed\n  \
        viewer --broker mqtt://192.168.1.10:1883\n  \
        viewer --embedded-broker                      # be the fleet's broker on port 1883\n  \
        viewer --broker mqtt://192.168.1.10:1883 --headless --recordings /srv/camfleet\n  \
        mosquitto_pub -h 192.168.1.10 -t command/rec -m start"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML config file [default: /etc/camfleet/viewer.toml when it exists]
    #[arg(long, global = true, env = "CAMFLEET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// MQTT broker: mqtt://[user:pass@]host[:port] or mqtts://... [default: mqtt://127.0.0.1:1883]
    #[arg(long, global = true, env = "CAMFLEET_BROKER", value_name = "URL")]
    pub broker: Option<String>,
    /// CA certificates (PEM) for an mqtts:// broker [default: the system's]
    #[arg(long, global = true, env = "CAMFLEET_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Viewer id in topics [default: the host name]
    #[arg(long, global = true, env = "CAMFLEET_VIEWER_ID", value_name = "ID")]
    pub viewer_id: Option<String>,
    /// Where sessions are recorded [default: ./recordings]
    #[arg(long, global = true, env = "CAMFLEET_RECORDINGS", value_name = "DIR")]
    pub recordings: Option<PathBuf>,
    /// Segment length; segments are cut on multiples of it (wall clock) [default: 60]
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_SEGMENT_SECONDS",
        value_name = "S"
    )]
    pub segment_seconds: Option<u64>,
    /// Pass every camera on to other viewers, on ports of ADDR (a free port
    /// per camera), as the camera's node plans it (camera-node
    /// --relay-max-member) [default ADDR: 0.0.0.0]
    #[arg(long, global = true, env = "CAMFLEET_RELAY", value_name = "ADDR", num_args = 0..=1, default_missing_value = "0.0.0.0")]
    pub relay: Option<std::net::IpAddr>,
    /// Never record nor log sensors: `command/rec` is not followed (a relay
    /// that only passes cameras on: `--relay --headless --no-record`)
    #[arg(long, global = true, env = "CAMFLEET_NO_RECORD")]
    pub no_record: bool,
    /// No windows (also when there is no DISPLAY, or the build has no `display` feature)
    #[arg(long, global = true, env = "CAMFLEET_HEADLESS")]
    pub headless: bool,
    /// One window per camera, or one window with all of them [default: windows]
    #[arg(long, global = true, env = "CAMFLEET_LAYOUT", value_enum)]
    pub layout: Option<Layout>,
    /// Prefix of the camfleet topics [default: camfleet]
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_TOPIC_PREFIX",
        value_name = "PREFIX"
    )]
    pub topic_prefix: Option<String>,
    /// Sensor topics to log to CSV (repeatable) [default: sensor/#]
    #[arg(
        long = "sensor-topic",
        global = true,
        env = "CAMFLEET_SENSOR_TOPIC",
        value_name = "FILTER",
        value_delimiter = ','
    )]
    pub sensor_topics: Vec<String>,
    /// Run an MQTT broker inside the viewer, for a fleet without one [default ADDR: 0.0.0.0:1883]
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_EMBEDDED_BROKER",
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = DEFAULT_EMBEDDED_BROKER
    )]
    pub embedded_broker: Option<SocketAddr>,
    /// Announce the fleet to Home Assistant (MQTT discovery under PREFIX):
    /// cameras, the record switch, node health [default PREFIX: homeassistant]
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_HOMEASSISTANT",
        value_name = "PREFIX",
        num_args = 0..=1,
        default_missing_value = crate::homeassistant::DEFAULT_PREFIX
    )]
    pub homeassistant: Option<String>,
    /// Seconds between the snapshots published for Home Assistant's cameras [default: 10]
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_HOMEASSISTANT_SNAPSHOT_SECONDS",
        value_name = "S"
    )]
    pub homeassistant_snapshot_seconds: Option<u64>,
    /// Users of the embedded broker: a password file in mosquitto's format
    /// (`viewer broker-config` or mosquitto_passwd); without it the
    /// embedded broker takes anyone
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_BROKER_USERS",
        value_name = "FILE"
    )]
    pub broker_users: Option<PathBuf>,
    /// Delete segments older than D days (dated by their names)
    #[arg(long, global = true, env = "CAMFLEET_KEEP_DAYS", value_name = "D")]
    pub keep_days: Option<u32>,
    /// Free space to leave on the recordings' file system: a size (500MB, 20GB, 1.5TiB) or 10%;
    /// the oldest closed segments go first
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_KEEP_FREE",
        value_name = "SIZE|PCT"
    )]
    pub keep_free: Option<String>,
    /// Most the recordings folder may hold (500MB, 20GB, 1.5TiB); the oldest closed segments go first
    #[arg(long, global = true, env = "CAMFLEET_MAX_SIZE", value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Web dashboard address, or "off" [default: 127.0.0.1:8090]
    #[arg(long, global = true, env = "CAMFLEET_DASHBOARD", value_name = "ADDR")]
    pub dashboard: Option<String>,
    /// Serve the dashboard over HTTPS with this certificate chain (PEM); with --tls-key
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// The nodes' camera API token, for the dashboard's Sources page (it
    /// passes add, stop, start and delete on to the nodes)
    #[arg(
        long,
        global = true,
        env = "CAMFLEET_NODE_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub node_api_token: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// A whole fleet on this machine: embedded broker, simulated camera nodes
    /// (the test pattern), the viewer and its dashboard; Ctrl+C stops it all
    Demo {
        /// Camera nodes to start
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
        nodes: u16,
    },
    /// Writes a recorded session, or a time range of it, as one MP4 per
    /// camera (the JPEGs copied, no re-encoding) with a progress line each
    Export {
        /// The session: its folder's name under the recordings folder (YYYYmmddTHHMMSSZ)
        session: String,
        /// Start of the range, RFC 3339 (2026-11-27T10:17:42Z) [default: the session's start]
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// End of the range, RFC 3339 [default: the session's end]
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Only this camera, as node/camera (repeat for more) [default: every camera]
        #[arg(long, value_name = "NODE/CAMERA")]
        camera: Vec<String>,
        /// Folder to write the MP4s into
        #[arg(short, long, value_name = "DIR")]
        out: PathBuf,
        /// Also write an H.264 version of each (ffmpeg, libx264), for players
        /// without MJPEG
        #[arg(long)]
        h264: bool,
    },
    /// Writes a locked-down mosquitto set-up for the fleet: a TLS listener
    /// (a CA and server certificate made here, or yours), one user per node,
    /// viewer, operator and sensor with a random password (printed once,
    /// stored hashed) and an ACL letting each write only its own topics;
    /// prints each client's settings. See docs/security.md
    #[command(
        after_help = "Example:\n  viewer broker-config --nodes pi-door,pi-yard --viewers ws \\\n    \
        --operators alice,ws --host broker.lan --host 192.168.1.10 --out ./broker\n  \
        sudo cp -r ./broker /etc/mosquitto/camfleet   # with --conf-dir /etc/mosquitto/camfleet"
    )]
    BrokerConfig {
        /// Node ids (each a user that may write camfleet/node/<id>/#, sensor/<id>/#, response/getIP)
        #[arg(long, value_delimiter = ',', value_name = "ID,..")]
        nodes: Vec<String>,
        /// Viewer ids (each a user that may write camfleet/viewer/<id>/# and command/getIP)
        #[arg(long, value_delimiter = ',', value_name = "ID,..")]
        viewers: Vec<String>,
        /// Users that may send command/rec (a viewer listed here: its dashboard's Record button)
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "NAME,..",
            default_value = "operator"
        )]
        operators: Vec<String>,
        /// Sensor users (each may write sensor/<name>/# only)
        #[arg(long, value_delimiter = ',', value_name = "NAME,..")]
        sensors: Vec<String>,
        /// Name or address clients reach the broker by (repeat; all go in the certificate)
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
        /// The TLS listener's port
        #[arg(long, default_value_t = 8883)]
        port: u16,
        /// Folder to write the broker's files into
        #[arg(short, long, value_name = "DIR")]
        out: PathBuf,
        /// Where the files will be on the broker's machine [default: DIR]
        #[arg(long, value_name = "DIR")]
        conf_dir: Option<PathBuf>,
        /// Your own server certificate (PEM) instead of a made one; with --key and --ca
        #[arg(long, value_name = "FILE", requires_all = ["key", "ca"])]
        cert: Option<PathBuf>,
        /// The key of --cert (PEM)
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
        /// The CA that signed --cert (PEM), for the clients
        #[arg(long, value_name = "FILE", requires = "cert")]
        ca: Option<PathBuf>,
        /// Also a certificate signed by the fleet's CA for NAME's HTTPS (a
        /// node's or the dashboard's --tls-cert), valid for HOSTs; written to
        /// DIR/certs/NAME.crt and .key (repeat for more)
        #[arg(long = "cert-for", value_name = "NAME=HOST[,HOST..]", value_parser = cert_for)]
        certs_for: Vec<(String, Vec<String>)>,
        /// A "homeassistant" user for Home Assistant's MQTT integration (reads
        /// the fleet, sends command/rec), and viewers allowed to publish its
        /// discovery configs (viewer --homeassistant)
        #[arg(long)]
        homeassistant_user: bool,
        /// Replace the files of an earlier run (every password changes)
        #[arg(long)]
        force: bool,
    },
    /// Reads a password (one line on standard input) and prints a [[user]]
    /// entry for the viewer's config file, the password hashed (PBKDF2-SHA512,
    /// salted) as the dashboard and the embedded broker check it
    #[command(
        after_help = "Example:\n  read -rs PW; echo \"$PW\" | viewer hash-password alice >> viewer.toml"
    )]
    HashPassword {
        /// The user's name
        name: String,
    },
}

/// `--cert-for NAME=HOST[,HOST..]`.
fn cert_for(text: &str) -> Result<(String, Vec<String>), String> {
    let (name, hosts) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: NAME=HOST[,HOST..]"))?;
    let hosts: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    if name.is_empty() || hosts.is_empty() {
        return Err(format!("{text:?}: NAME=HOST[,HOST..]"));
    }
    Ok((name.to_owned(), hosts))
}

/// A dashboard user from the config file (`[[user]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// `$7$...` (PBKDF2-SHA512, `viewer hash-password` makes one).
    pub password_hash: String,
}

/// The config file; unknown keys are an error naming them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub broker: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub viewer_id: Option<String>,
    pub recordings: Option<PathBuf>,
    pub segment_seconds: Option<u64>,
    pub relay: Option<std::net::IpAddr>,
    pub no_record: Option<bool>,
    pub headless: Option<bool>,
    pub layout: Option<Layout>,
    pub topic_prefix: Option<String>,
    pub sensor_topics: Option<Vec<String>>,
    pub embedded_broker: Option<SocketAddr>,
    pub broker_users: Option<PathBuf>,
    pub homeassistant: Option<String>,
    pub homeassistant_snapshot_seconds: Option<u64>,
    pub dashboard: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Dashboard users: `[[user]]` with `name` and `password_hash`.
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
    pub node_api_token: Option<String>,
    pub keep_days: Option<u32>,
    pub keep_free: Option<String>,
    pub max_size: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One window per camera.
    Windows,
    /// One window with every camera.
    Grid,
}

/// MQTT keep-alive of a relaying viewer.
pub const RELAY_KEEP_ALIVE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ViewerConfig {
    pub viewer_id: String,
    /// Address to pass cameras on from, with `--relay`.
    pub relay: Option<std::net::IpAddr>,
    /// Follows `command/rec` and logs sensors (off with `--no-record`).
    pub record: bool,
    pub mqtt: MqttSettings,
    pub topic_prefix: String,
    pub recordings: PathBuf,
    pub segment: Duration,
    pub sensor_topics: Vec<String>,
    /// Windows to show, or `None` when headless.
    pub display: Option<Layout>,
    /// Run a broker in the process, listening here.
    pub embedded_broker: Option<SocketAddr>,
    /// The embedded broker's password file; `None`: it takes anyone.
    pub broker_users: Option<PathBuf>,
    /// Where the web dashboard listens; `None` when off.
    pub dashboard: Option<SocketAddr>,
    /// The dashboard address was asked for (not the default): failing to
    /// listen there is an error, not a warning.
    pub dashboard_explicit: bool,
    /// HTTPS for the dashboard: certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Home Assistant discovery prefix; `None`: off.
    pub homeassistant: Option<String>,
    /// How often each camera's snapshot goes to Home Assistant.
    pub snapshot_every: Duration,
    /// Who may use the dashboard; none: it is open.
    pub users: Vec<User>,
    /// What the Sources page's calls to the nodes' camera API carry.
    pub node_api_token: Option<String>,
    /// Keep the wanted recording state on disk and resume it after a
    /// restart (off for `viewer demo`, which starts afresh every time).
    pub resume: bool,
    /// What to delete when (off unless a key is set).
    pub retention: Retention,
}

impl ViewerConfig {
    /// Reads the config file (if any) and merges it with the flags.
    pub fn load(cli: Cli) -> Result<Self> {
        let path = cli.config.clone().or_else(|| {
            let default = PathBuf::from(DEFAULT_CONFIG_PATH);
            default.exists().then_some(default)
        });
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    pub fn merge(cli: Cli, file: FileConfig) -> Result<Self> {
        let viewer_id = match cli.viewer_id.or(file.viewer_id) {
            Some(id) => id,
            None => std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "viewer".into()),
        };
        if viewer_id.is_empty() || viewer_id.contains(['/', '+', '#']) {
            bail!("viewer_id: {viewer_id:?} must be non-empty without '/', '+' or '#'");
        }
        let broker = cli
            .broker
            .or(file.broker)
            .unwrap_or_else(|| DEFAULT_BROKER.to_owned());
        let broker: BrokerUrl = broker.parse().context("broker")?;
        let segment_seconds = cli.segment_seconds.or(file.segment_seconds).unwrap_or(60);
        if !(1..=3600).contains(&segment_seconds) {
            bail!("segment_seconds: {segment_seconds} is not between 1 and 3600");
        }
        let sensor_topics = match (cli.sensor_topics, file.sensor_topics) {
            (flags, _) if !flags.is_empty() => flags,
            (_, Some(listed)) => listed,
            _ => vec![SENSOR_FILTER.to_owned()],
        };
        let headless = cli.headless || file.headless.unwrap_or(false);
        let relay = cli.relay.or(file.relay);
        let no_record = cli.no_record || file.no_record.unwrap_or(false);
        let layout = cli.layout.or(file.layout).unwrap_or(Layout::Windows);
        let display = if headless {
            None
        } else if !cfg!(feature = "display") {
            tracing::info!("this viewer was built without the display feature: running headless");
            None
        } else if std::env::var_os("DISPLAY").is_none()
            && std::env::var_os("WAYLAND_DISPLAY").is_none()
        {
            tracing::info!("no DISPLAY or WAYLAND_DISPLAY: running headless");
            None
        } else {
            Some(layout)
        };
        let dashboard_text = cli.dashboard.or(file.dashboard);
        let dashboard_explicit = dashboard_text.is_some();
        let dashboard =
            match dashboard_text.as_deref().unwrap_or(DEFAULT_DASHBOARD) {
                "off" | "none" | "" => None,
                text => Some(text.parse::<SocketAddr>().with_context(|| {
                    format!("dashboard: {text:?} is not host:port (or \"off\")")
                })?),
            };
        let keep_free = cli
            .keep_free
            .or(file.keep_free)
            .map(|t| parse_keep_free(&t))
            .transpose()
            .map_err(|e| anyhow::anyhow!("keep_free: {e}"))?;
        let max_size = cli
            .max_size
            .or(file.max_size)
            .map(|t| parse_size(&t))
            .transpose()
            .map_err(|e| anyhow::anyhow!("max_size: {e}"))?;
        let retention = Retention {
            keep_days: cli.keep_days.or(file.keep_days),
            keep_free,
            max_size,
        };
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key go together"),
        };
        for user in &file.users {
            if user.name.is_empty() || user.name.contains(':') {
                bail!("user {:?}: a name without ':' is needed", user.name);
            }
            if !user.password_hash.starts_with("$7$") && !user.password_hash.starts_with("$6$") {
                bail!(
                    "user {:?}: password_hash must be a $7$ hash (make one with: viewer hash-password)",
                    user.name
                );
            }
        }
        let homeassistant = cli.homeassistant.or(file.homeassistant);
        if let Some(prefix) = &homeassistant {
            if prefix.is_empty() || prefix.contains(['+', '#']) || prefix.ends_with('/') {
                bail!("homeassistant: {prefix:?} is not a topic prefix");
            }
        }
        let snapshot_every = match cli
            .homeassistant_snapshot_seconds
            .or(file.homeassistant_snapshot_seconds)
        {
            Some(s) if (1..=3600).contains(&s) => Duration::from_secs(s),
            Some(s) => bail!("homeassistant_snapshot_seconds: {s} is not between 1 and 3600"),
            None => crate::homeassistant::DEFAULT_SNAPSHOT_EVERY,
        };
        Ok(ViewerConfig {
            tls,
            homeassistant,
            snapshot_every,
            users: file.users,
            relay,
            record: !no_record,
            retention,
            embedded_broker: cli.embedded_broker.or(file.embedded_broker),
            broker_users: cli.broker_users.or(file.broker_users),
            dashboard,
            dashboard_explicit,
            node_api_token: cli.node_api_token.or(file.node_api_token),
            resume: !no_record,
            mqtt: MqttSettings {
                broker,
                client_id: format!("camfleet-viewer-{viewer_id}"),
                ca_file: cli.ca_file.or(file.ca_file),
                persistent: true,
                // Relaying: a dead viewer's will within about 7 s, so the
                // plan heals without it (members move at once anyway).
                keep_alive: relay.map(|_| RELAY_KEEP_ALIVE),
            },
            viewer_id,
            topic_prefix: cli
                .topic_prefix
                .or(file.topic_prefix)
                .unwrap_or_else(|| shared::topics::DEFAULT_PREFIX.into()),
            recordings: cli
                .recordings
                .or(file.recordings)
                .unwrap_or_else(|| "recordings".into()),
            segment: Duration::from_secs(segment_seconds),
            sensor_topics,
            display,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DESIGN.md: every flag but `--version` and a subcommand's own has a
    /// config-file key (its long name with `_`) and a `CAMFLEET_<FLAG>`
    /// variable. `--config` names the file, so it has no key.
    #[test]
    fn every_flag_has_a_config_key_and_a_variable() {
        use clap::CommandFactory;
        // Keys named otherwise than their flag, kept as they were released.
        let renamed = [("sensor-topic", "sensor_topics")];
        let command = Cli::command();
        let mut checked = 0;
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let variable = format!("CAMFLEET_{}", long.replace('-', "_").to_uppercase());
            assert_eq!(
                arg.get_env().and_then(|v| v.to_str()),
                Some(variable.as_str()),
                "--{long} needs env = \"{variable}\""
            );
            checked += 1;
            if long == "config" {
                continue;
            }
            let key = renamed
                .iter()
                .find(|(flag, _)| *flag == long)
                .map_or_else(|| long.replace('-', "_"), |(_, key)| (*key).to_owned());
            // A wrong type is fine here: only an unknown key is not.
            let error = toml::from_str::<FileConfig>(&format!("{key} = []"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                !error.contains("unknown field"),
                "--{long} has no config key {key}: {error}"
            );
        }
        assert!(checked > 20, "only {checked} flags walked");
    }

    /// clap's own checks of the flags (names used twice, a global flag and
    /// a subcommand's of the same name): a panic here, not at a user's run.
    #[test]
    fn the_flags_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // A subcommand's flag named like a global one parses into the wrong
        // type: only parsing finds it.
        let parsed = [
            &[
                "viewer",
                "broker-config",
                "--nodes",
                "a",
                "--host",
                "h",
                "-o",
                "x",
            ][..],
            &["viewer", "export", "20261127T000000Z", "-o", "x"],
            &["viewer", "hash-password", "alice"],
            &["viewer", "demo"],
            &[
                "viewer",
                "--homeassistant",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
            ],
        ];
        for args in parsed {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(
                cli.command.is_some(),
                args.len() > 1 && !args[1].starts_with('-')
            );
        }
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("viewer").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let text =
            "viewer_id = 'file'\nsegment_seconds = 10\nlayout = 'grid'\nsensor_topics = ['a/#']\n";
        let file: FileConfig = toml::from_str(text).unwrap();
        let c = ViewerConfig::merge(cli(&["--viewer-id", "flag", "--headless"]), file).unwrap();
        assert_eq!((c.viewer_id.as_str(), c.segment.as_secs()), ("flag", 10));
        assert_eq!(c.sensor_topics, ["a/#"]);
        assert_eq!(c.recordings, PathBuf::from("recordings"));
        assert!(c.display.is_none());
        assert_eq!(c.dashboard, Some(DEFAULT_DASHBOARD.parse().unwrap()));
        assert!(c.embedded_broker.is_none());
    }

    #[test]
    fn demo_takes_the_viewer_flags_and_the_broker_address_is_optional() {
        let c = cli(&[
            "demo",
            "--nodes",
            "2",
            "--headless",
            "--embedded-broker",
            "--dashboard",
            "off",
        ]);
        assert!(matches!(c.command, Some(Command::Demo { nodes: 2 })));
        let v = ViewerConfig::merge(c, FileConfig::default()).unwrap();
        assert_eq!(v.embedded_broker, Some("0.0.0.0:1883".parse().unwrap()));
        assert_eq!((v.dashboard, v.dashboard_explicit), (None, true));
        let c = cli(&["--embedded-broker", "127.0.0.1:1999"]);
        assert_eq!(c.embedded_broker, Some("127.0.0.1:1999".parse().unwrap()));
        let err = ViewerConfig::merge(cli(&["--dashboard", "nowhere"]), FileConfig::default())
            .unwrap_err();
        assert!(err.to_string().contains("dashboard"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = toml::from_str::<FileConfig>("segment_secs = 3\n").unwrap_err();
        assert!(err.to_string().contains("segment_secs"), "{err}");
        let flags = cli(&["--viewer-id", "v", "--segment-seconds", "0"]);
        let err = ViewerConfig::merge(flags, FileConfig::default()).unwrap_err();
        assert!(err.to_string().contains("segment_seconds"), "{err}");
    }
}
