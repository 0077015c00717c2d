//! An H.264 camera whose stream breaks or changes size: damage between
//! and inside NAL units is logged and recovered from, and a new size
//! reaches v2 readers as a new codec configuration. Real nodes, ffmpeg as
//! the camera and the decoder.

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::*;

mod h264_common;

use h264_common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A node whose camera runs the shell command `first`, then x264 live at
/// 640x480 15 fps.
fn node_then_x264(id: &str, first: &str) -> (Broker, Node) {
    let source = format!(
        "cmd:{first}; exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=640x480:rate=15 \
         -c:v libx264 -preset ultrafast -tune zerolatency -bf 0 -g 15 -x264-params repeat-headers=1 -f h264 -"
    );
    let broker = Broker::start();
    let broker_url = broker.url();
    let mut args = node_base_args(&broker_url, id);
    args.extend(["--source", &source]);
    let node = Node::start(&args);
    (broker, node)
}

/// A damaged H.264 camera: a stream cut off inside a NAL unit, a unit
/// with the forbidden bit, an SPS of absurd size, a slice of random bytes between start codes, a
/// unit over the 16 MiB cap, then the stream at another size. Each is
/// logged, the camera is not restarted, memory stays bounded and the
/// stream after them decodes at its new size.
#[test]
fn a_damaged_h264_stream_is_logged_and_recovered_and_its_new_size_followed() {
    require("ffmpeg", "ffmpeg");
    let dir = TempDir::new("damaged-h264");
    let (small, large) = (dir.path("small.h264"), dir.path("large.h264"));
    x264_clip(&small, "320x240", 15, 45);
    x264_clip(&large, "640x480", 15, 15);
    let small = std::fs::read(&small).unwrap();
    let mut bad = small[..small.len() / 2].to_vec(); // ends inside a NAL unit
    bad.extend_from_slice(&[0, 0, 0, 1, 0x80, 1, 2, 3]); // forbidden bit
                                                         // A baseline SPS 65536 macroblocks wide (as shared::h264's unit test
                                                         // builds it): refused, the stream's own SPS kept.
    bad.extend_from_slice(&[
        0, 0, 0, 1, 0x67, 0x42, 0x00, 0x1e, 0xda, 0x00, 0x00, 0xff, 0xff, 0xe4, 0x80,
    ]);
    bad.extend_from_slice(&[0, 0, 0, 1, 0x41]); // a P slice of noise
    let mut noise = 0x1234_5678u32;
    bad.extend((0..2000).map(|_| {
        noise ^= noise << 13;
        noise ^= noise >> 17;
        noise ^= noise << 5;
        (noise as u8) | 1 // no zero bytes: no start code inside
    }));
    bad.extend_from_slice(&[0, 0, 0, 1, 0x41]); // over the cap
    bad.extend(std::iter::repeat_n(0x11u8, 17 * 1024 * 1024));
    bad.extend(std::fs::read(&large).unwrap());
    std::fs::write(dir.path("bad.h264"), &bad).unwrap();
    let cat = format!("cat '{}'", dir.path("bad.h264").display());
    let (_broker, node) = node_then_x264("pi-damaged", &cat);
    node.wait_log("not a NAL unit", SECS(20));
    node.wait_log("pixel limit", SECS(20));
    node.wait_log("over the 16777216 byte cap", SECS(20));
    node.wait_log("H.264 640x480", SECS(20));
    let url = format!("{}/cam0", node.rtsp_base());
    assert_eq!(
        probe(&url, "codec_name,width,height").trim(),
        "h264,640,480"
    );
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-rtsp_transport", "tcp", "-i", &url])
        .args(["-t", "2", "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(decoded.status.success(), "{decoded:?}");
    assert_eq!(
        String::from_utf8_lossy(&decoded.stderr),
        "",
        "after the damage"
    );
    let log = node.log();
    assert!(
        !log.contains("restarting in"),
        "damage must not restart the camera:\n{log}"
    );
    let peak = node.status_kib("VmHWM:");
    assert!(
        peak < 160 * 1024,
        "the node peaked at {peak} KiB for a 17 MiB unit"
    );
}

/// A camera that changes size mid-stream: a v2 reader gets a new codec
/// configuration before the first keyframe at the new size (its decoder
/// follows), and the stream it read decodes as one.
#[test]
fn a_v2_reader_gets_a_new_configuration_when_the_camera_changes_size() {
    require("ffmpeg", "ffmpeg");
    let dir = TempDir::new("resize-h264");
    let small = dir.path("small.h264");
    x264_clip(&small, "320x240", 15, 90); // 6 s: the reader is on before the change
    let replay = format!(
        "ffmpeg -hide_banner -loglevel error -re -framerate 15 -f h264 -i '{}' -c copy -f h264 -",
        small.display()
    );
    let (_broker, node) = node_then_x264("pi-resize", &replay);
    node.wait_log("first frame", SECS(20));
    let (_, frames, decoder) = read_frames(node.tcp_port("cam0"), 120, SECS(20));
    let width = |f: &shared::frame::Frame| {
        shared::h264::Params::of_keyframe(&f.data).map_or(0, |p| p.info.width)
    };
    let widths: Vec<u32> = frames.iter().filter(|f| f.key).map(width).collect();
    assert_eq!(widths.first(), Some(&320), "{widths:?}");
    assert_eq!(widths.last(), Some(&640), "{widths:?}");
    let config = decoder.params().expect("a codec configuration");
    assert_eq!(
        (config.info.width, config.info.height),
        (640, 480),
        "the configuration followed the camera"
    );
    let mut annex_b = Vec::new();
    for f in &frames {
        shared::h264::to_annex_b(&f.data, &mut annex_b);
    }
    decode_annex_b(annex_b);
}
