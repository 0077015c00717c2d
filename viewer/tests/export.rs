//! Exporting a range of a session: the MP4 and the zip hold exactly the
//! recorded samples of the range, asked for with the `viewer export`
//! command and from the dashboard; bad ranges are refused.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

mod playback_common;

use playback_common::*;

#[test]
fn an_exported_range_holds_exactly_the_recorded_samples_from_the_command_and_the_dashboard() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-play", "320x240");
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    let dashboard = viewer.dashboard();
    viewer.wait_log("camera{camera=pi-play/cam0}: connected", SECS(20));
    broker.publish("command/rec", "start");
    wait_for("recording", SECS(10), || {
        (!camera_segments(&recordings.0, ".mp4.part").is_empty()).then_some(())
    });
    broker.publish("sensor/garden/temp", "21.5");
    wait_for("three closed segments", SECS(30), || {
        (camera_segments(&recordings.0, ".mp4").len() >= 3).then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_for("the recorder to close", SECS(20), || {
        viewer.log().contains("recording closed").then_some(())
    });
    let segments = camera_segments(&recordings.0, ".mp4");
    let all: Vec<Probed> = segments.iter().flat_map(|s| probe(s)).collect();
    // From the first segment's third frame to the third segment's second:
    // two boundaries inside the range.
    let third_start = probe(&segments[2])[0].at_us;
    let (from, to) = (all[2].at_us, third_start + 150_000);
    let want: Vec<&Probed> = all
        .iter()
        .filter(|s| s.at_us >= from && s.at_us < to)
        .collect();
    let camera_path = camera_path(&recordings.0, &segments[0]);
    let session = camera_path.split('/').next().unwrap().to_owned();

    let out = TempDir::new("export");
    let run = Command::new(env!("CARGO_BIN_EXE_viewer"))
        .args([
            "--recordings",
            &recordings.0.display().to_string(),
            "--dashboard",
            "off",
        ])
        .args([
            "export",
            &session,
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
        ])
        .args([
            "--camera",
            "pi-play/cam0",
            "--h264",
            "-o",
            &out.0.display().to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "viewer export: {stderr}");
    assert!(
        stderr.contains("100%") && stderr.contains(&format!("{} frames", want.len())),
        "{stderr}"
    );
    let file = out.path(&format!("{session}_pi-play_cam0.mp4"));
    // The H.264 copy, for players without MJPEG: every frame, re-encoded.
    assert!(stderr.contains("H.264 100%"), "{stderr}");
    let h264 = out.path(&format!("{session}_pi-play_cam0.h264.mp4"));
    let frames = h264_frames(&h264);
    assert!(
        frames >= want.len() * 9 / 10,
        "{frames} of {} frames",
        want.len()
    );
    let got = probe_relative(&file);
    assert_eq!(got.len(), want.len(), "frames in the range");
    assert_eq!(
        got.first().unwrap().1,
        want.first().unwrap().md5,
        "the first frame"
    );
    assert_eq!(
        got.last().unwrap().1,
        want.last().unwrap().md5,
        "the last frame"
    );
    let all_same = got.iter().zip(&want).all(|(g, w)| g.1 == w.md5);
    assert!(all_same, "every frame, in order");
    // Times start at 0 and keep the recording's spacing.
    for (g, w) in got.iter().zip(&want) {
        let drift = (g.0 - (w.at_us - from_first(&want))).abs();
        assert!(drift <= 12, "a frame's time moved {drift} µs");
    }

    // The dashboard's download: the same frames.
    let downloaded = out.path("download.mp4");
    let via_http = downloaded_export(&dashboard, &camera_path, (from, to), &downloaded);
    assert_eq!(via_http, got, "the download is the command's export");

    // The dashboard's H.264: a job whose progress is polled, then its file.
    let range = format!("from={}&to={}", rfc3339(from), rfc3339(to));
    let api = format!("http://{dashboard}/api");
    let started = curl(&[
        "-X",
        "POST",
        &format!("{api}/sessions/{camera_path}/export.h264?{range}"),
    ]);
    assert_eq!(started.status, 202, "{}", started.text());
    let job = started.json()["job"].as_u64().expect("a job id");
    let mut seen = Vec::new();
    let done = wait_for("the H.264 job to finish", SECS(60), || {
        let progress = curl(&[&format!("{api}/exports/{job}")]).json();
        seen.push(progress["percent"].as_u64().unwrap());
        match progress["state"].as_str().unwrap() {
            "running" => None,
            state => Some((state.to_owned(), progress)),
        }
    });
    assert_eq!(done.0, "done", "{}", done.1);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen.last() == Some(&100),
        "progress only grows, to 100: {seen:?}"
    );
    let encoded = out.path("dashboard.h264.mp4");
    let fetched = Command::new("curl")
        .args(["-s", "--fail", "--max-time", "30", "-o"])
        .arg(&encoded)
        .arg(format!("{api}/exports/{job}/file"))
        .status()
        .unwrap();
    assert!(fetched.success(), "GET the H.264 file");
    assert_eq!(
        std::fs::metadata(&encoded).unwrap().len(),
        done.1["bytes"].as_u64().unwrap()
    );
    assert_eq!(h264_frames(&encoded), frames, "the command's frame count");
    for (what, url, want_status) in [
        ("an unknown job", format!("{api}/exports/999999"), 404),
        ("its file", format!("{api}/exports/999999/file"), 404),
    ] {
        assert_eq!(curl(&[&url]).status, want_status, "{what}");
    }
    let backwards = format!("from={}&to={}", rfc3339(to), rfc3339(from));
    let refused = curl(&[
        "-X",
        "POST",
        &format!("{api}/sessions/{camera_path}/export.h264?{backwards}"),
    ]);
    assert_eq!(refused.status, 400, "a backwards range");
    // The whole session as one zip: every segment and sensors.csv, the
    // same bytes as on disk.
    let zip = out.path("session.zip");
    let fetched = Command::new("curl")
        .args(["-s", "--fail", "--max-time", "30", "-o"])
        .arg(&zip)
        .arg(format!(
            "http://{dashboard}/api/sessions/{session}/export.zip"
        ))
        .status()
        .unwrap();
    assert!(
        fetched.success(),
        "GET export.zip: {}",
        curl(&[&format!(
            "http://{dashboard}/api/sessions/{session}/export.zip"
        )])
        .status
    );
    let unpacked = out.path("unpacked");
    let unzip = Command::new("unzip")
        .args(["-q", "-d"])
        .arg(&unpacked)
        .arg(&zip)
        .output()
        .expect("unzip (sudo apt-get install unzip)");
    assert!(
        unzip.status.success(),
        "unzip: {}",
        String::from_utf8_lossy(&unzip.stderr)
    );
    let mut on_disk: Vec<PathBuf> = files(&recordings.0, ".mp4");
    on_disk.extend(files(&recordings.0, "sensors.csv"));
    assert!(
        on_disk.iter().any(|p| p.ends_with("sensors.csv")),
        "the session has sensors.csv"
    );
    let in_zip: Vec<PathBuf> = files(&unpacked, "")
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        in_zip.len(),
        on_disk.len(),
        "{in_zip:?} against {on_disk:?}"
    );
    for original in &on_disk {
        let relative = original.strip_prefix(&recordings.0).unwrap();
        assert_eq!(
            std::fs::read(unpacked.join(relative)).unwrap_or_default(),
            std::fs::read(original).unwrap(),
            "{} unpacks to the same bytes",
            relative.display()
        );
    }

    let reply = curl(&[&format!(
        "http://{dashboard}/api/sessions/{camera_path}/export.mp4?from=2030-01-01T00:00:00Z"
    )]);
    assert_eq!(reply.status, 404, "a range with no frame");
    let reply = curl(&[&format!(
        "http://{dashboard}/api/sessions/{camera_path}/export.mp4?from={}&to={}",
        rfc3339(to),
        rfc3339(from)
    )]);
    assert_eq!(reply.status, 400, "a range backwards");
}
