//! One timeline across nodes with wrong clocks: a node 90 minutes behind
//! (run under `faketime`) records beside a correct one, the same frames
//! land at the same instants; a node whose clock steps 10 s mid-session
//! keeps every frame once and in order. Real mosquitto, nodes, ffmpeg,
//! viewer; the files checked with ffprobe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// libfaketime's multi-threaded library (the node is multi-threaded).
fn libfaketime() -> PathBuf {
    require("faketime", "faketime");
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketimeMT.so.1 not found in {candidates:?}: apt-get install faketime")
        })
}

/// The environment that runs a node under libfaketime: `spec` as FAKETIME,
/// or read from `file` (re-read every second) when given.
fn faked(spec: &str, file: Option<&Path>) -> Vec<(String, String)> {
    let mut env = vec![
        ("LD_PRELOAD".to_owned(), libfaketime().display().to_string()),
        // Timers stay on the real monotonic clock; only the wall clock is off.
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
    ];
    match file {
        Some(f) => {
            env.push(("FAKETIME_TIMESTAMP_FILE".into(), f.display().to_string()));
            env.push(("FAKETIME_CACHE_DURATION".into(), "1".into()));
        }
        None => env.push(("FAKETIME".into(), spec.into())),
    }
    env
}

fn start_node(broker: &Broker, id: &str, source: &str, env: &[(String, String)]) -> Node {
    let url = broker.url();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Node::start_with_env(&camera_args(&url, id, source, "320x240"), &env)
}

/// The node's own capture time kept in each fragment (`prft`), minus the
/// fragment's place on the timeline: how far the node's clock was off.
fn prft_offsets_us(segment: &Path) -> Vec<i64> {
    let data = std::fs::read(segment).unwrap();
    let origin = origin_us(segment);
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if &data[at + 4..at + 8] == b"prft" {
            let ntp = u64::from_be_bytes(data[at + 16..at + 24].try_into().unwrap());
            let media = u64::from_be_bytes(data[at + 24..at + 32].try_into().unwrap());
            let node_us = ((ntp >> 32) - 2_208_988_800) as i64 * 1_000_000
                + (((ntp & 0xFFFF_FFFF) * 1_000_000) >> 32) as i64;
            out.push(node_us - (origin + (media * 1_000_000 / 90_000) as i64));
        }
        assert!(size >= 8, "box of size {size} at {at}");
        at += size;
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir, ".mp4")
}

fn names(segs: &[PathBuf]) -> Vec<String> {
    segs.iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn record_for(broker: &Broker, recordings: &Path, closed: usize, per_camera: &[&str]) {
    wait_online(broker);
    broker.publish("command/rec", "start");
    wait_for("segments closed by every camera", SECS(60), || {
        per_camera
            .iter()
            .all(|cam| segments(&session_dir(recordings).join(cam)).len() >= closed)
            .then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_state(broker, "the viewer idle", |s| s.state == "idle");
}

fn session_dir(recordings: &Path) -> PathBuf {
    std::fs::read_dir(recordings)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap_or_else(|| recordings.join("no-session-yet"))
}

#[test]
fn a_node_90_minutes_behind_records_on_the_viewers_timeline() {
    let broker = Broker::start();
    let right = test_node(&broker, "pi-right", "320x240");
    let info = broker.node_info("pi-right");
    let mjpeg = info.cameras[0].http.clone().expect("the node's MJPEG URL");
    assert!(
        info.clock_synchronized.is_some(),
        "NodeInfo says whether the kernel has the clock synchronised"
    );
    // The node behind re-serves the right node's pictures, byte for byte:
    // the same frame is in both recordings, so their times can be compared.
    let relay = format!(
        "cmd:ffmpeg -v error -fflags nobuffer -f mpjpeg -i {mjpeg} -c copy -flush_packets 1 -f mjpeg -"
    );
    let behind = start_node(&broker, "pi-behind", &relay, &faked("-90m", None));
    broker.wait_status("pi-behind", "online");
    let recordings = TempDir::new("timeline");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    viewer.wait_log("pi-behind", SECS(20));

    record_for(
        &broker,
        &recordings.0,
        3,
        &["pi-right/cam0", "pi-behind/cam0"],
    );
    let session = session_dir(&recordings.0);
    let right_segs = segments(&session.join("pi-right/cam0"));
    let behind_segs = segments(&session.join("pi-behind/cam0"));

    // Segment names: the same cuts. The first is named for its camera's
    // first frame (to the second), so it may be a second apart.
    let (r, b) = (names(&right_segs), names(&behind_segs));
    assert_eq!(r[1..], b[1..], "segment names differ: {r:?} vs {b:?}");
    assert!(
        (origin_us(&right_segs[0]) - origin_us(&behind_segs[0])).abs() <= 1_000_000,
        "first segments {} and {}",
        r[0],
        b[0]
    );

    // The same picture at the same instant (the relay adds a few ms).
    let right_at: HashMap<String, i64> = right_segs
        .iter()
        .flat_map(|s| samples(s))
        .map(|(t, h)| (h, t))
        .collect();
    let mut gaps: Vec<i64> = behind_segs
        .iter()
        .flat_map(|s| samples(s))
        .filter_map(|(t, h)| right_at.get(&h).map(|r| t - r))
        .collect();
    assert!(
        gaps.len() >= 30,
        "only {} frames in both recordings",
        gaps.len()
    );
    gaps.sort_unstable();
    let (p50, worst) = (gaps[gaps.len() / 2], gaps[gaps.len() - 1].max(-gaps[0]));
    eprintln!(
        "{} shared frames: behind minus right p50 {p50} µs, worst {worst} µs",
        gaps.len()
    );
    assert!(
        worst < 50_000,
        "a frame is {worst} µs apart in the two recordings: {gaps:?}"
    );

    // The node's own capture time is kept: 90 minutes behind.
    for seg in &behind_segs {
        for off in prft_offsets_us(seg) {
            assert!(
                (off + 5_400_000_000).abs() < 1_000_000,
                "{}: node clock offset {off} µs in prft",
                seg.display()
            );
        }
    }
    assert!(prft_offsets_us(&right_segs[0])
        .iter()
        .all(|off| off.abs() < 50_000));

    // State topic and dashboard: about -5400 s and a warning, per camera.
    let state = wait_state(&broker, "the clock on the state topic", |s| {
        s.links
            .iter()
            .any(|l| l.node == "pi-behind" && l.clock.is_some())
    });
    let link = state.links.iter().find(|l| l.node == "pi-behind").unwrap();
    let clock = link.clock.as_ref().unwrap();
    assert!((clock.offset_ms + 5_400_000.0).abs() < 1000.0, "{clock:?}");
    assert!(clock.corrected, "{clock:?}");
    let warning = clock.warning.as_deref().unwrap_or_default();
    assert!(
        warning.contains("5400") && warning.contains("behind"),
        "{clock:?}"
    );
    let right_clock = state.links.iter().find(|l| l.node == "pi-right").unwrap();
    let right_clock = right_clock
        .clock
        .as_ref()
        .expect("the right node measured too");
    assert!(
        right_clock.offset_ms.abs() < 50.0 && right_clock.warning.is_none(),
        "{right_clock:?}"
    );

    let tiles = curl(&[&format!("http://{}/api/state", viewer.dashboard())]);
    let tiles: serde_json::Value = serde_json::from_str(&tiles.text()).unwrap();
    let tile = tiles["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node"] == "pi-behind")
        .expect("the node behind on the dashboard");
    let offset = tile["clock"]["offset_ms"]
        .as_f64()
        .expect("clock on the dashboard");
    assert!((offset + 5_400_000.0).abs() < 1000.0, "{tile}");
    assert!(tile["clock"]["warning"].as_str().is_some(), "{tile}");
    assert!(viewer.log().contains("5400."), "the offset is logged");
    drop(behind);
    drop(right);
}

#[test]
fn a_node_clock_stepping_10_s_forward_keeps_frames_once_and_in_order() {
    let broker = Broker::start();
    let dir = TempDir::new("step");
    let spec = dir.path("faketime");
    write(&spec, "+0\n");
    let _node = start_node(&broker, "pi-step", "test", &faked("", Some(&spec)));
    broker.wait_status("pi-step", "online");
    let recordings = TempDir::new("step-rec");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    viewer.wait_log("pi-step", SECS(20));
    wait_online(&broker);
    broker.publish("command/rec", "start");
    wait_for("a closed segment", SECS(30), || {
        (!segments(&recordings.0).is_empty()).then_some(())
    });
    // NTP arrives: the node's clock jumps 10 s ahead.
    write(&spec, "+10\n");
    viewer.wait_log("clock stepped by +10", SECS(20));
    let before = segments(&recordings.0).len();
    wait_for("two more segments", SECS(30), || {
        (segments(&recordings.0).len() >= before + 2).then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_state(&broker, "the viewer idle", |s| s.state == "idle");

    let all: Vec<(i64, String)> = segments(&recordings.0)
        .iter()
        .flat_map(|s| samples(s))
        .collect();
    let mut seen = HashMap::new();
    for (t, h) in &all {
        if let Some(earlier) = seen.insert(h.clone(), *t) {
            panic!("frame {h} recorded twice, at {earlier} and {t}");
        }
    }
    for pair in all.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        assert!(b > a, "frames out of order: {a} then {b}");
        assert!(
            b - a < 1_000_000,
            "a {} s hole at the step: {a} then {b}",
            (b - a) as f64 / 1e6
        );
    }
    eprintln!("{} frames once and in order across the step", all.len());
}
