//! H.264 sources as they reach the node: an RTMP drone and an IP
//! camera's RTSP stream are copied, not re-encoded (the publisher's own
//! profile and size served on, the copying ffmpeg next to no CPU), and
//! pushed on as they came; the IP camera asked for another size is
//! converted by libx264; a USB webcam's own H.264 or MJPEG is read and
//! copied, raw pictures converted; a file of H.264 is replayed in a loop.
//! Real nginx-rtmp, ffmpeg as publisher and IP camera, a stand-in ffmpeg
//! for the webcam (no /dev/video here), real nodes.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use testkit::api::{add, api, view, wait_state};
use testkit::*;

mod h264_common;

use h264_common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Demuxing costs next to nothing: the converter's share of a core over
/// three seconds once steady (the node's figure is per second, so the
/// first reading includes ffmpeg's start and is left out), under 5%.
fn assert_copying_is_cheap(node: &Node, camera: &str) {
    let cpu = || view(node, camera)["converter"]["cpu_percent"].as_f64();
    wait_for("a CPU reading of the converter", SECS(20), cpu);
    let mut readings = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(SECS(1)); // the measuring window, one reading a second
        readings.extend(cpu());
    }
    let mean = readings.iter().sum::<f64>() / readings.len().max(1) as f64;
    assert!(
        !readings.is_empty() && mean < 5.0,
        "{camera}: the copying ffmpeg used {mean:.1}% of a core ({readings:?})"
    );
}

/// ffprobe of `target`'s first video stream: codec, profile and size.
fn stream_probe(target: &std::ffi::OsStr) -> Command {
    let mut ffprobe = Command::new("ffprobe");
    ffprobe
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,profile,width,height"])
        .args(["-of", "csv=p=0"])
        .arg(target);
    ffprobe
}

/// What ffmpeg says at level error while decoding 3 s of an RTSP stream
/// to raw pictures (nothing, for a stream that decodes).
fn decode_errors(url: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-rtsp_transport", "tcp", "-i", url])
        .args([
            "-t",
            "3",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-y",
            "/dev/null",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An IP camera as most are: x264's High profile over RTSP, here a node
/// whose `cmd:` source is ffmpeg encoding a test pattern.
const IP_CAMERA: &str = "cmd:ffmpeg -hide_banner -loglevel error -re -f lavfi \
    -i testsrc2=size=640x360:rate=15 -c:v libx264 -preset veryfast -tune zerolatency \
    -g 15 -bf 0 -pix_fmt yuv420p -f h264 -";

#[test]
fn an_ip_cameras_rtsp_h264_is_copied_and_converted_by_libx264_only_for_another_size() {
    require("ffprobe", "ffmpeg");
    let broker = Broker::start();
    let camera = Node::start(&node_args(&broker.url(), "ip-camera", IP_CAMERA));
    camera.wait_log("first frame", SECS(30));
    let url = format!("{}/cam0", camera.rtsp_base());
    let published = probe_stream(&url);
    assert_eq!(published, "h264,High,640,360", "the IP camera's stream");

    let nvr = Node::start(&node_args(&broker.url(), "nvr", "test"));
    nvr.wait_log("first frame", SECS(20));
    add(&nvr, json!({"id": "door", "source": url}));
    add(
        &nvr,
        json!({"id": "door-small", "source": url, "codec": "h264", "width": 320, "height": 180}),
    );
    let copied = wait_state(&nvr, "door", &["running"], SECS(30));
    let input = |v: &serde_json::Value| v["input"].as_str().unwrap_or_default().to_owned();
    assert!(input(&copied).contains("copied (H.264"), "{copied}");
    let converted = wait_state(&nvr, "door-small", &["running"], SECS(30));
    assert!(
        input(&converted).contains("converted to H.264"),
        "{converted}"
    );

    // Copied: the camera's own stream, served on; decodes.
    let door = format!("{}/door", nvr.rtsp_base());
    assert_eq!(probe_stream(&door), published);
    assert_eq!(decode_errors(&door), "", "the copied stream");
    assert_copying_is_cheap(&nvr, "door");
    // Converted: H.264 at the size asked for, with no B-frames; decodes.
    let small = format!("{}/door-small", nvr.rtsp_base());
    let probed = probe(&small, "codec_name,width,height,has_b_frames");
    assert_eq!(probed.trim(), "h264,320,180,0", "the converted stream");
    assert_eq!(decode_errors(&small), "", "the converted stream");
    assert!(!nvr.log().contains("B-frames"), "{}", nvr.log());
}

#[test]
fn an_rtmp_drone_is_copied_not_converted_and_pushed_on_as_it_came() {
    use testkit::rtmp::{drone_at, stop, Nginx};
    require("ffprobe", "ffmpeg");
    let broker = Broker::start();
    let nginx = Nginx::start(false);
    let url = format!("rtmp://127.0.0.1:{}/live/d1", nginx.port);
    // A drone's 720p30 at 3 Mbit/s, as the figures are taken.
    let publisher = drone_at(&url, "1280x720", 30, Some("3M"));
    let published = wait_for("the drone's stream on the RTMP server", SECS(20), || {
        let out = stream_probe(url.as_ref()).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!text.is_empty()).then_some(text)
    });
    let node = Node::start(&node_args(&broker.url(), "drone-node", "test"));
    node.wait_log("first frame", SECS(20));
    add(&node, json!({"id": "drone", "source": url}));
    let state = wait_state(&node, "drone", &["running"], SECS(30));
    assert!(
        state["input"]
            .as_str()
            .unwrap_or_default()
            .contains("copied (H.264"),
        "{state}"
    );
    // The node serves the publisher's own stream: same codec, profile, size.
    assert_eq!(
        probe_stream(&format!("{}/drone", node.rtsp_base())),
        published
    );
    assert_copying_is_cheap(&node, "drone");

    // Pushed on to an RTSP server as it came: ffmpeg listening, H.264 received.
    let port = free_port();
    let dir = TempDir::new("push");
    let received = dir.path("received.mkv");
    let server = Command::new("ffmpeg")
        .args(words(
            "-hide_banner -loglevel error -rtsp_flags listen -rtsp_transport tcp -i",
        ))
        .arg(format!("rtsp://127.0.0.1:{port}/x"))
        .args(words("-t 3 -c copy -y"))
        .arg(&received)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let want = format!(":{port:04X} 00000000:0000 0A");
    wait_for("the RTSP server listening", SECS(10), || {
        std::fs::read_to_string("/proc/net/tcp")
            .ok()?
            .contains(&want)
            .then_some(())
    });
    let reply = api(
        &node,
        "POST",
        "/api/v1/cameras/drone/pushes",
        Some(json!({"url": format!("rtsp://127.0.0.1:{port}/x")})),
        None,
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let out = server.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the receiving ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = run_ok(&mut stream_probe(received.as_ref()));
    assert_eq!(
        got.trim(),
        published,
        "the server received the drone's H.264"
    );
    // Decoded to raw pictures: a muxer without timestamps (the null muxer
    // rounds times to frame slots, and a copied stream's pictures are
    // stamped when the node reads them, with the input's jitter).
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&received)
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-y", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        decoded.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    stop(publisher);
}

#[test]
fn a_usb_webcams_own_h264_and_mjpeg_are_copied_and_raw_pictures_converted() {
    require("ffprobe", "ffmpeg");
    let bin = TempDir::new("webcam");
    let reads = testkit::webcam::fake_webcam_ffmpeg(&bin);
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let broker = Broker::start();
    let node = Node::start_with_env(
        &node_args(&broker.url(), "desk-node", "test"),
        &[("PATH", &path)],
    );
    node.wait_log("first frame", SECS(20));
    let input = |v: &serde_json::Value| v["input"].as_str().unwrap_or_default().to_owned();
    // The newest read of one device (a restart of another may come after).
    let last_read = |device: &str| {
        let log = std::fs::read_to_string(&reads).unwrap_or_default();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains(&format!(" {device} ")));
        line.unwrap_or_default().to_owned()
    };

    // A camera added on `device`, running as `input` says: the arguments
    // of its newest read.
    let add_device = |camera: serde_json::Value, device: &str, says: &str| {
        add(&node, camera.clone());
        let state = wait_state(
            &node,
            camera["id"].as_str().unwrap(),
            &["running"],
            SECS(30),
        );
        assert!(input(&state).contains(says), "{state}");
        last_read(device)
    };

    // A webcam that encodes H.264 itself: read as H.264 and copied.
    let read = add_device(
        json!({"id": "desk", "source": "/dev/video0", "width": 640, "height": 480, "fps": 15}),
        "/dev/video0",
        "v4l2 input copied (H.264",
    );
    assert!(
        read.contains("-input_format h264") && read.contains("-c:v copy"),
        "{read}"
    );
    let desk = format!("{}/desk", node.rtsp_base());
    assert_eq!(
        probe(&desk, "codec_name,width,height").trim(),
        "h264,640,480"
    );
    assert_eq!(decode_errors(&desk), "", "the webcam's H.264");

    // MJPEG asked for: the webcam's own MJPEG, copied.
    let reply = api(
        &node,
        "PATCH",
        "/api/v1/cameras/desk",
        Some(json!({"codec": "mjpeg"})),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let state = wait_for("the webcam read as MJPEG", SECS(30), || {
        let v = view(&node, "desk");
        (v["state"] == "running" && input(&v).contains("copied (already MJPEG")).then_some(v)
    });
    let read = last_read("/dev/video0");
    assert!(
        read.contains("-input_format mjpeg") && read.contains("-c:v copy"),
        "{read} {state}"
    );
    assert_eq!(
        probe(&desk, "codec_name,width,height").trim(),
        "mjpeg,640,480"
    );

    // A webcam of raw pictures only: converted, as before.
    let read = add_device(
        json!({"id": "old", "source": "/dev/video1", "width": 320, "height": 240}),
        "/dev/video1",
        "v4l2 input converted to MJPEG",
    );
    assert!(
        !read.contains("-input_format") && read.contains("-c:v mjpeg"),
        "{read}"
    );
    assert_eq!(
        probe(
            &format!("{}/old", node.rtsp_base()),
            "codec_name,width,height"
        )
        .trim(),
        "mjpeg,320,240",
        "the raw pictures scaled to the size asked for"
    );
}

#[test]
fn an_h264_file_is_replayed_in_a_loop_as_h264_and_decodes_across_the_loop() {
    require("ffmpeg", "ffmpeg");
    let dir = TempDir::new("h264-file");
    let clip = dir.path("clip.h264");
    // Two seconds at 10 fps.
    x264_clip(&clip, "320x240", 10, 20);
    let broker = Broker::start();
    let source = format!("file:{}", clip.display());
    let url = broker.url();
    let node = Node::start(&camera_args(&url, "pi-hfile", &source, "320x240"));
    node.wait_log("(H.264) at 10 fps", Duration::from_secs(20));
    let info = wait_for("NodeInfo saying h264", Duration::from_secs(20), || {
        let info = broker.node_info("pi-hfile");
        (info.cameras[0].codec == "h264").then_some(info)
    });
    assert_eq!((info.cameras[0].width, info.cameras[0].height), (320, 240));
    // Five seconds of it: the file's end twice, every picture decodes.
    let rtsp = format!("{}/cam0", node.rtsp_base());
    assert_eq!(rtsp_decode(&rtsp, "tcp", 50), 50 * 320 * 240);
    // The splitter's warnings name the file: none at the loop's seam.
    let warned = format!("{}: ", clip.display());
    assert!(
        !node.log().contains(&warned),
        "the loop dropped pictures: {}",
        node.log()
    );
}
