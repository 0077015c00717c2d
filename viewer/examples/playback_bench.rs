//! Playback, measured: frame-at-instant latency (cold: the segment's index
//! is built; warm: it is cached) on a session of CAMERAS cameras x MINUTES
//! minutes of 1080p, and export throughput against `ffmpeg -f concat -c
//! copy` over the same segments.
//!
//! The session is written the way the recorder writes it (fMP4, 1 s
//! fragments, one-minute segments), from one real 1080p JPEG (ffmpeg's
//! test source), into a scratch folder that is removed afterwards.
//!
//! cargo run --release -p viewer --example playback_bench -- [CAMERAS] [MINUTES] [FPS]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use shared::fmp4::{fragment, init_segment, ticks, Sample, SampleEntry};
use viewer::playback::{export, find, SegmentCache};
use viewer::record::segmenter::segment_name;

fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let cameras = *args.first().unwrap_or(&4);
    let minutes = *args.get(1).unwrap_or(&10);
    let fps = *args.get(2).unwrap_or(&30);
    let jpeg = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=1",
        ])
        .args(["-frames:v", "1", "-q:v", "8", "-f", "mjpeg", "-"])
        .output()?
        .stdout;
    anyhow::ensure!(!jpeg.is_empty(), "ffmpeg made no JPEG");
    let root = std::env::temp_dir().join(format!("camfleet-playback-bench-{}", std::process::id()));
    let start_us: i64 = 1_795_000_000_000_000;
    let session = segment_name(start_us as u64);
    let written = Instant::now();
    for c in 0..cameras {
        let dir = root.join(&session).join(format!("node{c}")).join("cam0");
        std::fs::create_dir_all(&dir)?;
        for m in 0..minutes {
            let origin = start_us + (m * 60_000_000) as i64;
            let mut file = init_segment(&SampleEntry::Jpeg {
                width: 1920,
                height: 1080,
            })
            .to_vec();
            for s in 0..60u64 {
                let samples: Vec<Sample<'_>> = (0..fps)
                    .map(|_| Sample {
                        duration: ticks(1_000_000 / fps) as u32,
                        key: true,
                        data: &jpeg,
                    })
                    .collect();
                let base = ticks(s * 1_000_000);
                file.extend_from_slice(&fragment(s as u32 + 1, base, Some(0), &samples));
            }
            std::fs::write(
                dir.join(format!("{}.mp4", segment_name(origin as u64))),
                file,
            )?;
        }
    }
    let bytes = cameras * minutes * 60 * fps * jpeg.len() as u64;
    println!(
        "session: {cameras} cameras x {minutes} min of 1920x1080 at {fps} fps, JPEG {} KB, {:.1} GB written in {:.1} s",
        jpeg.len() / 1024,
        bytes as f64 / 1e9,
        written.elapsed().as_secs_f64()
    );

    // Frame at an instant: random instants, each camera.
    let cache = SegmentCache::default();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let span = (minutes * 60_000_000) as i64;
    for label in ["cold (index built)", "warm (index cached)"] {
        let mut times = Vec::new();
        for _ in 0..400 {
            let c = random() % cameras;
            let at = start_us + (random() % span as u64) as i64;
            let dir = root.join(&session).join(format!("node{c}")).join("cam0");
            let t = Instant::now();
            let (path, sample) = find(&cache, &dir, at)?.expect("a frame");
            let frame = read(&path, sample.offset, sample.len)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(frame == jpeg, "the frame read back differs");
        }
        times.sort_by(f64::total_cmp);
        let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        println!(
            "frame at an instant, {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }

    // Export one camera's whole session, against ffmpeg's concat copy.
    let dir = root.join(&session).join("node0").join("cam0");
    let out = root.join("export.mp4");
    let t = Instant::now();
    let samples = export::samples_in(&cache, &dir, i64::MIN, i64::MAX)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let done = export::write_mp4(&samples, &mut file, |_, _| {})?;
    drop(file);
    let ours = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&out)?.len() as f64 / 1e6;
    println!(
        "export of one camera ({} frames, {size:.0} MB): {ours:.2} s, {:.0} MB/s",
        done.frames,
        size / ours
    );
    let list = root.join("list.txt");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let text: String = entries
        .iter()
        .map(|p| format!("file '{}'\n", p.display()))
        .collect();
    std::fs::write(&list, text)?;
    let concat = root.join("concat.mp4");
    let t = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "concat", "-safe", "0", "-i"])
        .arg(&list)
        .args(["-c", "copy"])
        .arg(&concat)
        .status()?;
    let theirs = t.elapsed().as_secs_f64();
    let concat_size = std::fs::metadata(&concat).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "ffmpeg -f concat -c copy of the same segments ({status}): {theirs:.2} s, {:.0} MB/s; ours/ffmpeg time {:.2}",
        concat_size / theirs,
        ours / theirs
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

fn read(path: &Path, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut out = vec![0u8; len as usize];
    file.read_exact(&mut out)?;
    Ok(out)
}
