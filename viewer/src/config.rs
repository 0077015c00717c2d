//! Viewer settings: flags win over the environment (`CAMFLEET_<FLAG>`),
//! which wins over the TOML file, which wins over the defaults.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use shared::broker::{BrokerUrl, DEFAULT_BROKER};
use shared::mqtt::MqttSettings;
use shared::topics::SENSOR_FILTER;

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/camfleet/viewer.toml";

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
    after_help = "Examples:\n  viewer --broker mqtt://192.168.1.10:1883\n  \
        viewer --broker mqtt://192.168.1.10:1883 --headless --recordings /srv/camfleet\n  \
        mosquitto_pub -h 192.168.1.10 -t command/rec -m start"
)]
pub struct Cli {
    /// TOML config file [default: /etc/camfleet/viewer.toml when it exists]
    #[arg(long, env = "CAMFLEET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// MQTT broker: mqtt://[user:pass@]host[:port] or mqtts://... [default: mqtt://127.0.0.1:1883]
    #[arg(long, env = "CAMFLEET_BROKER", value_name = "URL")]
    pub broker: Option<String>,
    /// CA certificates (PEM) for an mqtts:// broker [default: the system's]
    #[arg(long, env = "CAMFLEET_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Viewer id in topics [default: the host name]
    #[arg(long, env = "CAMFLEET_VIEWER_ID", value_name = "ID")]
    pub viewer_id: Option<String>,
    /// Where sessions are recorded [default: ./recordings]
    #[arg(long, env = "CAMFLEET_RECORDINGS", value_name = "DIR")]
    pub recordings: Option<PathBuf>,
    /// Segment length; segments are cut on multiples of it (wall clock) [default: 60]
    #[arg(long, env = "CAMFLEET_SEGMENT_SECONDS", value_name = "S")]
    pub segment_seconds: Option<u64>,
    /// No windows (also when there is no DISPLAY, or the build has no `display` feature)
    #[arg(long, env = "CAMFLEET_HEADLESS")]
    pub headless: bool,
    /// One window per camera, or one window with all of them [default: windows]
    #[arg(long, env = "CAMFLEET_LAYOUT", value_enum)]
    pub layout: Option<Layout>,
    /// Prefix of the camfleet topics [default: camfleet]
    #[arg(long, env = "CAMFLEET_TOPIC_PREFIX", value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// Sensor topics to log to CSV (repeatable) [default: sensor/#]
    #[arg(
        long = "sensor-topic",
        env = "CAMFLEET_SENSOR_TOPIC",
        value_name = "FILTER",
        value_delimiter = ','
    )]
    pub sensor_topics: Vec<String>,
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
    pub headless: Option<bool>,
    pub layout: Option<Layout>,
    pub topic_prefix: Option<String>,
    pub sensor_topics: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One window per camera.
    Windows,
    /// One window with every camera.
    Grid,
}

#[derive(Debug, Clone)]
pub struct ViewerConfig {
    pub viewer_id: String,
    pub mqtt: MqttSettings,
    pub topic_prefix: String,
    pub recordings: PathBuf,
    pub segment: Duration,
    pub sensor_topics: Vec<String>,
    /// Windows to show, or `None` when headless.
    pub display: Option<Layout>,
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
        Ok(ViewerConfig {
            mqtt: MqttSettings {
                broker,
                client_id: format!("camfleet-viewer-{viewer_id}"),
                ca_file: cli.ca_file.or(file.ca_file),
            },
            viewer_id,
            topic_prefix: cli
                .topic_prefix
                .or(file.topic_prefix)
                .unwrap_or_else(|| "camfleet".into()),
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
