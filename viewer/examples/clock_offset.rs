//! Benchmark: how well the viewer measures a node's clock (docs/benchmarks.md).
//! Starts the real camera-node under libfaketime 90 minutes behind, then
//! measures its offset the way the viewer does, once a second for a
//! minute, and prints the error against the true -5400 s.
//!
//! `cargo build --release -p camera-node && cargo run --release -p viewer --no-default-features --example clock_offset -- [SECONDS]`

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use viewer::link::clock::measure;

const TRUE_OFFSET_US: i64 = -5_400_000_000;

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let exe = std::env::current_exe().expect("own path");
    let node = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("camera-node"))
        .filter(|p| p.exists())
        .expect("camera-node beside the example: cargo build --release -p camera-node");
    let faketime = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("libfaketimeMT.so.1: apt-get install faketime");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(node)
        .args([
            "--node-id",
            "bench-clock",
            "--source",
            "test",
            "--no-cpu-temp",
        ])
        .args(["--broker", "mqtt://127.0.0.1:9", "--bind", "127.0.0.1"])
        .args([
            "--tcp-port",
            "0",
            "--rtsp-port",
            "0",
            "--http-port",
            &port.to_string(),
        ])
        .env("LD_PRELOAD", &faketime)
        .env("FAKETIME", "-90m")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start camera-node");
    let http = format!("127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut errors, mut rtts) = runtime.block_on(async {
        let up = Instant::now();
        while measure(&http).await.is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "the node's HTTP API did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (mut errors, mut rtts) = (Vec::new(), Vec::new());
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        for i in 0..seconds {
            ticker.tick().await;
            let e = measure(&http).await.expect("a measurement");
            errors.push((e.offset_us - TRUE_OFFSET_US).unsigned_abs());
            rtts.push(e.rtt_us);
            if i % 10 == 9 {
                eprintln!(
                    "{} s: error {} µs, round trip {} µs",
                    i + 1,
                    errors[errors.len() - 1],
                    e.rtt_us
                );
            }
        }
        (errors, rtts)
    });
    let _ = child.kill();
    let _ = child.wait();
    errors.sort_unstable();
    rtts.sort_unstable();
    let pct = |v: &[u64], p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
    println!(
        "{} measurements of a node 90 min behind: |error| p50 {} µs, p99 {} µs, max {} µs; best round trip p50 {} µs",
        errors.len(),
        pct(&errors, 50),
        pct(&errors, 99),
        errors[errors.len() - 1],
        pct(&rtts, 50)
    );
}
