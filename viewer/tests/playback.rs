//! Looking back at a session: the dashboard serves the JPEG a camera showed
//! at an instant straight from the recorded segments. Checked against
//! ffprobe's own reading of the files: for instants just before, at and
//! after a segment boundary the served bytes are the sample whose interval
//! holds the instant; a `.part` being written is served up to its last
//! fragment; bad names and times are refused.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use support::common::*;
use support::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A sample as ffprobe reads it: its time on the timeline (µs) and the
/// MD5 of its JPEG. (ffprobe 5 gives no packet durations for these files:
/// a sample lasts until the next one begins.)
#[derive(Debug, Clone)]
struct Probed {
    at_us: i64,
    md5: String,
}

fn probe(segment: &Path) -> Vec<Probed> {
    try_probe(segment).unwrap_or_else(|why| panic!("ffprobe {}: {why}", segment.display()))
}

/// ffprobe's samples of `segment`, or why it could not read it (a `.part`
/// may be renamed while it is read).
fn try_probe(segment: &Path) -> Result<Vec<Probed>, String> {
    require("ffprobe", "ffmpeg");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_packets",
            "-show_data_hash",
            "md5",
        ])
        .args([
            "-show_entries",
            "packet=pts_time,data_hash",
            "-of",
            "csv=p=0",
        ])
        .arg(segment)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let origin = origin_us(segment);
    let text = String::from_utf8(out.stdout).unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let (time, hash) = line.split_once(',')?;
            Some(Probed {
                at_us: origin + (time.parse::<f64>().ok()? * 1e6).round() as i64,
                md5: hash.trim().strip_prefix("MD5:")?.to_owned(),
            })
        })
        .collect();
    Ok(samples)
}

fn md5(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The frame the dashboard serves at `at_us`: status, body, X-Frame-Time.
fn frame_at(dashboard: &str, camera_path: &str, at_us: i64) -> (u16, Vec<u8>, Option<String>) {
    let url = format!(
        "http://{dashboard}/api/sessions/{camera_path}/frame.jpg?at={}",
        rfc3339(at_us)
    );
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "15",
            "-D",
            "/dev/stderr",
            "-o",
            "-",
            &url,
        ])
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status from {url}: {headers}"));
    let time = headers
        .lines()
        .find_map(|l| l.strip_prefix("x-frame-time: "))
        .map(|t| t.trim().to_owned());
    (status, out.stdout, time)
}

/// The sample of `samples` (in time order) whose interval holds `at_us`:
/// the last to begin at or before it, with a next one after it.
fn expected(samples: &[Probed], at_us: i64) -> &Probed {
    let i = samples.partition_point(|s| s.at_us <= at_us);
    assert!(
        i > 0 && i < samples.len(),
        "{at_us} is not inside {samples:?}"
    );
    &samples[i - 1]
}

fn camera_segments(recordings: &Path, suffix: &str) -> Vec<PathBuf> {
    files(recordings, suffix)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("pi-play"))
        .collect()
}

#[test]
fn frames_at_instants_are_the_recorded_samples_across_a_segment_boundary_and_in_a_part() {
    require("curl", "curl");
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-play", "320x240");
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "3"]);
    let dashboard = viewer.dashboard();
    viewer.wait_log("camera{camera=pi-play/cam0}: connected", SECS(20));
    broker.publish("command/rec", "start");
    let closed = wait_for("two closed segments", SECS(30), || {
        let closed = camera_segments(&recordings.0, ".mp4");
        (closed.len() >= 2).then_some(closed)
    });
    let camera_dir = closed[0].parent().unwrap();
    let camera_path = camera_dir
        .strip_prefix(&recordings.0)
        .unwrap()
        .to_string_lossy()
        .into_owned();

    // The open segment, served while it is written. ffprobe may read a
    // fragment being appended (its last packets torn); one second behind
    // the newest sample lies in a whole fragment (written every second).
    let (part, part_samples) = wait_for("an open segment with 1.3 s in it", SECS(20), || {
        let part = camera_segments(&recordings.0, ".mp4.part")
            .into_iter()
            .next()?;
        let samples: Vec<Probed> = probe(&part)
            .into_iter()
            .filter(|s| s.md5 != "N/A")
            .collect();
        let span = samples.last()?.at_us - samples.first()?.at_us;
        (span >= 1_300_000).then_some((part, samples))
    });
    let at_us = part_samples.last().unwrap().at_us - 1_200_000;
    let want = expected(&part_samples, at_us);
    let (status, body, time) = frame_at(&dashboard, &camera_path, at_us);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        md5(&body),
        want.md5,
        "a sample of the open {}",
        part.display()
    );
    assert_eq!(time.as_deref(), Some(rfc3339(want.at_us).as_str()));

    broker.publish("command/rec", "stop");
    wait_for("the recorder to close", SECS(20), || {
        viewer.log().contains("recording closed").then_some(())
    });
    let (a, b) = (&closed[0], &closed[1]);
    let mut samples = probe(a);
    let first_of_b = probe(b);
    let boundary = first_of_b[0].at_us;
    samples.extend(first_of_b);
    let before = boundary - 1_000;
    for (what, at_us) in [
        ("just before the boundary", before),
        ("at the boundary", boundary),
        ("just after the boundary", boundary + 1_000),
        ("at the second segment's named start", origin_us(b)),
        (
            "in the first segment",
            (samples[1].at_us + samples[2].at_us) / 2,
        ),
    ] {
        let want = expected(&samples, at_us);
        let (status, body, time) = frame_at(&dashboard, &camera_path, at_us);
        assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
        assert_eq!(md5(&body), want.md5, "{what} ({at_us})");
        assert_eq!(
            time.as_deref(),
            Some(rfc3339(want.at_us).as_str()),
            "{what}"
        );
        image::load_from_memory_with_format(&body, image::ImageFormat::Jpeg)
            .unwrap_or_else(|e| panic!("{what}: not a JPEG: {e}"));
    }
    let last_sample_of_a = &probe(a)[probe(a).len() - 1];
    assert_eq!(
        expected(&samples, before).md5,
        last_sample_of_a.md5,
        "just before the boundary is the first segment's last sample"
    );

    // Before the first frame: nothing covers it.
    let (status, _, _) = frame_at(&dashboard, &camera_path, samples[0].at_us - 5_000_000);
    assert_eq!(status, 404);
    // Bad names and times.
    let session = camera_path.split('/').next().unwrap();
    let base = format!("http://{dashboard}/api/sessions");
    for (path, want) in [
        (
            format!("{session}/pi-play/cam0/frame.jpg?at=yesterday"),
            400,
        ),
        (format!("{session}/pi-play/cam0/frame.jpg"), 400),
        (
            format!("{session}/%2e%2e/cam0/frame.jpg?at=2026-01-01T00:00:00Z"),
            400,
        ),
        (
            format!("{session}/pi-play/nocam/frame.jpg?at=2026-01-01T00:00:00Z"),
            404,
        ),
        (
            "19990101T000000Z/pi-play/cam0/frame.jpg?at=2026-01-01T00:00:00Z".to_owned(),
            404,
        ),
    ] {
        let reply = curl(&["--path-as-is", &format!("{base}/{path}")]);
        assert_eq!(reply.status, want, "{path}: {}", reply.text());
    }
}
