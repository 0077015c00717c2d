//! Relaying measured with real viewers: N headless viewer processes
//! (`--no-record`) watch the camera, with relaying off (each takes it from
//! the node) and on (the node plans groups, the viewers pass it on). The
//! node's uplink is read from the kernel (`ss`: bytes acknowledged on the
//! node's frame port), so it counts what really left the node.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{Args, Node};

/// Viewers connect, get a plan and settle before the window opens.
const SETTLE: Duration = Duration::from_secs(10);

struct Viewers(Vec<Child>);

impl Drop for Viewers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Established connections on the node's frame port and the bytes they
/// have had acknowledged.
fn uplink(port: u16) -> Result<(usize, u64)> {
    let out = Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            "sport",
            "=",
            &format!(":{port}"),
        ])
        .output()
        .context("run ss (apt-get install iproute2)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut connections = 0;
    let mut bytes = 0;
    for word in text.split_whitespace() {
        if let Some(v) = word.strip_prefix("bytes_acked:") {
            bytes += v.parse::<u64>().unwrap_or(0);
            connections += 1;
        }
    }
    Ok((connections, bytes))
}

pub fn measure(args: &Args, node: &Node, n: usize, relay: bool, clk_tck: f64) -> Result<String> {
    let bin = std::env::current_exe()?.with_file_name("viewer");
    if !bin.exists() {
        bail!(
            "{} not found: cargo build --release -p viewer --no-default-features -p camera-node -p camfleet-bench",
            bin.display()
        );
    }
    let scratch = std::env::temp_dir().join(format!("camfleet-relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let broker = format!("mqtt://127.0.0.1:{}", node.broker_port);
    let mut viewers = Viewers(Vec::new());
    for i in 0..n {
        let mut cmd = Command::new(&bin);
        cmd.args(["--broker", &broker, "--viewer-id", &format!("bench-{i}")])
            .args(["--headless", "--no-record", "--dashboard", "off"])
            .arg("--recordings")
            .arg(&scratch)
            .env("RUST_LOG", "warn")
            .env_remove("CAMFLEET_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if relay {
            cmd.args(["--relay", "127.0.0.1"]);
        }
        viewers.0.push(cmd.spawn().context("start a viewer")?);
    }
    std::thread::sleep(SETTLE);
    let (bytes0, cpu0, t0) = (
        node.status_figure("bytes")?,
        node.cpu_ticks()?,
        Instant::now(),
    );
    let (_, up0) = uplink(node.port)?;
    std::thread::sleep(Duration::from_secs(args.seconds));
    let (connections, up1) = uplink(node.port)?;
    let (bytes1, cpu1) = (node.status_figure("bytes")?, node.cpu_ticks()?);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu1 - cpu0) as f64 / clk_tck / secs;
    let camera_rate = (bytes1 - bytes0) as f64 / secs;
    let up_rate = up1.saturating_sub(up0) as f64 / secs;
    // Every viewer's retained state, for the ones receiving frames.
    let states = Command::new("mosquitto_sub")
        .args([
            "-p",
            &node.broker_port.to_string(),
            "-t",
            "camfleet/viewer/+/recording",
        ])
        .args(["-C", &n.to_string(), "-W", "5"])
        .output()
        .context("run mosquitto_sub")?;
    let receiving = String::from_utf8_lossy(&states.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|s| s["links"][0]["fps"].as_f64().is_some_and(|f| f > 0.0))
        .count();
    drop(viewers);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(format!(
        "| {n} | {} | {connections} | {:.0} | {:.1} | {:.1} | {receiving} of {n} |",
        if relay { "on" } else { "off" },
        cpu * 100.0,
        up_rate / 1e6,
        if camera_rate > 0.0 {
            up_rate / camera_rate
        } else {
            0.0
        },
    ))
}
