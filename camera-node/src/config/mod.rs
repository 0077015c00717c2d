//! Node settings: flags win over environment (`CAMFLEET_<FLAG>`), which
//! wins over the TOML file, which wins over the defaults. Every key is
//! documented in docs/config.md.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use shared::config::{Common, CommonKeys};
use shared::mqtt::MqttSettings;
use shared::relay::Topology;

use crate::auth::{User, Users};
use crate::source::controls::Controls;

mod cameras;
mod cli;

use cameras::merge_cameras;
pub use cameras::{CameraConfig, FileCamera, FileH264};
pub use cli::Cli;

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/camfleet/node.toml";
/// Where Linux reports the SoC temperature in millidegrees Celsius.
pub const DEFAULT_CPU_TEMP_PATH: &str = "/sys/class/thermal/thermal_zone0/temp";

/// Viewers per camera by default. The uplink, not the node's CPU, is the
/// limit: a Pi 4's gigabit Ethernet carries about 40 1080p30 MJPEG streams
/// (about 23 Mbit/s each), many more at 720p or lower rates.
pub const DEFAULT_MAX_VIEWERS: usize = 64;

/// The config file. Unknown keys are an error, so a typo never goes unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_id: Option<String>,
    pub broker: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub topic_prefix: Option<String>,
    pub bind: Option<IpAddr>,
    pub advertise_host: Option<String>,
    pub tcp_port: Option<u16>,
    pub rtsp_port: Option<u16>,
    pub http_port: Option<u16>,
    /// Seconds a UDP RTSP session lives without a keepalive.
    pub rtsp_session_timeout_seconds: Option<u64>,
    pub max_viewers: Option<usize>,
    pub watchdog_seconds: Option<f64>,
    pub relay_max_member: Option<usize>,
    pub relay_topology: Option<Topology>,
    pub cpu_temp: Option<bool>,
    pub cpu_temp_path: Option<PathBuf>,
    pub stats_seconds: Option<u64>,
    pub health_root: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub api_token: Option<String>,
    pub api_allow_commands: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Defaults for every camera.
    pub source: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    pub quality: Option<u8>,
    #[serde(flatten)]
    pub h264: FileH264,
    /// Camera controls for every camera; a camera's own win.
    #[serde(default)]
    pub controls: Controls,
    /// `[[camera]]` tables; one camera from the defaults when absent.
    #[serde(default, rename = "camera")]
    pub cameras: Vec<FileCamera>,
    /// `[[user]]` tables: HTTP and RTSP need one of them when any is given.
    #[serde(default, rename = "user")]
    pub users: Vec<FileUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUser {
    pub name: String,
    pub password: String,
}

/// Settings after merging, checked.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    pub mqtt: MqttSettings,
    pub topic_prefix: String,
    pub bind: IpAddr,
    pub advertise_host: Option<String>,
    pub rtsp_port: u16,
    pub http_port: u16,
    pub rtsp_session_timeout: Duration,
    pub users: Users,
    pub max_viewers: usize,
    pub watchdog: Duration,
    /// Relay groups' size; 0 when relaying is off.
    pub relay_max_member: usize,
    pub relay_topology: Topology,
    /// The file to read the CPU temperature from; `None` when turned off.
    pub cpu_temp_path: Option<PathBuf>,
    /// How often stats and health are sampled and published.
    pub stats_interval: Duration,
    /// Where health reads `/proc` and `/sys` from (`/` on a real node).
    pub health_root: PathBuf,
    pub cameras: Vec<CameraConfig>,
    /// Where the state file lives; `None`: cameras added over the API are
    /// forgotten when the node stops.
    pub state_dir: Option<PathBuf>,
    pub api_token: Option<String>,
    pub api_allow_commands: bool,
    /// HTTPS for the HTTP server: certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl NodeConfig {
    /// The settings in effect, for `--check-config`.
    pub fn summary(&self) -> String {
        let port = |p: u16| {
            if p == 0 {
                "any free port".to_owned()
            } else {
                p.to_string()
            }
        };
        let auth = if self.users.is_open() {
            "no authentication".to_owned()
        } else {
            format!("{} users", self.users.count())
        };
        let mut out = format!(
            "node {} on broker {} (topics {}/...)\nlisten {} advertise {}\nRTSP {} HTTP {} ({auth})\n",
            self.node_id,
            self.mqtt.broker,
            self.topic_prefix,
            self.bind,
            self.advertise_host
                .as_deref()
                .unwrap_or("(this host's addresses)"),
            port(self.rtsp_port),
            port(self.http_port),
        );
        for c in &self.cameras {
            out.push_str(&format!(
                "{}: {} {}x{} at {} fps, quality {}, TCP {}\n",
                c.id,
                c.source,
                c.capture.width,
                c.capture.height,
                c.capture.fps,
                c.capture.quality,
                port(c.tcp_port)
            ));
        }
        out
    }

    /// Reads the config file (if any) and merges it with the flags.
    pub fn load(cli: Cli) -> Result<Self> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                read_file(Path::new(DEFAULT_CONFIG_PATH))?
            }
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    pub fn merge(cli: Cli, mut file: FileConfig) -> Result<Self> {
        // `cli` is lent to merge_cameras below: its strings are cloned, not moved.
        let flags = CommonKeys {
            broker: cli.broker.clone(),
            ca_file: cli.ca_file.clone(),
            id: cli.node_id.clone(),
            topic_prefix: cli.topic_prefix.clone(),
            tls_cert: cli.tls_cert.clone(),
            tls_key: cli.tls_key.clone(),
        };
        let from_file = CommonKeys {
            broker: file.broker.take(),
            ca_file: file.ca_file.take(),
            id: file.node_id.take(),
            topic_prefix: file.topic_prefix.take(),
            tls_cert: file.tls_cert.take(),
            tls_key: file.tls_key.take(),
        };
        let common = Common::merge(flags, from_file, "node_id", "camera-node")?;
        let node_id = common.id;
        let max_viewers = cli
            .max_viewers
            .or(file.max_viewers)
            .unwrap_or(DEFAULT_MAX_VIEWERS);
        if max_viewers == 0 {
            bail!("max_viewers: must be at least 1");
        }
        let watchdog_s = cli
            .watchdog_seconds
            .or(file.watchdog_seconds)
            .unwrap_or(5.0);
        if !(0.1..=3600.0).contains(&watchdog_s) {
            bail!("watchdog_seconds: {watchdog_s} is not between 0.1 and 3600");
        }
        let cpu_temp = !cli.no_cpu_temp && file.cpu_temp.unwrap_or(true);
        let cpu_temp_path = cpu_temp.then(|| {
            file.cpu_temp_path
                .clone()
                .unwrap_or_else(|| DEFAULT_CPU_TEMP_PATH.into())
        });

        let stats_seconds = cli.stats_seconds.or(file.stats_seconds).unwrap_or(10);
        if !(1..=3600).contains(&stats_seconds) {
            bail!("stats_seconds: {stats_seconds} is not between 1 and 3600");
        }
        let health_root = cli
            .health_root
            .clone()
            .or(file.health_root.clone())
            .unwrap_or_else(|| "/".into());
        let defaults = FileCamera {
            id: None,
            source: file.source,
            width: file.width,
            height: file.height,
            fps: file.fps,
            quality: file.quality,
            h264: file.h264.clone(),
            tcp_port: None,
            camera: None,
            controls: file.controls,
            push: Vec::new(),
        };
        let listed = if file.cameras.is_empty() {
            vec![FileCamera::default()]
        } else {
            file.cameras
        };
        let base_port = cli.tcp_port.or(file.tcp_port).unwrap_or(8000);
        let mut cameras = merge_cameras(&cli, &defaults, listed, base_port)?;
        // The board, unless a flag or key says: a Pi 5 gets rpicam-vid's
        // software encoder's flags.
        let pi5 = crate::source::board_is_pi5(&health_root);
        for camera in &mut cameras {
            camera.capture.h264.libav.get_or_insert(pi5);
        }
        let users = merge_users(file.users)?;
        let session_timeout = file
            .rtsp_session_timeout_seconds
            .unwrap_or(crate::serve::rtsp::DEFAULT_SESSION_TIMEOUT.as_secs());
        if !(1..=3600).contains(&session_timeout) {
            bail!("rtsp_session_timeout_seconds: {session_timeout} is not between 1 and 3600");
        }
        Ok(NodeConfig {
            mqtt: MqttSettings {
                broker: common.broker,
                client_id: format!("camfleet-node-{node_id}"),
                ca_file: common.ca_file,
                persistent: false,
                keep_alive: None,
            },
            node_id,
            topic_prefix: common.topic_prefix,
            bind: cli
                .bind
                .or(file.bind)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            advertise_host: cli.advertise_host.or(file.advertise_host),
            rtsp_port: cli.rtsp_port.or(file.rtsp_port).unwrap_or(8554),
            http_port: cli.http_port.or(file.http_port).unwrap_or(8080),
            rtsp_session_timeout: Duration::from_secs(session_timeout),
            users: Users::new(users),
            max_viewers,
            watchdog: Duration::from_secs_f64(watchdog_s),
            relay_max_member: cli.relay_max_member.or(file.relay_max_member).unwrap_or(0),
            relay_topology: cli
                .relay_topology
                .or(file.relay_topology)
                .unwrap_or_default(),
            cpu_temp_path,
            stats_interval: Duration::from_secs(stats_seconds),
            health_root,
            cameras,
            state_dir: cli
                .state_dir
                .or(file.state_dir)
                .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from)),
            api_token: match cli.api_token.or(file.api_token) {
                Some(t) if t.len() < 16 || t.chars().any(char::is_whitespace) => {
                    bail!("api_token: use at least 16 characters without spaces")
                }
                token => token,
            },
            api_allow_commands: cli.api_allow_commands || file.api_allow_commands.unwrap_or(false),
            tls: common.tls,
        })
    }
}

fn merge_users(listed: Vec<FileUser>) -> Result<Vec<User>> {
    let mut users = Vec::with_capacity(listed.len());
    for (i, u) in listed.into_iter().enumerate() {
        if u.name.is_empty() || u.name.contains(':') || u.password.is_empty() {
            bail!("user[{i}]: name must be non-empty without ':', password non-empty");
        }
        users.push(User {
            name: u.name,
            password: u.password,
        });
    }
    Ok(users)
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

/// The fleet's one id rule ([`shared::config::check_id`]).
pub fn check_id(key: &str, id: &str) -> Result<()> {
    Ok(shared::config::check_id(key, id)?)
}

pub fn check_range(key: &str, value: u32, min: u32, max: u32) -> Result<()> {
    if !(min..=max).contains(&value) {
        bail!("{key}: {value} is not between {min} and {max}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceSpec;
    use clap::Parser;

    /// DESIGN.md: every flag has a config key and a `CAMFLEET_<FLAG>`
    /// variable (`--config` no key; the exceptions named below).
    #[test]
    fn every_flag_has_a_config_key_and_a_variable() {
        use clap::CommandFactory;
        use testkit::flags::{assert_every_flag_has_a_key_and_a_variable, unknown_key};
        let checked = assert_every_flag_has_a_key_and_a_variable(
            &Cli::command(),
            &["check-config"],
            &[("no-cpu-temp", "cpu_temp")],
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
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("camera-node").chain(args.iter().copied())).unwrap()
    }

    fn file(text: &str) -> Result<FileConfig> {
        Ok(toml::from_str(text)?)
    }

    #[test]
    fn defaults_make_one_rpicam_camera_on_8000() {
        let c = NodeConfig::merge(cli(&["--node-id", "pi"]), FileConfig::default()).unwrap();
        assert_eq!(c.cameras.len(), 1);
        let cam = &c.cameras[0];
        assert_eq!(
            (cam.id.as_str(), &cam.source, cam.tcp_port),
            ("cam0", &SourceSpec::Rpicam, 8000)
        );
        assert_eq!(c.mqtt.broker.to_string(), "mqtt://127.0.0.1:1883");
        assert!(c.cpu_temp_path.is_some());
    }

    #[test]
    fn flags_beat_the_file_and_cameras_get_consecutive_ports() {
        let f = file(
            "node_id = 'from-file'\nfps = 10\n[[camera]]\nsource = 'test'\n[[camera]]\nid = 'door'\nsource = 'test'\nfps = 5\n",
        )
        .unwrap();
        let c = NodeConfig::merge(cli(&["--node-id", "flag", "--tcp-port", "9000"]), f).unwrap();
        assert_eq!(c.node_id, "flag");
        let ids: Vec<_> = c
            .cameras
            .iter()
            .map(|c| (c.id.as_str(), c.tcp_port, c.capture.fps))
            .collect();
        assert_eq!(ids, [("cam0", 9000, 10), ("door", 9001, 5)]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = file("node_id = 'x'\nfpss = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("fpss"), "{err:#}");
        let err = file("[[camera]]\nwidht = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("widht"), "{err:#}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = NodeConfig::merge(
            cli(&["--node-id", "n", "--fps", "0"]),
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("camera[0].fps"), "{err}");
        let err = NodeConfig::merge(cli(&["--node-id", "a/b"]), FileConfig::default()).unwrap_err();
        assert!(err.to_string().contains("node_id"), "{err}");
        let err = NodeConfig::merge(
            cli(&["--node-id", "n", "--broker", "http://x"]),
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("broker"), "{err:#}");
        let f = file("[[camera]]\nid='a'\n[[camera]]\nid='a'\n").unwrap();
        let err = NodeConfig::merge(cli(&["--node-id", "n"]), f).unwrap_err();
        assert!(err.to_string().contains("used by two cameras"), "{err}");
    }

    #[test]
    fn users_and_ports_come_from_the_file() {
        let f =
            file("rtsp_port = 9554\nhttp_port = 0\n[[user]]\nname = 'alice'\npassword = 'pw'\n")
                .unwrap();
        let c = NodeConfig::merge(cli(&["--node-id", "n", "--rtsp-port", "7554"]), f).unwrap();
        assert_eq!((c.rtsp_port, c.http_port), (7554, 0));
        assert!(!c.users.is_open());
        let f = file("[[user]]\nname = 'a:b'\npassword = 'pw'\n").unwrap();
        let err = NodeConfig::merge(cli(&["--node-id", "n"]), f).unwrap_err();
        assert!(err.to_string().contains("user[0]"), "{err}");
    }

    #[test]
    fn no_cpu_temp_turns_the_sensor_off() {
        let c = NodeConfig::merge(
            cli(&["--node-id", "n", "--no-cpu-temp"]),
            FileConfig::default(),
        )
        .unwrap();
        assert!(c.cpu_temp_path.is_none());
    }
}
