//! Viewer settings: flags, with `CAMFLEET_<FLAG>` environment fallbacks.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use shared::broker::{BrokerUrl, DEFAULT_BROKER};
use shared::mqtt::MqttSettings;
use shared::topics::SENSOR_FILTER;

#[derive(Debug, Parser)]
#[command(
    name = "viewer",
    version,
    about = "Finds every camfleet camera node on the broker and records them on command",
    long_about = "Finds every camfleet camera node on the MQTT broker (retained node info and \
        command/getIP), keeps one connection per camera, and records 1-minute MP4 segments of \
        every camera while recording is on: `mosquitto_pub -t command/rec -m start` (and `stop`). \
        Recordings: <recordings>/<session>/<node>/<camera>/<segment start>.mp4.\n\n\
        Every flag can also be set as CAMFLEET_<FLAG> in the environment; flags win.",
    after_help = "Examples:\n  viewer --broker mqtt://192.168.1.10:1883 --headless\n  \
        mosquitto_pub -h 192.168.1.10 -t command/rec -m start"
)]
pub struct Cli {
    /// MQTT broker: mqtt://[user:pass@]host[:port] or mqtts://... [default: mqtt://127.0.0.1:1883]
    #[arg(long, env = "CAMFLEET_BROKER", value_name = "URL")]
    pub broker: Option<String>,
    /// CA certificates (PEM) for an mqtts:// broker [default: the system's]
    #[arg(long, env = "CAMFLEET_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Viewer id in topics [default: the host name]
    #[arg(long, env = "CAMFLEET_VIEWER_ID", value_name = "ID")]
    pub viewer_id: Option<String>,
    /// Where sessions are recorded
    #[arg(
        long,
        env = "CAMFLEET_RECORDINGS",
        value_name = "DIR",
        default_value = "recordings"
    )]
    pub recordings: PathBuf,
    /// Segment length; segments are cut on multiples of it (wall clock)
    #[arg(
        long,
        env = "CAMFLEET_SEGMENT_SECONDS",
        value_name = "S",
        default_value_t = 60
    )]
    pub segment_seconds: u64,
    /// Run without windows (also when there is no DISPLAY, or the build has no `display` feature)
    #[arg(long, env = "CAMFLEET_HEADLESS")]
    pub headless: bool,
    /// One window per camera, or one window with all of them
    #[arg(long, env = "CAMFLEET_LAYOUT", value_enum, default_value = "windows")]
    pub layout: Layout,
    /// Prefix of the camfleet topics [default: camfleet]
    #[arg(long, env = "CAMFLEET_TOPIC_PREFIX", value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// Sensor topics to log to CSV (repeatable)
    #[arg(
        long = "sensor-topic",
        env = "CAMFLEET_SENSOR_TOPIC",
        value_name = "FILTER",
        value_delimiter = ','
    )]
    pub sensor_topics: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
    pub fn from_cli(cli: Cli) -> Result<Self> {
        let viewer_id = match cli.viewer_id {
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
        let broker: BrokerUrl = cli
            .broker
            .as_deref()
            .unwrap_or(DEFAULT_BROKER)
            .parse()
            .context("broker")?;
        if !(1..=3600).contains(&cli.segment_seconds) {
            bail!(
                "segment_seconds: {} is not between 1 and 3600",
                cli.segment_seconds
            );
        }
        let sensor_topics = if cli.sensor_topics.is_empty() {
            vec![SENSOR_FILTER.to_owned()]
        } else {
            cli.sensor_topics
        };
        let display = if cli.headless {
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
            Some(cli.layout)
        };
        Ok(ViewerConfig {
            mqtt: MqttSettings {
                broker,
                client_id: format!("camfleet-viewer-{viewer_id}"),
                ca_file: cli.ca_file,
            },
            viewer_id,
            topic_prefix: cli.topic_prefix.unwrap_or_else(|| "camfleet".into()),
            recordings: cli.recordings,
            segment: Duration::from_secs(cli.segment_seconds),
            sensor_topics,
            display,
        })
    }
}
