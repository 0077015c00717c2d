//! The viewer's command line: its flags (each also a config key and a
//! `CAMFLEET_<FLAG>` variable) and its subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::{Layout, DEFAULT_EMBEDDED_BROKER};

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
        /// What the simulated cameras send: mjpeg, h264, or mixed (every
        /// other node H.264)
        #[arg(long, default_value = "mjpeg", value_parser = ["mjpeg", "h264", "mixed"])]
        codec: String,
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
