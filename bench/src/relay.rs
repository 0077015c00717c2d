//! Relaying measured with real viewers: N headless viewer processes
//! (`--no-record`) watch the camera, with relaying off (each takes it from
//! the node) and on (the node plans groups, the viewers pass it on). The
//! node's uplink is read from the kernel (`ss`: bytes acknowledged on the
//! node's frame port), so it counts what really left the node.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use shared::relay::{RelayAnnounce, RelayPlan};

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
    let ages = if relay {
        ages_by_hops(node)?
    } else {
        String::new()
    };
    drop(viewers);
    let _ = std::fs::remove_dir_all(&scratch);
    let streams = if camera_rate > 0.0 {
        up_rate / camera_rate
    } else {
        0.0
    };
    Ok(format!(
        "| {n} | {} | {connections} | {:.0} | {:.1} | {streams:.1} | {receiving} of {n} |{ages}",
        if relay { "on" } else { "off" },
        cpu * 100.0,
        up_rate / 1e6,
    ))
}

/// A retained message, read with mosquitto_sub.
fn retained(port: u16, topic: &str) -> Result<String> {
    let out = Command::new("mosquitto_sub")
        .args(["-p", &port.to_string(), "-t", topic, "-C", "1", "-W", "5"])
        .output()
        .context("run mosquitto_sub")?;
    let text = String::from_utf8(out.stdout)?;
    if text.trim().is_empty() {
        bail!("nothing retained on {topic}");
    }
    Ok(text.trim().to_owned())
}

/// Capture-to-receive age of the frames a client gets from the node
/// itself (1 hop) and from a viewer at each depth of the plan (depth + 1
/// hops), measured together for 5 s: a table in Markdown.
fn ages_by_hops(node: &Node) -> Result<String> {
    let plan: RelayPlan = serde_json::from_str(&retained(
        node.broker_port,
        "camfleet/node/bench/relay/cam0/plan",
    )?)?;
    let mut targets = vec![(1, format!("127.0.0.1:{}", node.port))];
    let deepest = plan.viewers.values().map(|e| e.depth).max().unwrap_or(0);
    for depth in 1..=deepest {
        let Some(id) = plan
            .viewers
            .iter()
            .find(|(_, e)| e.depth == depth)
            .map(|(id, _)| id)
        else {
            continue;
        };
        let topic = format!("camfleet/viewer/{id}/relay");
        let a: RelayAnnounce = serde_json::from_str(&retained(node.broker_port, &topic)?)?;
        if let Some(addr) = a.cameras.first().and_then(|c| c.addr.clone()) {
            targets.push((depth + 1, addr));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(async {
        let start = Instant::now() + Duration::from_secs(1);
        let end = start + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for (hops, addr) in &targets {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            tasks.push((*hops, tokio::spawn(crate::read_frames(stream, start, end))));
        }
        let mut out = Vec::new();
        for (hops, task) in tasks {
            out.push((hops, task.await??));
        }
        anyhow::Ok(out)
    })?;
    let mut table = String::from(
        "\n\n| hops from the node | frames | capture to receive p50 (ms) | p99 (ms) |\n|---|---|---|---|",
    );
    for (hops, mut f) in figures {
        f.latencies_us.sort_unstable();
        let n = f.latencies_us.len();
        let pct = |p: usize| f.latencies_us.get(n * p / 100).copied().unwrap_or(0) as f64 / 1000.0;
        table.push_str(&format!(
            "\n| {hops} | {} | {:.1} | {:.1} |",
            f.received,
            pct(50),
            pct(99)
        ));
    }
    Ok(table)
}
