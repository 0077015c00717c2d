#![allow(dead_code)] // each test file uses some of these
//! What the node's H.264 tests share: a node on the rpicam-vid stand-in
//! in H.264, a TCP frame stream read raw, an Annex B stream decoded by
//! ffmpeg.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shared::frame::{Frame, FrameDecoder};
use testkit::*;
use tokio_util::codec::Decoder;

/// An Annex B stream decoded by ffmpeg to grey raw pictures; the test
/// fails when ffmpeg reports any error.
pub fn decode_annex_b(annex_b: Vec<u8>) -> Vec<u8> {
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i", "-"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = ffmpeg.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&annex_b).unwrap());
    let out = ffmpeg.wait_with_output().unwrap();
    feeder.join().unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.is_empty(),
        "ffmpeg: {errors}"
    );
    out.stdout
}

/// Reads a TCP frame stream for `limit` (or `count` frames).
pub fn read_frames(
    port: u16,
    count: usize,
    limit: Duration,
) -> (Vec<u8>, Vec<Frame>, FrameDecoder) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = [0u8; 11];
    stream.read_exact(&mut hello).unwrap();
    let mut buf = BytesMut::from(&hello[..]);
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let deadline = Instant::now() + limit;
    let mut chunk = vec![0u8; 64 * 1024];
    while frames.len() < count && Instant::now() < deadline {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the node closed the stream");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
    }
    (hello.to_vec(), frames, decoder)
}

/// A node on the rpicam-vid stand-in for H.264.
pub fn node_on_fake_h264_camera(broker: &Broker, pi5: bool, extra: &[&str]) -> (Node, TempDir) {
    let bin = TempDir::new("fakecam");
    fake_h264_camera_script(&bin, "rpicam-vid");
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let url = broker.url();
    let args = [
        node_args(&url, "pi-h264", "rpicam"),
        words("--codec h264 --width 640 --height 480 --fps 15 --keyframe-seconds 2"),
        extra.to_vec(),
    ]
    .concat();
    let pi5 = if pi5 { "1" } else { "0" };
    let node = Node::start_with_env(&args, &[("PATH", &path), ("FAKE_PI5", pi5)]);
    node.wait_log("first frame", Duration::from_secs(30));
    (node, bin)
}

/// ffprobe's `entries` of a URL's first video stream (RTSP over TCP).
pub fn probe(url: &str, entries: &str) -> String {
    run_ok(
        Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", "tcp"])
            .args([
                "-select_streams",
                "v:0",
                "-show_entries",
                &format!("stream={entries}"),
                "-of",
                "csv=p=0",
                url,
            ]),
    )
}

/// What ffprobe says of a URL's first video stream: codec, profile, size.
pub fn probe_stream(url: &str) -> String {
    probe(url, "codec_name,profile,width,height")
        .trim()
        .to_owned()
}

/// An H.264 clip from `ffmpeg` (x264 as a Pi's encoder is set: no
/// B-frames, a keyframe a second with its parameter sets before it, as
/// `rpicam-vid --inline -o clip.h264` writes), `frames` at `size`.
pub fn x264_clip(path: &std::path::Path, size: &str, fps: u32, frames: u32) {
    run_ok(
        Command::new("ffmpeg")
            .args(words("-hide_banner -loglevel error -y -f lavfi -i"))
            .arg(format!("testsrc2=size={size}:rate={fps}"))
            .args(["-frames:v", &frames.to_string()])
            .args(words("-c:v libx264 -preset ultrafast -bf 0"))
            .args(["-g", &fps.to_string()])
            .args(words("-x264-params repeat-headers=1 -f h264"))
            .arg(path),
    );
}
