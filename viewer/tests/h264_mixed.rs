//! A mixed fleet (one MJPEG node, one H.264 node) in one session: both
//! recorded; the picture the dashboard's player gets at an instant
//! (`frame.jpg?at=`, an H.264 camera's decoded from the keyframe before it)
//! shows the burned-in frame number ffmpeg decodes from the segment at
//! that instant, for both; the H.264 camera's dashboard snapshot and Home
//! Assistant snapshot are JPEGs of its pictures, its MJPEG stream a clear
//! 415. Real mosquitto, nodes, viewer, ffmpeg, curl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The burned-in number of a 320x240 test-pattern JPEG.
fn number_of_jpeg(jpeg: &[u8]) -> u64 {
    let luma = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("not a JPEG: {e}"))
        .to_luma8();
    assert_eq!(luma.dimensions(), (320, 240));
    camera_node::source::pattern::read_frame_number(&luma, 320, 240)
        .expect("a test-pattern frame number in the picture")
}

/// The number of the frame ffmpeg decodes first from `segment` when asked
/// for `at_us` after its first sample.
fn number_by_ffmpeg(segment: &Path, at_us: i64) -> u64 {
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

/// Sample times of `segment` on the timeline (µs).
fn sample_times(segment: &Path) -> Vec<i64> {
    samples(segment).into_iter().map(|(t, _)| t).collect()
}

/// `curl` of `url`: status and body.
fn get(url: &str) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "15", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&body[split + 1..]).parse().unwrap();
    (status, body[..split].to_vec())
}

fn closed_segments(recordings: &Path, node: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = files(recordings, ".mp4")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&format!("/{node}/")))
        .collect();
    found.sort();
    found
}

#[test]
fn a_mixed_fleet_is_recorded_and_its_pictures_at_an_instant_match_ffmpeg_for_both_codecs() {
    let broker = Broker::start();
    let _m = test_node(&broker, "pi-m", "320x240");
    let _h = test_node_with(&broker, "pi-h", "320x240", &["--codec", "h264"]);
    let recordings = TempDir::new("mixed");
    let viewer = Viewer::start(
        &broker,
        &recordings.0,
        &[
            "--segment-seconds",
            "3",
            "--homeassistant",
            "--homeassistant-snapshot-seconds",
            "1",
        ],
    );
    let dashboard = viewer.dashboard();
    for node in ["pi-m", "pi-h"] {
        viewer.wait_log(
            &format!("camera{{camera={node}/cam0}}: connected"),
            SECS(20),
        );
    }

    // Live: the H.264 camera's pictures as JPEGs, its MJPEG stream refused.
    let (status, body) = get(&format!("http://{dashboard}/cameras/pi-h/cam0/stream.mjpg"));
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("H.264"));
    let (status, body) = get(&format!(
        "http://{dashboard}/cameras/pi-h/cam0/snapshot.jpg"
    ));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    number_of_jpeg(&body);
    let image_topic = "camfleet/viewer/ws/snapshot/pi-h/cam0";
    let image = Command::new("mosquitto_sub")
        .args(["-p", &broker.port.to_string(), "-t", image_topic])
        .args(["-C", "1", "-W", "15", "-N"])
        .output()
        .unwrap();
    assert!(image.status.success(), "no snapshot on {image_topic}");
    number_of_jpeg(&image.stdout);

    broker.publish("command/rec", "start");
    // The first segment may be short (it starts with the command).
    wait_for("three closed segments per camera", SECS(40), || {
        (["pi-m", "pi-h"]
            .iter()
            .all(|n| closed_segments(&recordings.0, n).len() >= 3))
        .then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_for("the recorders to close", SECS(20), || {
        (viewer.log().matches("recording closed").count() == 2).then_some(())
    });
    for node in ["pi-m", "pi-h"] {
        let segments = closed_segments(&recordings.0, node);
        let (a, b) = (&segments[1], &segments[2]);
        let camera_path = a
            .parent()
            .unwrap()
            .strip_prefix(&recordings.0)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let (ta, tb) = (sample_times(a), sample_times(b));
        assert!(ta.len() > 4 && !tb.is_empty(), "{node}: {ta:?} {tb:?}");
        let mut numbers = Vec::new();
        // Mid-group instants too: an H.264 picture there is decoded from
        // the keyframe before it.
        for (what, segment, times, i) in [
            ("the first segment's second frame", a, &ta, 1),
            ("mid first segment", a, &ta, ta.len() / 2),
            ("the first segment's last frame", a, &ta, ta.len() - 1),
            ("the second segment's first frame", b, &tb, 0),
        ] {
            let at_us = times[i] + 1_000;
            let (status, body) = get(&format!(
                "http://{dashboard}/api/sessions/{camera_path}/frame.jpg?at={}",
                rfc3339(at_us)
            ));
            assert_eq!(
                status,
                200,
                "{node}, {what}: {}",
                String::from_utf8_lossy(&body)
            );
            let served = number_of_jpeg(&body);
            let by_ffmpeg = number_by_ffmpeg(segment, times[i] - times[0] - 100);
            assert_eq!(served, by_ffmpeg, "{node}, {what}: frame numbers");
            numbers.push(served);
        }
        assert_eq!(
            numbers[2] + 1,
            numbers[3],
            "{node}: the frames either side of the cut follow each other"
        );
    }
}

/// The luma of a figure's `<video>` as drawn now, read back through a
/// canvas: its burned-in number.
fn video_number(browser: &testkit::browser::Browser, camera: &str) -> Option<u64> {
    let luma = browser.run(&format!(
        "const v = document.querySelector(\"figure[data-camera='{camera}'] video\");
         if (!v || v.videoWidth !== 320) return null;
         const c = document.createElement('canvas'); c.width = 320; c.height = 240;
         const x = c.getContext('2d'); x.drawImage(v, 0, 0);
         const d = x.getImageData(0, 0, 320, 240).data, out = new Array(320 * 240);
         for (let i = 0; i < out.length; i++) out[i] = d[i * 4];
         return out;"
    ));
    let luma: Vec<u8> = luma
        .as_array()?
        .iter()
        .map(|v| v.as_u64().unwrap_or(0) as u8)
        .collect();
    camera_node::source::pattern::read_frame_number(&luma, 320, 240)
}

#[test]
fn the_player_plays_an_h264_camera_beside_an_mjpeg_one_seeks_and_steps() {
    use testkit::browser::Browser;
    let broker = Broker::start();
    let _m = test_node(&broker, "pi-m", "320x240");
    let _h = test_node_with(&broker, "pi-h", "320x240", &["--codec", "h264"]);
    let recordings = TempDir::new("mixed-player");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "3"]);
    let dashboard = viewer.dashboard();
    for node in ["pi-m", "pi-h"] {
        viewer.wait_log(
            &format!("camera{{camera={node}/cam0}}: connected"),
            SECS(20),
        );
    }
    broker.publish("command/rec", "start");
    wait_for("two closed segments per camera", SECS(40), || {
        (["pi-m", "pi-h"]
            .iter()
            .all(|n| closed_segments(&recordings.0, n).len() >= 2))
        .then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_for("the recorders to close", SECS(20), || {
        (viewer.log().matches("recording closed").count() == 2).then_some(())
    });
    let segment = &closed_segments(&recordings.0, "pi-h")[0];
    let camera_path = segment
        .parent()
        .unwrap()
        .strip_prefix(&recordings.0)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let session = camera_path.split('/').next().unwrap().to_owned();

    let browser = Browser::start();
    browser.go(&format!("http://{dashboard}/sessions/{session}"));
    let h264 = "figure[data-camera='pi-h/cam0']";
    let frames = || {
        browser
            .run(&format!(
                "const f = document.querySelector(\"{h264}\"); return f ? Number(f.dataset.frames || 0) : 0"
            ))
            .as_u64()
            .unwrap_or(0)
    };
    wait_for("the H.264 camera's first picture", SECS(20), || {
        (frames() > 0).then_some(())
    });
    let error = browser.run(&format!(
        "return document.querySelector(\"{h264}\").dataset.error || null"
    ));
    assert_eq!(error, serde_json::Value::Null);

    // Playing: the video moves on with the player's clock.
    let state =
        || browser.run("return [player.t, player.cameras.find(c => c.node === 'pi-h').shownAt]");
    let (t0, f0) = (state()[0].as_f64().unwrap(), frames());
    browser.click("#play");
    wait_for("the H.264 video playing on the clock", SECS(15), || {
        let now = state();
        let (t, shown) = (now[0].as_f64()?, now[1].as_f64()?);
        let on_clock = (t - shown).abs() < 300_000.0;
        (t - t0 > 1.5e6 && frames() >= f0 + 10 && on_clock).then_some(())
    });
    browser.click("#play");

    // Seeking to an instant mid-group near the end: the picture drawn is
    // the one the dashboard's frame.jpg decodes for that instant.
    let target = browser
        .run("const c = player.cameras.find(c => c.node === 'pi-h'); return c.spans[0][1] - 1.45e6")
        .as_f64()
        .unwrap();
    browser.run(&format!("seek({target})"));
    let url = format!(
        "http://{dashboard}/api/sessions/{camera_path}/frame.jpg?at={}",
        rfc3339(target as i64)
    );
    let (status, jpeg) = get(&url);
    assert_eq!(status, 200);
    let want = number_of_jpeg(&jpeg);
    let drawn = wait_for("the sought picture", SECS(15), || {
        let n = video_number(&browser, "pi-h/cam0")?;
        (n == want).then_some(n)
    });
    // A frame forward, as often as it takes the H.264 camera to move on:
    // its next picture, the next number.
    let mut stepped = None;
    for _ in 0..4 {
        let before = state()[0].as_f64().unwrap();
        browser.click("#step");
        // The step is done when the clock moved and the video shows the
        // frame that covers it (at 10 fps, begun less than 100 ms before).
        wait_for("a step", SECS(10), || {
            let now = state();
            let (t, shown) = (now[0].as_f64()?, now[1].as_f64()?);
            (t > before && shown <= t && t - shown < 100_000.0).then_some(())
        });
        let n = wait_for("the stepped picture", SECS(10), || {
            video_number(&browser, "pi-h/cam0")
        });
        stepped = n.checked_sub(drawn).filter(|d| *d > 0);
        if stepped.is_some() {
            break;
        }
    }
    assert_eq!(stepped, Some(1), "the H.264 camera stepped one frame on");
}
