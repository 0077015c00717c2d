//! H.264 through the node as players and viewers meet it: the test
//! pattern encoded in process and the rpicam-vid stand-in, served over
//! RTSP (ffmpeg and GStreamer, TCP and UDP) and the TCP frame protocol v2,
//! every frame decoded and its burned-in number checked; an MJPEG camera
//! beside it keeps speaking v1. (A camera whose stream breaks or changes
//! size: h264_changes.rs.)

use std::process::{Command, Stdio};
use std::time::Duration;

use camera_node::source::pattern::read_frame_number;
use shared::frame::{Codec, HELLO, HELLO_V2};
use testkit::gst::{assert_gstreamer_decoded, gstreamer_gray, Depay};
use testkit::*;

mod h264_common;

use h264_common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const W: u32 = 320;
const H: u32 = 240;
const FPS: u32 = 15;

/// A node with an H.264 test pattern (`h264`, a keyframe a second) and an
/// MJPEG one (`mjpeg`) side by side.
fn mixed_node(broker: &Broker) -> (Node, TempDir) {
    mixed_node_with_env(broker, &[])
}

fn mixed_node_with_env(broker: &Broker, env: &[(&str, &str)]) -> (Node, TempDir) {
    let dir = TempDir::new("h264");
    let config = dir.path("node.toml");
    write(
        &config,
        &format!(
            "[[camera]]\nid = 'h264'\nsource = 'test'\ncodec = 'h264'\nwidth = {W}\nheight = {H}\nfps = {FPS}\n\n\
             [[camera]]\nid = 'mjpeg'\nsource = 'test'\nwidth = {W}\nheight = {H}\nfps = {FPS}\n"
        ),
    );
    let url = broker.url();
    let node = Node::start_with_env(
        &[
            vec!["--config", config.to_str().unwrap()],
            node_base_args(&url, "h264-test"),
        ]
        .concat(),
        env,
    );
    // Both cameras: the MJPEG one is often first, and an H.264 snapshot
    // asked for before the first keyframe is a 503.
    for camera in ["h264", "mjpeg"] {
        node.wait_log(&format!("{{camera={camera}}}: first frame"), SECS(20));
    }
    (node, dir)
}

/// Grey pictures of `W`x`H` to the burned-in frame numbers they show.
fn numbers(grey: &[u8]) -> Vec<u64> {
    grey.chunks_exact((W * H) as usize)
        .map(|picture| read_frame_number(picture, W, H).expect("a test-pattern picture"))
        .collect()
}

/// The numbers the rpicam-vid stand-in stamped on its 640x480 pictures.
fn stamps(grey: &[u8]) -> Vec<u64> {
    grey.chunks_exact(640 * 480)
        .map(|picture| stamped_number(picture, 640).expect("a stamped picture"))
        .collect()
}

/// Every picture once, in order, from a keyframe of a group of `gop`. A
/// player the busy machine held back may be skipped on once, and then to
/// a keyframe (the node's rule for a slow viewer), never into a group.
fn assert_in_order(numbers: &[u64], what: &str, gop: u64) {
    assert!(
        numbers.len() > 10,
        "{what}: only {} pictures",
        numbers.len()
    );
    let mut skips = 0;
    for pair in numbers.windows(2) {
        if pair[1] > pair[0] + 1 && pair[1] % gop == 0 && skips == 0 {
            eprintln!("{what}: jumped from {} to keyframe {}", pair[0], pair[1]);
            skips += 1;
            continue;
        }
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "{what}: frame {} follows {}",
            pair[1],
            pair[0]
        );
    }
}

/// Plays `secs` seconds of `url` with ffmpeg over `transport`: the decoded
/// pictures' numbers, and what ffmpeg said at level error. Every decoded
/// picture once (`-fps_mode passthrough`): the raw output's default is a
/// constant rate, and ffmpeg repeats a picture whose capture time came
/// late on a busy machine.
fn ffmpeg_grey(url: &str, transport: &str, secs: u32) -> (Vec<u8>, String) {
    require("ffmpeg", "ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-rtsp_transport", transport, "-i", url])
        .args(["-fps_mode", "passthrough"])
        .args([
            "-t",
            &secs.to_string(),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.stdout, said)
}

#[test]
fn ffprobe_ffmpeg_and_gstreamer_decode_every_h264_frame_in_order_over_tcp_and_udp() {
    require("ffprobe", "ffmpeg");
    require(
        "gst-launch-1.0",
        "gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-libav",
    );
    let broker = Broker::start();
    let (node, _dir) = mixed_node(&broker);
    let url = format!("{}/h264", node.rtsp_base());
    let probe = probe(&url, "codec_name,width,height");
    assert_eq!(probe.trim(), format!("h264,{W},{H}"));
    for transport in ["tcp", "udp"] {
        let (grey, errors) = ffmpeg_grey(&url, transport, 5);
        let seen = numbers(&grey);
        assert!(
            errors.is_empty(),
            "ffmpeg over {transport} reported: {errors}"
        );
        assert_in_order(&seen, &format!("ffmpeg over {transport}"), u64::from(FPS));
        // It joined mid-group, yet its first picture is a keyframe (the
        // pattern's keyframes are frames 0, 15, 30...) and decoded.
        assert_eq!(
            seen[0] % u64::from(FPS),
            0,
            "the first picture is a keyframe: {seen:?}"
        );
        let span = seen[seen.len() - 1] - seen[0] + 1;
        assert!(span >= 5 * u64::from(FPS) - 2, "{span} frames in 5 s");
    }
    for protocol in ["tcp", "udp"] {
        let out = gstreamer_gray(&url, protocol, Depay::H264, 75);
        let what = format!("over {protocol}");
        assert_gstreamer_decoded(&out, &what, Depay::H264, 74, (W * H) as usize);
        let seen = numbers(&out.stdout);
        // identity ends the stream in place of its 75th buffer: 5 s.
        assert!(
            seen.len() >= 74,
            "GStreamer over {protocol}: {} pictures",
            seen.len()
        );
        assert_in_order(&seen, &format!("GStreamer over {protocol}"), u64::from(FPS));
        assert_eq!(
            seen[0] % u64::from(FPS),
            0,
            "GStreamer over {protocol} joined mid-group, at a keyframe: {seen:?}"
        );
    }
    let info = wait_for("NodeInfo with the group length", SECS(10), || {
        let info = broker.node_info("h264-test");
        let known = info.cameras.iter().any(|c| c.gop_frames.is_some());
        known.then_some(info)
    });
    let camera = info.cameras.iter().find(|c| c.id == "h264").unwrap();
    assert_eq!(camera.codec, "h264");
    assert_eq!(camera.codec_string.as_deref(), Some("avc1.42C01F"));
    assert_eq!(camera.gop_frames, Some(u64::from(FPS)));
    assert_eq!(
        camera.http, None,
        "no multipart MJPEG URL for an H.264 camera"
    );
    assert!(!node.log().contains("panicked"));
}

#[test]
fn the_v2_stream_decodes_with_contiguous_numbers_and_the_mjpeg_camera_keeps_v1() {
    require("ffmpeg", "ffmpeg");
    let broker = Broker::start();
    let (node, _dir) = mixed_node(&broker);
    let (hello, frames, decoder) = read_frames(node.tcp_port("h264"), 45, SECS(20));
    assert_eq!(&hello[..], HELLO_V2);
    assert_eq!(frames.len(), 45);
    assert!(frames[0].key, "a v2 stream starts at a keyframe");
    assert!(
        decoder.params().is_some(),
        "the codec configuration came first"
    );
    assert!(frames.iter().all(|f| f.codec == Codec::H264));
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "sequence numbers are contiguous"
        );
    }
    let keys = frames.iter().filter(|f| f.key).count();
    assert!(
        (3..=4).contains(&keys),
        "{keys} keyframes in 3 s at one a second"
    );
    // Re-wrapped as Annex B, ffmpeg decodes every frame.
    let mut annex_b = Vec::new();
    for f in &frames {
        shared::h264::to_annex_b(&f.data, &mut annex_b);
    }
    let decoded = decode_annex_b(annex_b);
    let seen = numbers(&decoded);
    assert_eq!(seen.len(), 45);
    assert_in_order(&seen, "the v2 stream", u64::from(FPS));

    // The MJPEG camera on the same node: v1 byte for byte, JPEGs.
    let (hello, frames, decoder) = read_frames(node.tcp_port("mjpeg"), 5, SECS(10));
    assert_eq!(&hello[..], HELLO);
    assert_eq!(decoder.version(), Some(1));
    assert!(frames
        .iter()
        .all(|f| f.codec == Codec::Mjpeg && f.data.starts_with(&[0xFF, 0xD8])));
}

#[test]
fn an_h264_camera_answers_snapshots_and_refuses_multipart_by_name() {
    let broker = Broker::start();
    let (node, _dir) = mixed_node(&broker);
    let base = node.http_base();
    let page = run_ok(Command::new("curl").args(["-s", "-f", &format!("{base}/")]));
    assert!(
        page.contains(r#"data-snapshot="h264""#),
        "the H.264 camera's tile is its snapshot"
    );
    assert!(
        page.contains(r#"data-camera="h264-test/mjpeg""#),
        "the MJPEG camera stays live"
    );
    let snapshot = Command::new("curl")
        .args(["-s", "-f", &format!("{base}/cameras/h264/snapshot.jpg")])
        .output()
        .unwrap();
    assert!(snapshot.status.success());
    assert_eq!(jpeg_size(&snapshot.stdout), (W, H));
    let luma = image::load_from_memory(&snapshot.stdout)
        .unwrap()
        .to_luma8();
    assert!(
        read_frame_number(&luma, W, H).is_some(),
        "the snapshot is a decoded picture"
    );
    let refused = run_ok(Command::new("curl").args([
        "-s",
        "-w",
        " %{http_code}",
        &format!("{base}/cameras/h264/stream.mjpg"),
    ]));
    assert!(refused.ends_with(" 415"), "{refused}");
    assert!(
        refused.contains("rtsp://") && refused.contains("/h264"),
        "{refused}"
    );
}

#[test]
fn rpicam_gets_the_encoders_flags_and_its_h264_plays() {
    require("ffprobe", "ffmpeg");
    require(
        "gst-launch-1.0",
        "gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-libav",
    );
    let broker = Broker::start();
    let (node, bin) = node_on_fake_h264_camera(&broker, false, &["--bitrate", "3000000"]);
    let asked = invocations(&bin).join("\n");
    for flag in [
        "--codec h264",
        "--inline",
        "--flush",
        "--intra 30",
        "--profile main",
        "--level 4.1",
        "--bitrate 3000000",
        "--width 640",
        "--height 480",
        "--framerate 15",
        "-o -",
    ] {
        assert!(
            asked.contains(flag),
            "rpicam-vid was not given {flag:?}: {asked}"
        );
    }
    assert!(!asked.contains("--low-latency"), "not a Pi 5: {asked}");
    let url = format!("{}/cam0", node.rtsp_base());
    let probe = probe(&url, "codec_name,width,height");
    assert_eq!(probe.trim(), "h264,640,480");
    // 5 s over each transport, every picture once and in order from a
    // keyframe (the stand-in's are every 30th: 2 s at 15 fps).
    for transport in ["tcp", "udp"] {
        let (grey, errors) = ffmpeg_grey(&url, transport, 5);
        assert!(errors.is_empty(), "ffmpeg over {transport}: {errors}");
        let seen = stamps(&grey);
        let what = format!("ffmpeg over {transport}");
        assert_in_order(&seen, &what, 30);
        let span = seen[seen.len() - 1] - seen[0] + 1;
        assert!(span >= 73, "{what}: {span} frames in 5 s");
        assert_eq!(seen[0] % 30, 0, "{what} starts at a keyframe: {seen:?}");
        let out = gstreamer_gray(&url, transport, Depay::H264, 76);
        let over = format!("over {transport}");
        assert_gstreamer_decoded(&out, &over, Depay::H264, 75, 640 * 480);
        let seen = stamps(&out.stdout);
        let what = format!("GStreamer {over}");
        assert_in_order(&seen, &what, 30);
        assert_eq!(seen[0] % 30, 0, "{what} starts at a keyframe: {seen:?}");
    }
    let gop = wait_for("NodeInfo with the group length", SECS(10), || {
        broker.node_info("pi-h264").cameras[0].gop_frames
    });
    assert_eq!(gop, 30);
    assert!(!node.log().contains("B-frames"), "{}", node.log());
}

#[test]
fn a_pi_5_without_its_flags_is_told_of_b_frames_and_one_known_by_its_model_gets_them() {
    let broker = Broker::start();
    // As on a board whose model the node did not take for a Pi 5.
    let (node, bin) = node_on_fake_h264_camera(&broker, true, &["--rpicam-libav", "false"]);
    node.wait_log("B-frames", SECS(20));
    assert!(
        node.log().contains("--low-latency"),
        "the warning names the flag: {}",
        node.log()
    );
    assert!(!invocations(&bin).join(" ").contains("--low-latency"));
    drop(node);
    // Left to the board: its model says Pi 5.
    let pi = testkit::pi::FakePi::new();
    pi.put("proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0");
    let (node, bin) = node_on_fake_h264_camera(&broker, true, &pi.flag());
    let asked = invocations(&bin).join("\n");
    assert!(
        asked.contains("--libav-format h264") && asked.contains("--low-latency"),
        "{asked}"
    );
    let frames_before = node.log().matches("first frame").count();
    assert!(frames_before >= 1);
    // Give it as long as the first node took to warn: a second of pictures.
    let url = format!("{}/cam0", node.rtsp_base());
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            &url,
            "-t",
            "2",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!node.log().contains("B-frames"), "{}", node.log());
}

/// Snapshots of an H.264 camera asked for at once: one decode at a time
/// (ffmpeg runs never overlap), its picture answers the requests while
/// fresh, and a request after that decodes again.
#[test]
fn snapshots_asked_for_at_once_share_one_decode_at_a_time() {
    require("ffmpeg", "ffmpeg");
    require("curl", "curl");
    let bin = TempDir::new("counting-ffmpeg");
    let real = run_ok(Command::new("sh").args(["-c", "command -v ffmpeg"]));
    let log = bin.path("decodes");
    bin.script(
        "ffmpeg",
        &format!(
            "#!/bin/sh\necho start >> '{log}'\n'{real}' \"$@\"\nstatus=$?\necho end >> '{log}'\nexit $status\n",
            log = log.display(),
            real = real.trim()
        ),
    );
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let broker = Broker::start();
    let (node, _dir) = mixed_node_with_env(&broker, &[("PATH", &path)]);
    let url = format!("{}/cameras/h264/snapshot.jpg", node.http_base());
    let snapshot = || {
        let out = Command::new("curl")
            .args(["-s", "-f", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    let answers: Vec<Vec<u8>> = std::thread::scope(|s| {
        let asked: Vec<_> = (0..10).map(|_| s.spawn(snapshot)).collect();
        asked.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| jpeg_size(a) == (W, H)));
    let runs = || std::fs::read_to_string(&log).unwrap_or_default();
    let decodes = runs().lines().filter(|l| *l == "start").count();
    assert!(
        (1..=2).contains(&decodes),
        "{decodes} decodes for ten requests at once"
    );
    let mut distinct = answers.clone();
    distinct.dedup();
    assert!(
        distinct.len() <= decodes,
        "each answer is a decode's picture"
    );
    wait_for("a decode once the picture is stale", SECS(10), || {
        snapshot();
        let now = runs().lines().filter(|l| *l == "start").count();
        (now > decodes).then_some(())
    });
    let lines: Vec<String> = runs().lines().map(str::to_owned).collect();
    for pair in lines.chunks(2) {
        assert_eq!(pair, ["start", "end"], "decodes overlapped: {lines:?}");
    }
}
