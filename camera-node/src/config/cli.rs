//! The node's command line: each flag is also a config key and a
//! `CAMFLEET_<FLAG>` variable (docs/config.md).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use shared::frame::Codec;
use shared::relay::Topology;

use crate::source::H264Profile;

#[derive(Debug, Parser)]
#[command(
    name = "camera-node",
    version,
    about = "Streams a Raspberry Pi camera to camfleet viewers and announces it on MQTT",
    long_about = "Streams a Raspberry Pi camera to camfleet viewers and announces it on MQTT.\n\n\
        Runs rpicam-vid (or libcamera-vid), splits its MJPEG output into frames and serves \
        them over the camfleet TCP frame protocol (port 8000 for cam0, +1 per further camera), \
        RTSP (rtsp://<host>:8554/<camera>) and HTTP (http://<host>:8080/: live page, MJPEG, \
        snapshots, a JSON API, /metrics, /healthz). Announces itself on the broker (camfleet/node/<id>/status, /info) and answers \
        command/getIP.\n\nEvery flag can also be set in the config file or as CAMFLEET_<FLAG> \
        in the environment; flags win.",
    after_help = "Examples:\n  camera-node --broker mqtt://192.168.1.10:1883\n  \
        camera-node --source test --width 640 --height 480\n  \
        camera-node --source 'cmd:ffmpeg -f v4l2 -i /dev/video0 -f mjpeg -' --node-id usbcam"
)]
pub struct Cli {
    /// TOML config file [default: /etc/camfleet/node.toml when it exists]
    #[arg(long, env = "CAMFLEET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// MQTT broker: mqtt://[user:pass@]host[:port] or mqtts://... [default: mqtt://127.0.0.1:1883]
    #[arg(long, env = "CAMFLEET_BROKER", value_name = "URL")]
    pub broker: Option<String>,
    /// CA certificates (PEM) for an mqtts:// broker [default: the system's]
    #[arg(long, env = "CAMFLEET_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Node id in topics and NodeInfo [default: the host name]
    #[arg(long, env = "CAMFLEET_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Camera source: rpicam, test, cmd:<command line> or file:<path> [default: rpicam]
    #[arg(long, env = "CAMFLEET_SOURCE", value_name = "SPEC")]
    pub source: Option<String>,
    /// Frame width in pixels [default: 1280]
    #[arg(long, env = "CAMFLEET_WIDTH", value_name = "W")]
    pub width: Option<u32>,
    /// Frame height in pixels [default: 720]
    #[arg(long, env = "CAMFLEET_HEIGHT", value_name = "H")]
    pub height: Option<u32>,
    /// Frames per second [default: 30]
    #[arg(long, env = "CAMFLEET_FPS", value_name = "F")]
    pub fps: Option<u32>,
    /// JPEG quality 1-100 [default: 80]
    #[arg(long, env = "CAMFLEET_QUALITY", value_name = "Q")]
    pub quality: Option<u8>,
    /// What the camera sends: mjpeg, or h264 from the Pi's encoder (the
    /// test pattern's own; a URL source's H.264 is copied unless mjpeg is
    /// asked for) [default: mjpeg]
    #[arg(long, env = "CAMFLEET_CODEC", value_name = "mjpeg|h264")]
    pub codec: Option<Codec>,
    /// H.264: seconds between keyframes, the longest a joining viewer
    /// waits [default: 1]
    #[arg(long, env = "CAMFLEET_KEYFRAME_SECONDS", value_name = "S")]
    pub keyframe_seconds: Option<u32>,
    /// H.264: bits per second; 0 picks by size (5 Mbit/s at 1080p30) [default: 0]
    #[arg(long, env = "CAMFLEET_BITRATE", value_name = "BPS")]
    pub bitrate: Option<u32>,
    /// H.264: baseline, main or high [default: main]
    #[arg(long, env = "CAMFLEET_H264_PROFILE", value_name = "PROFILE")]
    pub h264_profile: Option<H264Profile>,
    /// H.264: 4, 4.1 or 4.2 (the Pi 4's encoder: 4.1 up to 1080p30) [default: 4.1]
    #[arg(long, env = "CAMFLEET_H264_LEVEL", value_name = "LEVEL")]
    pub h264_level: Option<String>,
    /// H.264: give rpicam-vid the software encoder's flags (--libav-format
    /// h264 --low-latency), as on a Pi 5; default: when /proc/device-tree/model
    /// (under --health-root) says Raspberry Pi 5
    #[arg(long, env = "CAMFLEET_RPICAM_LIBAV", value_name = "BOOL")]
    pub rpicam_libav: Option<bool>,
    /// Which camera of the Pi rpicam-vid opens (--camera; 0 is the first
    /// connector; `rpicam-vid --list-cameras` lists them) [default: 0]
    #[arg(long, env = "CAMFLEET_CAMERA", value_name = "N")]
    pub camera: Option<u32>,
    /// TCP frame protocol port of cam0, +1 per further camera; 0 = any free port [default: 8000]
    #[arg(long, env = "CAMFLEET_TCP_PORT", value_name = "P")]
    pub tcp_port: Option<u16>,
    /// RTSP port (rtsp://host:P/<camera>); 0 = any free port [default: 8554]
    #[arg(long, env = "CAMFLEET_RTSP_PORT", value_name = "P")]
    pub rtsp_port: Option<u16>,
    /// HTTP port (index page, MJPEG, snapshots, API, metrics); 0 = any free port [default: 8080]
    #[arg(long, env = "CAMFLEET_HTTP_PORT", value_name = "P")]
    pub http_port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0]
    #[arg(long, env = "CAMFLEET_BIND", value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Host or address viewers should use, when the node's own addresses are not reachable
    #[arg(long, env = "CAMFLEET_ADVERTISE_HOST", value_name = "HOST")]
    pub advertise_host: Option<String>,
    /// Viewers per camera at most (every protocol together); more are
    /// refused. Size it by the uplink: docs/protocol.md [default: 64]
    #[arg(long, env = "CAMFLEET_MAX_VIEWERS", value_name = "N")]
    pub max_viewers: Option<usize>,
    /// Restart a camera that sent no frame for this long [default: 5]
    #[arg(long, env = "CAMFLEET_WATCHDOG_SECONDS", value_name = "S")]
    pub watchdog_seconds: Option<f64>,
    /// Relaying: viewers started with --relay pass each camera on to each
    /// other in groups of at most N, planned by this node; the node then
    /// feeds a few of them whatever the audience. 0 turns it off [default: 0]
    #[arg(long, env = "CAMFLEET_RELAY_MAX_MEMBER", value_name = "N")]
    pub relay_max_member: Option<usize>,
    /// Shape of the relay plan: chain (groups of N, each head feeding the
    /// next) or tree (an N-ary tree, shallower for large audiences) [default: chain]
    #[arg(long, env = "CAMFLEET_RELAY_TOPOLOGY", value_name = "chain|tree")]
    pub relay_topology: Option<Topology>,
    /// Prefix of the node's topics [default: camfleet]
    #[arg(long, env = "CAMFLEET_TOPIC_PREFIX", value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
    /// Seconds between stats and health samples [default: 10]
    #[arg(long, env = "CAMFLEET_STATS_SECONDS", value_name = "S")]
    pub stats_seconds: Option<u64>,
    /// Where the health figures' /proc and /sys, and the board's model,
    /// are read from (a copy or a container's view of the machine)
    /// [default: /]
    #[arg(long, env = "CAMFLEET_HEALTH_ROOT", value_name = "DIR")]
    pub health_root: Option<PathBuf>,
    /// Do not publish sensor/<node_id>/cpu_temp
    #[arg(long, env = "CAMFLEET_NO_CPU_TEMP")]
    pub no_cpu_temp: bool,
    /// Where cameras added over the API and every camera's stopped/started
    /// state are kept (cameras.json) [default: $STATE_DIRECTORY, which
    /// systemd sets; else nothing is kept]
    #[arg(long, env = "CAMFLEET_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Token the camera API's write calls must carry (Authorization:
    /// Bearer TOKEN, or X-Camfleet-Token: TOKEN)
    #[arg(
        long,
        env = "CAMFLEET_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// Let the camera API add cmd: and file: sources (they run any program
    /// or read any file the node can; off by default)
    #[arg(long, env = "CAMFLEET_API_ALLOW_COMMANDS")]
    pub api_allow_commands: bool,
    /// Serve HTTP (page, MJPEG, API) over TLS with this certificate chain (PEM); with --tls-key
    #[arg(
        long,
        env = "CAMFLEET_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(
        long,
        env = "CAMFLEET_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Check the configuration, print the settings in effect and exit
    #[arg(long)]
    pub check_config: bool,
}
