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

use testkit::viewers::*;
use testkit::*;

mod playback_common;
use playback_common::{camera_path, frame_number, frame_number_by_ffmpeg, rfc3339};

const SECS: fn(u64) -> Duration = Duration::from_secs;

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

/// Records a session until both cameras (pi-m and pi-h) have `n` closed
/// segments, then stops it and waits for both recorders to close.
fn record_segments(broker: &Broker, viewer: &Viewer, recordings: &Path, n: usize) {
    broker.publish("command/rec", "start");
    wait_for(&format!("{n} closed segments per camera"), SECS(40), || {
        (["pi-m", "pi-h"]
            .iter()
            .all(|node| closed_segments(recordings, node).len() >= n))
        .then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_for("the recorders to close", SECS(20), || {
        (viewer.log().matches("recording closed").count() == 2).then_some(())
    });
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
    frame_number(&body);
    let image_topic = "camfleet/viewer/ws/snapshot/pi-h/cam0";
    let image = Command::new("mosquitto_sub")
        .args(["-p", &broker.port.to_string(), "-t", image_topic])
        .args(["-C", "1", "-W", "15", "-N"])
        .output()
        .unwrap();
    assert!(image.status.success(), "no snapshot on {image_topic}");
    frame_number(&image.stdout);

    // The first segment may be short (it starts with the command).
    record_segments(&broker, &viewer, &recordings.0, 3);
    for node in ["pi-m", "pi-h"] {
        let segments = closed_segments(&recordings.0, node);
        let (a, b) = (&segments[1], &segments[2]);
        let camera_path = camera_path(&recordings.0, a);
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
            let served = frame_number(&body);
            let by_ffmpeg = frame_number_by_ffmpeg(segment, times[i] - times[0] - 100);
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
    record_segments(&broker, &viewer, &recordings.0, 2);
    let segment = &closed_segments(&recordings.0, "pi-h")[0];
    let camera_path = camera_path(&recordings.0, segment);
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
    let want = frame_number(&jpeg);
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
