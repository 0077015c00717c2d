//! What one health sample costs on this machine: `cargo run --release -p
//! camera-node --example health_sample [ROOT] [N]` takes N samples of ROOT
//! (default `/`, 1000) and prints the time per sample; under `strace -c -f`
//! it gives the system calls per sample (docs/benchmarks.md).

use std::path::PathBuf;
use std::time::Instant;

use camera_node::health::HealthSampler;

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().unwrap_or_else(|| "/".into()));
    let n: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let mut sampler = HealthSampler::new(&root, Some(&std::env::temp_dir()));
    let first = sampler.sample(&[]);
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sampler.sample(&[]));
    }
    let each = started.elapsed() / n.max(1);
    println!(
        "{n} samples of {}: {:.1} us each; the first: {}",
        root.display(),
        each.as_secs_f64() * 1e6,
        serde_json::to_string(&first).unwrap_or_default()
    );
}
