//! The Pi's own health, sampled with the stats (docs/mqtt.md, "Health"):
//! the firmware's throttling flags, SoC temperature, CPU and memory, the
//! Wi-Fi link, free space, and the cameras' dropped frames and restarts.
//!
//! Everything is read from procfs and sysfs under a root (`/` on a node;
//! a directory a test fills, or a container's view of the host), so a
//! sample costs a handful of small reads. A file that is missing leaves
//! its figure out. `vcgencmd` and `iw` are asked only on the real root and
//! only when sysfs lacks what they tell.
//!
//! A figure past its line ([`WARN_TEMP_C`], [`WARN_SIGNAL_DBM`],
//! [`WARN_FREE_PERCENT`], throttling, under-voltage) becomes a warning: a
//! WARN log line when it appears, an INFO line when it clears, and a
//! sentence in the sample's `warnings`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use shared::messages::{CameraStats, NodeHealth, WifiHealth};

/// Where the latest sample is kept for `/metrics`.
pub type Latest = std::sync::Mutex<Option<NodeHealth>>;

/// SoC temperature over which a Pi is warned about (it throttles at 80-85 C).
pub const WARN_TEMP_C: f64 = 80.0;
/// Wi-Fi signal under which frames start to drop at 1080p.
pub const WARN_SIGNAL_DBM: f64 = -75.0;
/// Free space, in percent of the file system, under which to warn.
pub const WARN_FREE_PERCENT: f64 = 10.0;

/// The firmware's throttling flags on Pi OS kernels.
const THROTTLED: &str = "sys/devices/platform/soc/soc:firmware/get_throttled";
const THERMAL: &str = "sys/class/thermal/thermal_zone0/temp";
const STAT: &str = "proc/stat";
const LOADAVG: &str = "proc/loadavg";
const MEMINFO: &str = "proc/meminfo";
const WIRELESS: &str = "proc/net/wireless";
const LOGS: &str = "var/log";

/// `get_throttled`'s bits: now (0-3) and since boot (16-19).
const UNDER_VOLTAGE: u32 = 1 << 0;
const FREQ_CAPPED: u32 = 1 << 1;
const THROTTLED_NOW: u32 = 1 << 2;
const SINCE_BOOT: u32 = 16;

/// The sampler as the MQTT loop runs it: each sample on a blocking thread
/// (`vcgencmd` and `iw` are programs), the sampler handed there and back.
pub struct Health {
    sampler: Option<HealthSampler>,
    root: PathBuf,
    state_dir: Option<PathBuf>,
}

impl Health {
    pub fn new(root: &Path, state_dir: Option<&Path>) -> Self {
        Health {
            sampler: Some(HealthSampler::new(root, state_dir)),
            root: root.to_owned(),
            state_dir: state_dir.map(Path::to_owned),
        }
    }

    /// One sample; `None` when the sampling thread failed (a new sampler
    /// takes over next time).
    pub async fn sample(&mut self, cameras: &[CameraStats]) -> Option<NodeHealth> {
        let mut sampler = self
            .sampler
            .take()
            .unwrap_or_else(|| HealthSampler::new(&self.root, self.state_dir.as_deref()));
        let cameras = cameras.to_vec();
        match tokio::task::spawn_blocking(move || {
            let machine = sampler.sample(&cameras);
            (sampler, machine)
        })
        .await
        {
            Ok((sampler, machine)) => {
                self.sampler = Some(sampler);
                Some(machine)
            }
            Err(e) => {
                tracing::error!("the health sample failed: {e}");
                None
            }
        }
    }
}

pub struct HealthSampler {
    root: PathBuf,
    state_dir: Option<PathBuf>,
    /// Busy and total jiffies at the last sample, for the CPU share.
    last_cpu: Option<(u64, u64)>,
    /// Warnings in force, by what they are about, as last logged.
    active: BTreeMap<&'static str, String>,
    /// `vcgencmd` and `iw`, looked up once (on the real root only).
    vcgencmd: Option<PathBuf>,
    iw: Option<PathBuf>,
}

impl HealthSampler {
    pub fn new(root: &Path, state_dir: Option<&Path>) -> Self {
        let real = root == Path::new("/");
        let tool = |name: &str| real.then(|| crate::source::find_in_path(name)).flatten();
        HealthSampler {
            root: root.to_owned(),
            state_dir: state_dir.map(Path::to_owned),
            last_cpu: None,
            active: BTreeMap::new(),
            vcgencmd: tool("vcgencmd"),
            iw: tool("iw"),
        }
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(file)).ok()
    }

    /// One sample; the cameras' figures give the dropped frames and restarts.
    pub fn sample(&mut self, cameras: &[CameraStats]) -> NodeHealth {
        let mut h = NodeHealth {
            frames_dropped: cameras.iter().map(|c| c.frames_dropped).sum(),
            camera_restarts: cameras.iter().map(|c| c.camera_restarts).sum(),
            ..NodeHealth::default()
        };
        if let Some(flags) = self.throttled_flags() {
            let on = |bit: u32| Some(flags & bit != 0);
            h.under_voltage = on(UNDER_VOLTAGE);
            h.freq_capped = on(FREQ_CAPPED);
            h.throttled = on(THROTTLED_NOW);
            h.under_voltage_since_boot = on(UNDER_VOLTAGE << SINCE_BOOT);
            h.freq_capped_since_boot = on(FREQ_CAPPED << SINCE_BOOT);
            h.throttled_since_boot = on(THROTTLED_NOW << SINCE_BOOT);
        }
        h.soc_temp_c = self
            .read(THERMAL)
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map(|milli| milli as f64 / 1000.0);
        h.cpu_percent = self.cpu_percent();
        h.load_1m = self
            .read(LOADAVG)
            .and_then(|t| t.split_whitespace().next()?.parse().ok());
        if let Some(mem) = self.read(MEMINFO) {
            h.mem_total_mb = meminfo_kib(&mem, "MemTotal:").map(|k| k / 1024);
            h.mem_available_mb = meminfo_kib(&mem, "MemAvailable:").map(|k| k / 1024);
        }
        h.wifi = self.read(WIRELESS).and_then(|t| parse_wireless(&t));
        if let (Some(wifi), Some(iw)) = (h.wifi.as_mut(), &self.iw) {
            wifi.bitrate_mbit_s = iw_bitrate(iw, &wifi.interface);
        }
        h.state_free_percent = self.state_dir.as_deref().and_then(free_percent);
        h.log_free_percent = free_percent(&self.root.join(LOGS));
        h.warnings = self.warnings(&h);
        h
    }

    /// sysfs's flags, else `vcgencmd get_throttled` on the real root.
    fn throttled_flags(&self) -> Option<u32> {
        if let Some(text) = self.read(THROTTLED) {
            return parse_hex(&text);
        }
        let out = Command::new(self.vcgencmd.as_ref()?)
            .arg("get_throttled")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_hex(text.trim().strip_prefix("throttled=")?)
    }

    fn cpu_percent(&mut self) -> Option<f64> {
        let text = self.read(STAT)?;
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let jiffies: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        let total: u64 = jiffies.iter().sum();
        // idle and iowait are the 4th and 5th columns.
        let idle = jiffies.get(3).copied().unwrap_or(0) + jiffies.get(4).copied().unwrap_or(0);
        let busy = total.saturating_sub(idle);
        let last = self.last_cpu.replace((busy, total));
        let (busy0, total0) = last?;
        let spent = total.checked_sub(total0).filter(|t| *t > 0)?;
        let share = busy.saturating_sub(busy0) as f64 * 100.0 / spent as f64;
        Some((share * 10.0).round() / 10.0)
    }

    /// The sample's warnings; each new one is logged at WARN, each gone one
    /// at INFO.
    fn warnings(&mut self, h: &NodeHealth) -> Vec<String> {
        let mut now: BTreeMap<&'static str, String> = BTreeMap::new();
        if h.under_voltage == Some(true) {
            now.insert(
                "under_voltage",
                "under-voltage now: the power supply sags (docs/pi-setup.md)".into(),
            );
        }
        if h.throttled == Some(true) {
            now.insert(
                "throttled",
                "throttled now: the firmware slows the CPU (heat or power)".into(),
            );
        }
        if let Some(t) = h.soc_temp_c.filter(|t| *t > WARN_TEMP_C) {
            now.insert(
                "soc_temp_c",
                format!("SoC temperature {t:.1} C is over {WARN_TEMP_C} C"),
            );
        }
        if let Some((wifi, dbm)) = h
            .wifi
            .as_ref()
            .and_then(|w| Some((w, w.signal_dbm?)))
            .filter(|(_, d)| *d < WARN_SIGNAL_DBM)
        {
            now.insert(
                "wifi_signal_dbm",
                format!(
                    "Wi-Fi signal {dbm} dBm on {} is below {WARN_SIGNAL_DBM} dBm",
                    wifi.interface
                ),
            );
        }
        for (key, what, free) in [
            (
                "state_free_percent",
                "the state directory's",
                h.state_free_percent,
            ),
            ("log_free_percent", "the logs'", h.log_free_percent),
        ] {
            if let Some(free) = free.filter(|f| *f < WARN_FREE_PERCENT) {
                now.insert(
                    key,
                    format!(
                        "free space of {what} file system {free:.1}% is under {WARN_FREE_PERCENT}%"
                    ),
                );
            }
        }
        for (key, text) in &now {
            if !self.active.contains_key(key) {
                tracing::warn!(figure = key, "{text}");
            }
        }
        for key in self.active.keys().filter(|k| !now.contains_key(*k)) {
            tracing::info!(figure = key, "{key} is back within its line");
        }
        let sentences = now.values().cloned().collect();
        self.active = now;
        sentences
    }
}

fn parse_hex(text: &str) -> Option<u32> {
    let text = text.trim();
    let digits = text.strip_prefix("0x").unwrap_or(text);
    u32::from_str_radix(digits, 16).ok()
}

fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The first interface of `/proc/net/wireless`:
///
/// ```text
/// Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
///  face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
///  wlan0: 0000   70.  -40.  -256        0      0      0      3      0        0
/// ```
fn parse_wireless(text: &str) -> Option<WifiHealth> {
    let line = text.lines().skip(2).find(|l| l.contains(':'))?;
    let (name, rest) = line.split_once(':')?;
    let numbers: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| -> Option<f64> {
        numbers
            .get(i)?
            .trim_end_matches('.')
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    };
    Some(WifiHealth {
        interface: name.trim().to_owned(),
        link_quality: number(1),
        // Some drivers give no level (0 or -256 dBm is "unknown").
        signal_dbm: number(2).filter(|d| *d < 0.0 && *d > -255.0),
        bitrate_mbit_s: None,
        retries: number(7).map(|r| r as u64),
    })
}

/// `iw dev <if> link`'s `tx bitrate: 72.2 MBit/s`, where iw is installed.
fn iw_bitrate(iw: &Path, interface: &str) -> Option<f64> {
    let out = Command::new(iw)
        .args(["dev", interface, "link"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tx bitrate:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Free space of the file system holding `path`, in percent of its size
/// (what an unprivileged process can use).
fn free_percent(path: &Path) -> Option<f64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let blocks = stat.blocks() as f64;
    (blocks > 0.0).then(|| {
        let free = stat.blocks_available() as f64 * 100.0 / blocks;
        (free * 10.0).round() / 10.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireless_and_flags_are_read() {
        let text = "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n \
                    face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n  \
                    wlan0: 0000   45.  -65.  -256        0      0      0     12      0        0\n";
        let wifi = parse_wireless(text).unwrap();
        assert_eq!(wifi.interface, "wlan0");
        assert_eq!(wifi.signal_dbm, Some(-65.0));
        assert_eq!(wifi.link_quality, Some(45.0));
        assert_eq!(wifi.retries, Some(12));
        assert!(parse_wireless("Inter-|\n face |\n").is_none());
        assert_eq!(parse_hex("0x50005\n"), Some(0x50005));
        assert_eq!(parse_hex("50000"), Some(0x50000));
        assert_eq!(parse_hex("junk"), None);
        assert_eq!(
            meminfo_kib(
                "MemTotal:  3884132 kB\nMemAvailable: 2000000 kB\n",
                "MemAvailable:"
            ),
            Some(2_000_000)
        );
    }

    #[test]
    fn an_empty_root_gives_no_figures_and_no_warnings() {
        let root = std::env::temp_dir().join(format!("camfleet-health-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let mut sampler = HealthSampler::new(&root, None);
        let h = sampler.sample(&[]);
        assert_eq!(h, NodeHealth::default());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn free_space_under_its_line_the_cameras_figures_and_iws_bit_rate() {
        let root = std::env::temp_dir().join(format!("camfleet-health-low-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let mut sampler = HealthSampler::new(&root, None);
        let low = NodeHealth {
            state_free_percent: Some(5.0),
            log_free_percent: Some(50.0),
            ..NodeHealth::default()
        };
        let warnings = sampler.warnings(&low);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("state directory's file system 5.0% is under 10%"),
            "{warnings:?}"
        );
        assert!(sampler.warnings(&NodeHealth::default()).is_empty());

        let camera = |id: &str, dropped, restarts| CameraStats {
            id: id.into(),
            fps: 30.0,
            viewers: 1,
            frames: 100,
            frames_dropped: dropped,
            camera_restarts: restarts,
            last_frame_age_s: None,
            send_latency_p50_ms: None,
            send_latency_p99_ms: None,
        };
        let h = sampler.sample(&[camera("cam0", 3, 1), camera("cam1", 2, 1)]);
        assert_eq!((h.frames_dropped, h.camera_restarts), (5, 2));

        let iw = root.join("iw");
        std::fs::write(
            &iw,
            "#!/bin/sh\necho \"Connected to 11:22:33:44:55:66 (on $2)\"\necho \"\ttx bitrate: 72.2 MBit/s MCS 7 short GI\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&iw, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(iw_bitrate(&iw, "wlan0"), Some(72.2));
        assert_eq!(iw_bitrate(&root.join("no-iw"), "wlan0"), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
