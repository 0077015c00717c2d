//! The RTSP half of the benchmark: N ffmpeg processes play the camera over
//! RTSP, interleaved on TCP or as RTP over UDP (stream copy, so they spend
//! little CPU of their own) and report their frame counts through
//! `-progress`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{Args, Node};

pub fn require_ffmpeg() -> Result<()> {
    match Command::new("ffmpeg").arg("-version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!("ffmpeg is needed as the RTSP player: apt-get install ffmpeg"),
    }
}

struct Player {
    child: Child,
    frames: Arc<AtomicU64>,
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `transport` is ffmpeg's `-rtsp_transport`: `tcp` or `udp`.
fn play(url: &str, transport: &str) -> Result<Player> {
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostats"])
        .args(["-rtsp_transport", transport, "-i", url])
        .args(["-map", "0:v", "-c", "copy", "-f", "null", "-"])
        .args(["-progress", "pipe:1", "-stats_period", "0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start ffmpeg")?;
    let out = child.stdout.take().context("ffmpeg stdout")?;
    let frames = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&frames);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(n) = line
                .strip_prefix("frame=")
                .and_then(|n| n.trim().parse().ok())
            {
                seen.store(n, Ordering::Relaxed);
            }
        }
    });
    Ok(Player { child, frames })
}

pub fn measure(
    args: &Args,
    node: &Node,
    n: usize,
    clk_tck: f64,
    transport: &str,
) -> Result<String> {
    let url = format!("rtsp://127.0.0.1:{}/cam0", node.rtsp_port);
    let players = (0..n)
        .map(|_| play(&url, transport))
        .collect::<Result<Vec<_>>>()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while players
        .iter()
        .any(|p| p.frames.load(Ordering::Relaxed) == 0)
    {
        if Instant::now() > deadline {
            bail!("not every ffmpeg player got frames within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3)); // warm-up, as for TCP
    let window = Duration::from_secs(args.seconds);
    let before: Vec<u64> = players
        .iter()
        .map(|p| p.frames.load(Ordering::Relaxed))
        .collect();
    let (frames0, cpu0, t0) = (node.frames()?, node.cpu_ticks()?, Instant::now());
    std::thread::sleep(window);
    let after: Vec<u64> = players
        .iter()
        .map(|p| p.frames.load(Ordering::Relaxed))
        .collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let (frames1, cpu1) = (node.frames()?, node.cpu_ticks()?);
    let hwm = node.peak_rss_kib()?;
    drop(players);
    let produced = (frames1 - frames0).max(1) as f64;
    let worst = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / produced)
        .fold(f64::MAX, f64::min);
    let cpu = (cpu1 - cpu0) as f64 / clk_tck / elapsed;
    Ok(format!(
        "| {n} | {:.1} | {:.1}% | {:.1}% | {:.1} |",
        produced / elapsed,
        worst * 100.0,
        cpu * 100.0,
        hwm as f64 / 1024.0
    ))
}
