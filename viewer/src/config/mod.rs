//! Viewer settings: flags win over the environment (`CAMFLEET_<FLAG>`),
//! which wins over the TOML file, which wins over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shared::config::{Common, CommonKeys};
use shared::mqtt::MqttSettings;
use shared::topics::SENSOR_FILTER;

use crate::record::retention::{parse_keep_free, parse_size, Retention};

mod cli;

pub use cli::{Cli, Command};

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/camfleet/viewer.toml";
/// The web dashboard's address unless told otherwise.
pub const DEFAULT_DASHBOARD: &str = "127.0.0.1:8090";
/// Where `--embedded-broker` listens when given no address.
pub const DEFAULT_EMBEDDED_BROKER: &str = "0.0.0.0:1883";

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
        let flags = CommonKeys {
            broker: cli.broker,
            ca_file: cli.ca_file,
            id: cli.viewer_id,
            topic_prefix: cli.topic_prefix,
            tls_cert: cli.tls_cert,
            tls_key: cli.tls_key,
        };
        let from_file = CommonKeys {
            broker: file.broker,
            ca_file: file.ca_file,
            id: file.viewer_id,
            topic_prefix: file.topic_prefix,
            tls_cert: file.tls_cert,
            tls_key: file.tls_key,
        };
        let common = Common::merge(flags, from_file, "viewer_id", "viewer")?;
        let viewer_id = common.id;
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
            tls: common.tls,
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
                broker: common.broker,
                client_id: format!("camfleet-viewer-{viewer_id}"),
                ca_file: common.ca_file,
                persistent: true,
                // Relaying: a dead viewer's will within about 7 s, so the
                // plan heals without it (members move at once anyway).
                keep_alive: relay.map(|_| RELAY_KEEP_ALIVE),
            },
            viewer_id,
            topic_prefix: common.topic_prefix,
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
    use clap::Parser;

    /// DESIGN.md: every flag has a config key and a `CAMFLEET_<FLAG>`
    /// variable (`--config` no key; the exceptions named below).
    #[test]
    fn every_flag_has_a_config_key_and_a_variable() {
        use clap::CommandFactory;
        use testkit::flags::{assert_every_flag_has_a_key_and_a_variable, unknown_key};
        let checked = assert_every_flag_has_a_key_and_a_variable(
            &Cli::command(),
            &[],
            &[("sensor-topic", "sensor_topics")],
            unknown_key::<FileConfig>,
        );
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
        assert!(matches!(c.command, Some(Command::Demo { nodes: 2, .. })));
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
