//! Fan-out benchmark: a 1920x1080 30 fps MJPEG camera (ffmpeg, as in the
//! contract) served by the real camera-node to N viewers on loopback, over
//! the TCP frame protocol (the benchmark's own readers) and over RTSP/TCP
//! (ffmpeg processes as players).
//!
//! For each N it reports frames delivered per viewer, the node's CPU
//! seconds per second of stream, its peak RSS and, for TCP, the latency
//! from the frame's capture stamp (its last byte read by the node) to its
//! last byte read by the viewer: an upper bound of the node's own
//! read-to-written time.

mod relay;
mod rtsp;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Parser;
use shared::frame::FrameDecoder;
use shared::messages::NodeStats;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

#[derive(Debug, Parser)]
#[command(about = "camera-node TCP fan-out benchmark (run with --release)")]
struct Args {
    /// Viewer counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    viewers: Vec<usize>,
    /// Measured seconds per viewer count (after a 3 s warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 1920)]
    width: u32,
    #[arg(long, default_value_t = 1080)]
    height: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// The camera-node binary [default: next to this one].
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Protocols to measure, comma-separated: tcp (frame protocol), rtsp
    /// (ffmpeg over RTSP/TCP), rtsp-udp (ffmpeg over RTSP with RTP on
    /// UDP), relay (real headless viewers, relaying off then on).
    #[arg(long, value_delimiter = ',', default_value = "tcp,rtsp")]
    protocols: Vec<String>,
    /// Relay group size for `relay` (the node's --relay-max-member).
    #[arg(long, default_value_t = 3)]
    relay_max_member: usize,
    /// The camera's codec: mjpeg (ffmpeg -q:v 5) or h264 (x264 as a Pi 4
    /// encoder would be set: no B-frames, a keyframe a second, the node's
    /// default bitrate of width x height x fps / 12).
    #[arg(long, default_value = "mjpeg")]
    codec: String,
}

/// What one viewer saw in the measured window.
#[derive(Debug, Default)]
struct ViewerFigures {
    received: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    latencies_us: Vec<u64>,
    bytes: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let node_bin = match &args.node_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("camera-node"),
    };
    if !node_bin.exists() {
        bail!(
            "{} not found: cargo build --release -p camera-node -p camfleet-bench",
            node_bin.display()
        );
    }
    let clk_tck: f64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output()?.stdout)?
        .trim()
        .parse()
        .context("getconf CLK_TCK")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for protocol in &args.protocols {
        match protocol.as_str() {
            "tcp" => {
                println!(
                    "\nTCP frame protocol\n\n| viewers | camera fps | mean frame (KiB) | frames delivered per viewer (worst viewer, of camera's) \
                     | node CPU (% of one core) | node peak RSS (MiB) | node read-to-written p50 / p99 (ms) \
                     | capture to viewer-read p50 / p99 / max (ms) |"
                );
                println!("|---|---|---|---|---|---|---|---|");
            }
            "rtsp" | "rtsp-udp" => {
                rtsp::require_ffmpeg()?;
                let over = if protocol == "rtsp" { "TCP" } else { "UDP" };
                println!(
                    "\nRTSP over {over}, ffmpeg as players\n\n| clients | camera fps | frames delivered per client (worst client, of camera's) \
                     | node CPU (% of one core) | node peak RSS (MiB) |"
                );
                println!("|---|---|---|---|---|");
            }
            "relay" => {
                println!(
                    "\nReal headless viewers (--no-record), relaying off and on (--relay-max-member {})\n\n| viewers | relaying | node TCP viewers | node CPU (% of one core) \
                     | node uplink (MB/s) | streams on the uplink | viewers with frames |",
                    args.relay_max_member
                );
                println!("|---|---|---|---|---|---|---|");
                for &n in &args.viewers {
                    for on in [false, true] {
                        let mut node = Node::start(&node_bin, &args, n, on)?;
                        let row = relay::measure(&args, &node, n, on, clk_tck);
                        node.stop();
                        println!("{}", row?);
                    }
                }
                continue;
            }
            other => bail!("unknown protocol {other:?}: tcp, rtsp, rtsp-udp or relay"),
        }
        for &n in &args.viewers {
            let mut node = Node::start(&node_bin, &args, n, false)?;
            let row = match protocol.as_str() {
                "tcp" => runtime.block_on(measure(&args, &mut node, n, clk_tck)),
                "rtsp" => rtsp::measure(&args, &node, n, clk_tck, "tcp"),
                _ => rtsp::measure(&args, &node, n, clk_tck, "udp"),
            };
            node.stop();
            println!("{}", row?);
        }
    }
    Ok(())
}

async fn measure(args: &Args, node: &mut Node, n: usize, clk_tck: f64) -> Result<String> {
    let warmup = Duration::from_secs(3);
    let window = Duration::from_secs(args.seconds);
    let start = Instant::now() + warmup;
    let end = start + window;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(("127.0.0.1", node.port)).await?;
        tasks.push(tokio::spawn(read_frames(stream, start, end)));
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu0 = node.cpu_ticks()?;
    let t0 = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let cpu = (node.cpu_ticks()? - cpu0) as f64 / clk_tck / t0.elapsed().as_secs_f64();
    let window_end: DateTime<Utc> = Utc::now();
    let window_start = window_end - chrono::Duration::from_std(window)?;
    let hwm = node.peak_rss_kib()?;
    let mut worst = f64::MAX;
    let mut latencies = Vec::new();
    let (mut camera_fps, mut mean_kib) = (0.0, 0.0);
    for t in tasks {
        let f = t.await??;
        let produced = f.first_seq.map_or(0, |first| f.last_seq - first + 1);
        camera_fps = produced as f64 / window.as_secs_f64();
        mean_kib = f.bytes as f64 / f.received.max(1) as f64 / 1024.0;
        worst = worst.min(f.received as f64 / produced.max(1) as f64);
        latencies.extend(f.latencies_us);
    }
    latencies.sort_unstable();
    // The node's own figures: stats intervals (10 s, ending at `at`) that lie
    // wholly inside the window; the worst of them.
    let mut node_p50: f64 = 0.0;
    let mut node_p99: f64 = 0.0;
    let mut intervals = 0;
    let deadline = Instant::now() + Duration::from_secs(12);
    while let Ok(stats) = node
        .stats
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if stats.at > window_end {
            break;
        }
        if stats.at - chrono::Duration::seconds(10) >= window_start {
            let cam = &stats.cameras[0];
            node_p50 = node_p50.max(cam.send_latency_p50_ms.unwrap_or(f64::NAN));
            node_p99 = node_p99.max(cam.send_latency_p99_ms.unwrap_or(f64::NAN));
            intervals += 1;
        }
    }
    if intervals == 0 {
        bail!("no stats interval fell inside the window; use --seconds 20 or more");
    }
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Ok(format!(
        "| {n} | {camera_fps:.1} | {mean_kib:.0} | {:.1}% | {:.1}% | {:.1} | ≤{node_p50} / ≤{node_p99} | {:.2} / {:.2} / {:.2} |",
        worst * 100.0,
        cpu * 100.0,
        hwm as f64 / 1024.0,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    ))
}

async fn read_frames(stream: TcpStream, start: Instant, end: Instant) -> Result<ViewerFigures> {
    use futures_lite::StreamExt;
    let mut frames = FramedRead::new(stream, FrameDecoder::new());
    let mut fig = ViewerFigures::default();
    while let Some(frame) = tokio::time::timeout_at(end.into(), frames.next())
        .await
        .ok()
        .flatten()
    {
        let frame = frame?;
        let now = Instant::now();
        if now < start {
            continue;
        }
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
        fig.received += 1;
        fig.bytes += frame.data.len() as u64;
        fig.first_seq.get_or_insert(frame.seq);
        fig.last_seq = frame.seq;
        fig.latencies_us
            .push(now_us.saturating_sub(frame.captured_at_us));
    }
    Ok(fig)
}

/// The camera-node under test, with a private mosquitto so it runs as deployed.
pub struct Node {
    broker_port: u16,
    child: Child,
    broker: Child,
    watcher: Child,
    port: u16,
    rtsp_port: u16,
    http_port: u16,
    stats: mpsc::Receiver<NodeStats>,
}

impl Node {
    fn start(bin: &PathBuf, args: &Args, viewers: usize, relay: bool) -> Result<Self> {
        let broker_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let broker = Command::new("mosquitto")
            .args(["-p", &broker_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start mosquitto (apt-get install mosquitto)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", broker_port)).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not start on port {broker_port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let encode = match args.codec.as_str() {
            "h264" => format!(
                "-c:v libx264 -preset ultrafast -tune zerolatency -bf 0 -g {} -b:v {} -x264-params repeat-headers=1 -f h264",
                args.fps,
                u64::from(args.width) * u64::from(args.height) * u64::from(args.fps) / 12
            ),
            _ => "-f mjpeg -q:v 5 -huffman default".to_owned(),
        };
        let source = format!(
            "cmd:exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size={}x{}:rate={} {encode} -",
            args.width, args.height, args.fps
        );
        let broker_url = format!("mqtt://127.0.0.1:{broker_port}");
        // Every port free, loopback advertised, no temperature: as the tests run it.
        let mut child = Command::new(bin)
            .args(testkit::node_base_args(&broker_url, "bench"))
            .args(["--source", &source])
            .args(["--max-viewers", &(viewers + 1).to_string()])
            .args([
                "--relay-max-member",
                &if relay { args.relay_max_member } else { 0 }.to_string(),
            ])
            .env("RUST_LOG", "warn,camera_node=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start camera-node")?;
        let stderr = child.stderr.take().context("node stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let port_after = |line: &str, marker: &str| {
                let rest = line.split(marker).nth(1)?;
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                port.parse::<u16>().ok()
            };
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let (Some(rtsp), Some(http)) = (
                    port_after(&line, "RTSP on rtsp://127.0.0.1:"),
                    port_after(&line, "API on http://127.0.0.1:"),
                ) {
                    let _ = tx.send((rtsp, http));
                }
                if let Some(tcp) = port_after(&line, "on TCP port ") {
                    let _ = tx.send((tcp, 0));
                }
            }
        });
        let mut ports = Vec::new();
        while ports.len() < 2 {
            ports.push(
                rx.recv_timeout(Duration::from_secs(20))
                    .context("the node did not report its ports")?,
            );
        }
        let (rtsp_port, http_port) = *ports.iter().find(|p| p.1 != 0).context("RTSP/HTTP ports")?;
        let port = ports.iter().find(|p| p.1 == 0).context("TCP port")?.0;
        let mut watcher = Command::new("mosquitto_sub")
            .args([
                "-p",
                &broker_port.to_string(),
                "-t",
                "camfleet/node/bench/stats",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start mosquitto_sub (apt-get install mosquitto-clients)")?;
        let out = watcher.stdout.take().context("mosquitto_sub stdout")?;
        let (stats_tx, stats) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(s) = serde_json::from_str::<NodeStats>(&line) {
                    let _ = stats_tx.send(s);
                }
            }
        });
        Ok(Node {
            broker_port,
            child,
            broker,
            watcher,
            port,
            rtsp_port,
            http_port,
            stats,
        })
    }

    /// Frames the camera has produced, from the node's HTTP API.
    fn frames(&self) -> Result<u64> {
        self.status_figure("frames")
    }

    /// A figure of the camera's `stats` in the node's status.
    fn status_figure(&self, name: &str) -> Result<u64> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port))?;
        s.write_all(b"GET /api/v1/status HTTP/1.0\r\nHost: bench\r\n\r\n")?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        let body = reply.split_once("\r\n\r\n").context("HTTP reply")?.1;
        let status: serde_json::Value = serde_json::from_str(body)?;
        status["stats"][0][name]
            .as_u64()
            .with_context(|| format!("stats[0].{name}"))
    }

    fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("stat")?
            .1
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
        Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
    }

    fn peak_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmHWM")
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
        let _ = self.broker.kill();
        let _ = self.broker.wait();
    }
}
