//! Looking back at a session: the dashboard serves the JPEG a camera showed
//! at an instant straight from the recorded segments. Checked against
//! ffprobe's own reading of the files: for instants just before, at and
//! after a segment boundary the served bytes are the sample whose interval
//! holds the instant; a `.part` being written is served up to its last
//! fragment; bad names and times are refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use testkit::viewers::*;
use testkit::*;

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

/// ffprobe's samples of `segment` on the timeline, or why it could not
/// read it (a `.part` may be renamed while it is read).
fn try_probe(segment: &Path) -> Result<Vec<Probed>, String> {
    let origin = origin_us(segment);
    let packets = packets(segment)?;
    Ok(packets
        .into_iter()
        .map(|(t, md5)| Probed {
            at_us: origin + t,
            md5,
        })
        .collect())
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
    let (status, body, headers) = frame_reply(dashboard, camera_path, at_us);
    (status, body, header_of(&headers, "x-frame-time"))
}

fn header_of(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// The dashboard's reply at `at_us`: status, body, the head as text.
fn frame_reply(dashboard: &str, camera_path: &str, at_us: i64) -> (u16, Vec<u8>, String) {
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
    (status, out.stdout, headers)
}

/// The frame number burned into a test-pattern JPEG at 320x240.
fn frame_number(jpeg: &[u8]) -> u64 {
    let luma = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("not a JPEG: {e}"))
        .to_luma8();
    assert_eq!(luma.dimensions(), (320, 240));
    camera_node::source::pattern::read_frame_number(&luma, 320, 240)
        .expect("a test-pattern frame number in the picture")
}

/// The frame number of the frame ffmpeg decodes first from `segment` when
/// seeking to `at_us` (from the segment's first sample).
fn frame_number_by_ffmpeg(segment: &Path, at_us: i64) -> u64 {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-ss"])
        .arg(format!("{:.6}", at_us.max(0) as f64 / 1e6))
        .arg("-i")
        .arg(segment)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success() && out.stdout.len() == 320 * 240,
        "ffmpeg -ss {at_us} µs in {}: {}",
        segment.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    camera_node::source::pattern::read_frame_number(&out.stdout, 320, 240)
        .expect("a test-pattern frame number in ffmpeg's frame")
}

/// ffprobe's frame count of an H.264 MP4 at 320x240 (and that it is one).
fn h264_frames(path: &Path) -> usize {
    let info = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(
        info.contains("codec_name=h264") && info.contains("width=320"),
        "{}: {info}",
        path.display()
    );
    info.lines()
        .find_map(|l| l.strip_prefix("nb_read_frames="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
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
    let mut numbers = Vec::new();
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
        // The frame number the test pattern burned in: the same in the
        // served JPEG as in the frame ffmpeg decodes when asked for that
        // sample's time in its segment (`-ss`, a tenth of a millisecond
        // early: ffmpeg starts at the first frame at or after it).
        let served = frame_number(&body);
        // ffmpeg's -ss counts from the file's first timestamp.
        let segment = if want.at_us < boundary { a } else { b };
        let start = probe(segment)[0].at_us;
        let by_ffmpeg = frame_number_by_ffmpeg(segment, want.at_us - start - 100);
        assert_eq!(served, by_ffmpeg, "{what}: frame numbers");
        numbers.push(served);
    }
    assert_eq!(
        numbers[0] + 1,
        numbers[1],
        "the frames either side of the boundary follow each other (none lost, none twice)"
    );
    let last_sample_of_a = &probe(a)[probe(a).len() - 1];
    assert_eq!(
        expected(&samples, before).md5,
        last_sample_of_a.md5,
        "just before the boundary is the first segment's last sample"
    );

    // Before the first frame: nothing covers it, and the reply says where
    // the camera's first frame begins (a player goes on from there).
    let (status, _, head) = frame_reply(&dashboard, &camera_path, samples[0].at_us - 5_000_000);
    assert_eq!(status, 404);
    assert_eq!(
        header_of(&head, "x-next-frame").as_deref(),
        Some(rfc3339(samples[0].at_us).as_str()),
        "{head}"
    );
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
    let camera_dir = segments[0].parent().unwrap();
    let camera_path = camera_dir
        .strip_prefix(&recordings.0)
        .unwrap()
        .to_string_lossy()
        .into_owned();
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
    let url = format!(
        "http://{dashboard}/api/sessions/{camera_path}/export.mp4?from={}&to={}",
        rfc3339(from),
        rfc3339(to)
    );
    let downloaded = out.path("download.mp4");
    let fetched = Command::new("curl")
        .args(["-s", "--fail", "--max-time", "30", "-o"])
        .arg(&downloaded)
        .arg(&url)
        .status()
        .unwrap();
    assert!(fetched.success(), "GET {url}");
    let via_http = probe_relative(&downloaded);
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

fn from_first(samples: &[&Probed]) -> i64 {
    samples[0].at_us
}

/// (time from the file's start in µs, MD5) of every sample of an MP4.
fn probe_relative(file: &Path) -> Vec<(i64, String)> {
    packets(file).unwrap_or_else(|why| panic!("ffprobe {}: {why}", file.display()))
}

/// ffprobe's packets of an MP4: time from its start (µs) and MD5.
fn packets(file: &Path) -> Result<Vec<(i64, String)>, String> {
    Ok(packet_lines(file)?
        .lines()
        .filter_map(|l| {
            let (t, h) = l.split_once(',')?;
            let md5 = h.trim().strip_prefix("MD5:")?.to_owned();
            Some(((t.parse::<f64>().ok()? * 1e6).round() as i64, md5))
        })
        .collect())
}

#[test]
fn the_player_in_chromium_plays_steps_and_seeks_with_the_sensors_beneath() {
    use serde_json::json;
    use testkit::browser::Browser;
    let TwoNodes {
        broker,
        a: _a,
        b: _b,
        recordings,
        viewer,
    } = TwoNodes::start();
    let dashboard = viewer.dashboard();
    broker.publish("command/rec", "start");
    wait_for("recording", SECS(10), || {
        (!files(&recordings.0, ".mp4.part").is_empty()).then_some(())
    });
    for (i, value) in ["21.0", "21.5", "door open", "22.5"].iter().enumerate() {
        broker.publish("sensor/garden/temp", value);
        wait_for("the sensor row in the session", SECS(10), || {
            let csv = files(&recordings.0, "sensors.csv").into_iter().next()?;
            let text = std::fs::read_to_string(csv).ok()?;
            (text.matches("sensor/garden/temp").count() > i).then_some(())
        });
        wait_for("a segment more", SECS(10), || {
            (files(&recordings.0, ".mp4").len() >= 2 * (i + 1)).then_some(())
        });
    }
    broker.publish("command/rec", "stop");
    wait_for("the recorders to close", SECS(20), || {
        (viewer.log().matches("recording closed").count() == 2).then_some(())
    });
    let session = std::fs::read_dir(&recordings.0)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();

    let browser = Browser::start();
    browser.go(&format!("http://{dashboard}/sessions/{session}"));
    // At the session's first instant only the camera that began first has
    // a frame (the other began a few ms later: the player shows that as no
    // recording, not a wrong picture).
    let sizes = || {
        browser.run(
            "return [...document.querySelectorAll('figure img')].map(i => i.complete ? [i.naturalWidth, i.naturalHeight] : null)",
        )
    };
    wait_for("the first camera's picture", SECS(20), || {
        let now = sizes();
        (now[0] == json!([320, 240]) || now[1] == json!([160, 120])).then_some(())
    });
    let names =
        browser.run("return [...document.querySelectorAll('figure')].map(f => f.dataset.camera)");
    assert_eq!(names, json!(["pi-a/cam0", "pi-b/cam0"]));
    let state = || browser.run("return [player.t, player.shown, player.playing]");
    let before = state();
    let picture = browser.element_png("figure img");
    browser.click("#play");
    wait_for("the pictures to play", SECS(15), || {
        let now = state();
        let moved = now[0].as_f64()? - before[0].as_f64()? > 1.0e6;
        let shown = now[1].as_u64()? >= before[1].as_u64()? + 10;
        (moved && shown).then_some(())
    });
    assert_ne!(
        browser.element_png("figure img"),
        picture,
        "the picture changed"
    );
    browser.click("#play");
    assert_eq!(state()[2], json!(false), "paused");

    // The sensor beneath: three numbers as a line, the text as an event.
    // (The nodes' health rows are series of their own: `health/<node>/...`.)
    let series = browser.run(
        "return player.series.filter(s => s.topic.startsWith('sensor/')).map(s => [s.topic, s.points.map(p => p[1])])",
    );
    assert_eq!(series, json!([["sensor/garden/temp", [21, 21.5, 22.5]]]));
    let events = browser.run("return player.events.map(e => e.text)");
    assert_eq!(events, json!(["door open"]));

    // A click on the plot, a quarter of the way along: the pictures go there.
    let target = browser
        .run("return player.start + (player.end - player.start) * 0.25")
        .as_f64()
        .unwrap();
    let width = browser
        .run("return document.getElementById('plot').clientWidth")
        .as_i64()
        .unwrap();
    browser.click_at("#plot", -width / 4);
    wait_for("both pictures at the clicked time", SECS(10), || {
        let at = browser.run("return [player.t, ...player.cameras.map(c => c.shownAt)]");
        let t = at[0].as_f64()?;
        let near = (t - target).abs() < 20_000.0;
        let frames = at.as_array()?[1..]
            .iter()
            .all(|s| s.as_f64().is_some_and(|f| f <= t && t - f < 200_000.0));
        (near && frames).then_some(())
    });
    // The time is in the URL, to share: opened again, it starts there.
    // (Paused, the time stands still; the page writes it into the URL.)
    let (url, at_url) = wait_for("the time in the URL", SECS(5), || {
        let got = browser.run(
            "return location.hash === '#t=' + iso(player.t) ? [location.href, player.t] : null",
        );
        Some((got[0].as_str()?.to_owned(), got[1].as_f64()?))
    });
    browser.go("about:blank");
    browser.go(&url);
    wait_for("the player back at the URL's time", SECS(10), || {
        let t = browser
            .run("return player.end ? player.t : null")
            .as_f64()?;
        ((t - at_url).abs() < 600_000.0).then_some(())
    });
    // A frame forward (→): to the next frame of whichever camera has one
    // first; that camera's picture moves on, none goes back.
    let shown = || {
        let v = browser.run("return [player.t, ...player.cameras.map(c => c.shownAt)]");
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap_or(0.0))
            .collect::<Vec<f64>>()
    };
    let before = wait_for("both pictures shown after the reload", SECS(10), || {
        let now = shown();
        now[1..].iter().all(|s| *s > 0.0).then_some(now)
    });
    browser.click("#step");
    wait_for("the next frame", SECS(10), || {
        let now = shown();
        let stepped = now[0] > before[0] && now[0] - before[0] < 200_000.0;
        let moved = now[1..].iter().zip(&before[1..]).any(|(n, b)| n > b);
        let none_back = now[1..].iter().zip(&before[1..]).all(|(n, b)| n >= b);
        (stepped && moved && none_back).then_some(())
    });
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("player.png");
    std::fs::write(&shot, browser.page_png()).unwrap();
    eprintln!("player screenshot: {}", shot.display());
}
