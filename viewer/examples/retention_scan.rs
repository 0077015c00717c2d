//! Benchmark: how long one retention pass takes over a folder of many
//! segments (docs/benchmarks.md). Makes `--segments N` empty segment files
//! in a scratch folder (10 cameras, 1-minute names), then times a pass that
//! deletes nothing and one that deletes a tenth.
//!
//! `cargo run --release -p viewer --example retention_scan -- 100000`

use std::time::Instant;

use chrono::{Duration, Utc};
use viewer::record::retention::{Freed, Retention};

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("camfleet-retention-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = Utc::now() - Duration::minutes(count as i64 / 10 + 10);
    let made = Instant::now();
    let session = dir.join(start.format("%Y%m%dT%H%M%SZ").to_string());
    for i in 0..count {
        let camera = session.join(format!("pi-{}", i % 10)).join("cam0");
        if i < 10 {
            std::fs::create_dir_all(&camera).unwrap();
        }
        let at = start + Duration::minutes((i / 10) as i64);
        let name = at.format("%Y%m%dT%H%M%SZ.mp4").to_string();
        std::fs::write(camera.join(name), [0u8; 100]).unwrap();
    }
    println!(
        "made {count} segments in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let freed = Freed::default();
    let nothing = Retention {
        max_size: Some(u64::MAX),
        ..Retention::default()
    };
    let t = Instant::now();
    nothing.enforce(&dir, Utc::now(), &freed);
    println!(
        "a pass that deletes nothing: {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let tenth = Retention {
        max_size: Some((count as u64 * 100) * 9 / 10),
        ..Retention::default()
    };
    let t = Instant::now();
    tenth.enforce(&dir, Utc::now(), &freed);
    println!(
        "a pass that deletes a tenth ({} segments): {:.3} s",
        freed.segments.load(std::sync::atomic::Ordering::Relaxed),
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
