//! Fault-injection soak: a recording session while nodes are frozen and
//! killed, a camera process is killed and frozen, and the broker and the
//! viewer are restarted, at random. Afterwards every segment must play, no
//! frame may be on disk twice, and every hole in a camera's timeline must
//! lie within a fault.
//!
//! About 60 s by default; `CAMFLEET_SOAK_SECONDS=600` for a longer run,
//! `CAMFLEET_SOAK_SEED=N` to replay one (the seed is printed first).
//!
//! Two nodes: `pi-a` draws the test pattern (frame number and UTC time
//! burned in, so every picture differs), `pi-b`'s camera is an ffmpeg that
//! re-serves pi-a's pictures (a real camera process to kill and freeze).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
/// A hole longer than this in a 10 fps camera's timeline needs a fault.
const HOLE_US: i64 = 1_000_000;
/// Slack around a fault's window: the last frame before it, the first
/// after recovery.
const SLACK_US: i64 = 2_000_000;

#[derive(Debug)]
struct Fault {
    what: String,
    cameras: Vec<&'static str>,
    from_us: i64,
    to_us: i64,
}

const A: &str = "pi-a/cam0";
const B: &str = "pi-b/cam0";

struct Fleet {
    broker: Broker,
    http_a: u16,
    a: Node,
    b: Node,
    viewer: Viewer,
    recordings: PathBuf,
}

impl Fleet {
    fn start_a(broker: &Broker, http: u16) -> Node {
        let url = broker.url();
        let port = http.to_string();
        Node::start(
            &[
                node_base_args_on(&url, "pi-a", &port),
                words("--source test --width 320 --height 240 --fps 10"),
            ]
            .concat(),
        )
    }

    fn start_b(broker: &Broker, http_a: u16) -> Node {
        let url = broker.url();
        let relay = format!(
            "cmd:ffmpeg -v error -fflags nobuffer -f mpjpeg -i http://127.0.0.1:{http_a}/cameras/cam0/stream.mjpg -c copy -flush_packets 1 -f mjpeg -"
        );
        Node::start(&camera_args(&url, "pi-b", &relay, "320x240"))
    }

    fn start_viewer(broker: &Broker, recordings: &Path) -> Viewer {
        Viewer::start(broker, recordings, &["--segment-seconds", "2"])
    }

    /// Bytes recorded for `camera` so far.
    fn recorded(&self, camera: &str) -> u64 {
        std::fs::read_dir(&self.recordings)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|session| {
                [".mp4", ".part"]
                    .into_iter()
                    .flat_map(move |suffix| files(&session.path().join(camera), suffix))
            })
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Waits until every camera in `cameras` writes again.
    fn wait_recovered(&self, cameras: &[&str], what: &str) {
        let before: Vec<u64> = cameras.iter().map(|c| self.recorded(c)).collect();
        wait_for(&format!("recording again after {what}"), SECS(45), || {
            cameras
                .iter()
                .zip(&before)
                .all(|(c, b)| self.recorded(c) > b + 8192)
                .then_some(())
        });
    }

    /// The pid of pi-b's camera process: the ffmpeg reading pi-a's port
    /// (started through `sh -c`, so found by its command line).
    fn camera_b(&self) -> Option<u32> {
        let pattern = format!("^ffmpeg .*127.0.0.1:{}/cameras", self.http_a);
        let out = Command::new("pgrep").args(["-f", &pattern]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// Applies one fault at random; returns what it was and which cameras it
/// may interrupt.
fn inject(fleet: &mut Fleet, rng: &mut Rng) -> (String, Vec<&'static str>) {
    match rng.below(7) {
        0 => {
            let hold = 2 + rng.below(7);
            signal(fleet.a.pid(), "STOP");
            std::thread::sleep(SECS(hold));
            signal(fleet.a.pid(), "CONT");
            (format!("pi-a frozen {hold} s"), vec![A, B])
        }
        1 => {
            let hold = 2 + rng.below(7);
            signal(fleet.b.pid(), "STOP");
            std::thread::sleep(SECS(hold));
            signal(fleet.b.pid(), "CONT");
            (format!("pi-b frozen {hold} s"), vec![B])
        }
        2 => {
            fleet.a.signal("KILL");
            fleet.a.wait_exit(SECS(10));
            fleet.a = Fleet::start_a(&fleet.broker, fleet.http_a);
            ("pi-a killed and restarted".into(), vec![A, B])
        }
        3 => match fleet.camera_b() {
            Some(pid) if rng.below(2) == 0 => {
                signal(pid, "KILL");
                ("pi-b's camera process killed".into(), vec![B])
            }
            Some(pid) => {
                signal(pid, "STOP");
                std::thread::sleep(SECS(7));
                signal(pid, "CONT");
                ("pi-b's camera process frozen 7 s".into(), vec![B])
            }
            None => ("no camera process to hit on pi-b".into(), vec![B]),
        },
        4 => {
            fleet.broker.stop();
            std::thread::sleep(SECS(1 + rng.below(3)));
            fleet.broker.restart();
            ("broker restarted".into(), vec![A, B])
        }
        5 => {
            let _ = fleet.viewer.child.kill();
            let _ = fleet.viewer.child.wait();
            fleet.viewer = Fleet::start_viewer(&fleet.broker, &fleet.recordings);
            ("viewer killed and restarted".into(), vec![A, B])
        }
        _ => {
            fleet.b.signal("KILL");
            fleet.b.wait_exit(SECS(10));
            fleet.b = Fleet::start_b(&fleet.broker, fleet.http_a);
            ("pi-b killed and restarted".into(), vec![B])
        }
    }
}

/// A closed segment decodes, every frame, without a single error (ffprobe
/// decodes each frame; `ffmpeg -f null` would also judge the timestamps
/// against a guessed frame rate, which the burst of frames a node reads
/// after a freeze does not keep).
fn assert_plays(segment: &Path) {
    let out = ffprobe_video(segment, &["-show_entries", "frame=pts", "-of", "csv=p=0"]);
    let frames = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        out.status.success() && out.stderr.is_empty() && frames > 0,
        "{} does not play cleanly ({frames} frames decoded): {}",
        segment.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        frames,
        samples(segment).len(),
        "{}: a sample that does not decode",
        segment.display()
    );
}

#[test]
fn a_session_survives_random_faults_with_every_frame_once_and_every_hole_explained() {
    require("ffmpeg", "ffmpeg");
    require("pgrep", "procps");
    let seconds: u64 = std::env::var("CAMFLEET_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("CAMFLEET_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_us() | 1);
    eprintln!("soak: {seconds} s, seed {seed} (replay with CAMFLEET_SOAK_SEED={seed})");
    let mut rng = Rng(seed);

    let broker = Broker::start();
    let http_a = free_port();
    let a = Fleet::start_a(&broker, http_a);
    let b = Fleet::start_b(&broker, http_a);
    let recordings = TempDir::new("soak");
    let viewer = Fleet::start_viewer(&broker, &recordings.0);
    let mut fleet = Fleet {
        broker,
        http_a,
        a,
        b,
        viewer,
        recordings: recordings.0.clone(),
    };
    fleet.broker.publish_qos1("command/rec", "start");
    fleet.wait_recovered(&[A, B], "the start");

    let mut faults = Vec::new();
    let deadline = Instant::now() + SECS(seconds);
    while Instant::now() < deadline {
        let from_us = now_us() as i64;
        let (what, cameras) = inject(&mut fleet, &mut rng);
        fleet.wait_recovered(&cameras, &what);
        let fault = Fault {
            what,
            cameras,
            from_us,
            to_us: now_us() as i64,
        };
        eprintln!(
            "soak: {} (recovered in {:.1} s)",
            fault.what,
            (fault.to_us - fault.from_us) as f64 / 1e6
        );
        faults.push(fault);
    }
    // The last fault may have been a broker restart: frames flow again at
    // once (TCP), the viewer's MQTT session comes back a moment later. Its
    // `online` says it hears commands again.
    wait_online(&fleet.broker);
    fleet.broker.publish_qos1("command/rec", "stop");
    wait_state(&fleet.broker, "the viewer idle", |s| s.state == "idle");
    fleet.viewer.stop();

    // Every closed segment plays; open ones left by a killed viewer are
    // readable up to their last fragment.
    let closed = files(&fleet.recordings, ".mp4");
    for seg in &closed {
        assert_plays(seg);
    }
    let open = files(&fleet.recordings, ".part");
    eprintln!(
        "soak: {} closed segments play, {} left open by viewer kills",
        closed.len(),
        open.len()
    );

    for camera in [A, B] {
        let mut segments: Vec<PathBuf> = closed
            .iter()
            .chain(&open)
            .filter(|p| p.to_string_lossy().contains(camera))
            .cloned()
            .collect();
        segments.sort_by_key(|p| p.file_name().map(|n| n.to_owned()));
        let frames: Vec<(i64, String)> = segments.iter().flat_map(|s| samples(s)).collect();
        assert!(frames.len() > 50, "{camera}: only {} frames", frames.len());
        let mut seen: HashMap<&str, i64> = HashMap::new();
        for (t, hash) in &frames {
            if let Some(earlier) = seen.insert(hash, *t) {
                panic!("{camera}: a frame recorded twice, at {earlier} and {t} µs (faults: {faults:#?})");
            }
        }
        let mut holes = 0;
        for pair in frames.windows(2) {
            let (a, b) = (pair[0].0, pair[1].0);
            assert!(b > a, "{camera}: frames out of order ({a} then {b} µs)");
            if b - a <= HOLE_US {
                continue;
            }
            holes += 1;
            let cause = faults.iter().find(|f| {
                f.cameras.contains(&camera) && a >= f.from_us - SLACK_US && b <= f.to_us + SLACK_US
            });
            match cause {
                Some(f) => eprintln!(
                    "soak: {camera}: {:.1} s hole explained by \"{}\"",
                    (b - a) as f64 / 1e6,
                    f.what
                ),
                None => panic!(
                    "{camera}: a {:.1} s hole from {a} to {b} µs no fault explains (seed {seed}); faults: {faults:#?}",
                    (b - a) as f64 / 1e6
                ),
            }
        }
        eprintln!(
            "soak: {camera}: {} frames, each once, in order, {holes} holes all within faults",
            frames.len()
        );
    }
    assert!(!faults.is_empty(), "no fault was injected");
}
