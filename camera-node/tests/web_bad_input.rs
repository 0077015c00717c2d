//! Bad input and bad clients on RTSP and HTTP: malformed and oversized
//! requests, unknown paths, unsupported transports, silent and stalled
//! clients, a camera RTP/JPEG cannot carry. Each gets a 4xx answer or a
//! closed connection; the node keeps serving everyone else.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A request line, its headers and the status it must get.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);

fn ffmpeg_node(broker: &Broker, node_id: &str, source: &str, size: &str) -> Node {
    let (w, h) = size.split_once('x').unwrap();
    let node = Node::start(
        &[
            node_args(&broker.url(), node_id, source),
            vec!["--width", w, "--height", h, "--fps", "30"],
        ]
        .concat(),
    );
    node.wait_log("first frame", SECS(20));
    node
}

/// Sends raw bytes on a fresh connection and returns the reply (if any)
/// and whether the server closed the connection afterwards.
fn raw_exchange(base: &str, bytes: &[u8]) -> (Option<RtspReply>, bool) {
    let mut client = RtspClient::connect(base);
    client.send_raw(bytes);
    let reply = client.reply(SECS(10));
    let closed = client.closed_within(SECS(3));
    (reply, closed)
}

#[test]
fn malformed_requests_get_4xx_or_a_closed_connection_and_viewers_keep_their_frames() {
    let broker = Broker::start();
    let node = ffmpeg_node(&broker, "bad-rtsp", &ffmpeg_camera(320, 240, 30), "320x240");
    let base = node.rtsp_base();
    let url = format!("{base}/cam0");
    let mut viewer = FrameClient::connect(node.tcp_port("cam0"));
    let silent = TcpStream::connect(base.trim_start_matches("rtsp://")).unwrap();

    let (reply, closed) = raw_exchange(&base, b"\x00\x01\x02GARBAGE \xff\xfe\r\n\r\n");
    assert_eq!(reply.map(|r| r.status), Some(400));
    assert!(closed, "garbage closes the connection");

    let mut huge = b"DESCRIBE rtsp://127.0.0.1/".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1 << 20));
    let mut client = RtspClient::connect(&base);
    let mut stream = TcpStream::connect(base.trim_start_matches("rtsp://")).unwrap();
    let _ = stream.write_all(&huge); // the server may close before it is all sent
    let mut reply = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut reply);
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("RTSP/1.0 413"), "{text}");

    let cases: [Case; 7] = [
        ("DESCRIBE rtsp://127.0.0.1/nope", &[], 404),
        ("DESCRIBE {url}/trackID=7", &[], 404),
        (
            "SETUP {url}/trackID=0",
            &[("Transport", "RTP/AVP;multicast;port=5000-5001")],
            461,
        ),
        (
            "SETUP {url}/trackID=0",
            &[("Transport", "RTP/SAVP/TCP;unicast;interleaved=0-1")],
            461,
        ),
        ("SETUP {url}/trackID=0", &[], 461),
        ("PLAY {url}", &[("Session", "DEADBEEF")], 454),
        ("RECORD {url}", &[], 501),
    ];
    for (line, headers, want) in cases {
        let line = line.replace("{url}", &url);
        let (method, target) = line.split_once(' ').unwrap();
        let reply = client.request(method, target, headers);
        assert_eq!(reply.status, want, "{line} {headers:?}: {reply:?}");
    }
    let (reply, _) = raw_exchange(
        &base,
        format!("OPTIONS {url} RTSP/2.0\r\nCSeq: 1\r\n\r\n").as_bytes(),
    );
    assert_eq!(reply.map(|r| r.status), Some(505));
    for seed in 0..20u64 {
        // Pseudo-random bytes, a different run each time but reproducible.
        let noise: Vec<u8> = (0..4096u64)
            .map(|i| ((i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
            .collect();
        let mut s = TcpStream::connect(base.trim_start_matches("rtsp://")).unwrap();
        let _ = s.write_all(&noise);
    }

    // Everyone else is still served.
    let seq = viewer.next().seq;
    assert!(viewer.next().seq > seq);
    assert_eq!(
        rtsp_decode(&url, "tcp", 5),
        5 * 320 * 240,
        "ffmpeg still plays RTSP"
    );
    assert!(is_alive(node.pid()));
    assert!(!node.log().contains("panicked"));
    drop(silent);
}

#[test]
fn a_camera_rtp_jpeg_cannot_carry_is_refused_clearly_and_still_served_elsewhere() {
    require("ffprobe", "ffmpeg");
    let broker = Broker::start();
    // ffmpeg's own default: Huffman tables optimised per frame.
    let source = "cmd:exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=15 -f mjpeg -q:v 5 -";
    let node = ffmpeg_node(&broker, "huff-test", source, "320x240");
    let base = node.rtsp_base();
    let mut client = RtspClient::connect(&base);
    for _ in 0..3 {
        let reply = client.request("DESCRIBE", &format!("{base}/cam0"), &[]);
        assert_eq!(reply.status, 415, "{reply:?}");
        let why = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(why.contains("Huffman"), "{why}");
    }
    let probe = Command::new("ffprobe")
        .args(["-v", "error", &format!("{base}/cam0")])
        .output()
        .unwrap();
    assert!(!probe.status.success());
    let log = node.log();
    assert_eq!(
        log.matches("RTSP cannot carry this camera").count(),
        1,
        "one clear line:\n{log}"
    );
    assert!(log.contains("non-standard Huffman tables"));

    let snapshot = curl(&[&format!("{}/cameras/cam0/snapshot.jpg", node.http_base())]);
    assert_eq!(snapshot.status, 200);
    assert_eq!(jpeg_size(&snapshot.body), (320, 240));
    let mut viewer = FrameClient::connect(node.tcp_port("cam0"));
    assert_eq!(jpeg_size(&viewer.next().jpeg), (320, 240));
}

#[test]
fn stalled_rtsp_and_http_clients_only_slow_themselves() {
    let broker = Broker::start();
    let node = ffmpeg_node(
        &broker,
        "slow-test",
        &ffmpeg_camera(640, 480, 30),
        "640x480",
    );
    let (rtsp, http) = (node.rtsp_base(), node.http_base());
    let url = format!("{rtsp}/cam0");
    let mut stalled_rtsp = Vec::new();
    for _ in 0..4 {
        let mut c = RtspClient::connect(&rtsp);
        let setup = c.request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        );
        let session = setup.session();
        assert_eq!(
            c.request("PLAY", &url, &[("Session", &session)]).status,
            200
        );
        stalled_rtsp.push(c); // never read again
    }
    let stalled_http: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(http.trim_start_matches("http://")).unwrap();
            write!(
                s,
                "GET /cameras/cam0/stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    let rss_before = node.rss_kib();
    let mut viewer = FrameClient::connect(node.tcp_port("cam0"));
    let first = viewer.next().seq;
    let mut last = first;
    for _ in 0..150 {
        last = viewer.next().seq;
    }
    let missed = (last - first) - 150;
    assert!(
        missed <= 15,
        "the reading viewer missed {missed} of {} frames",
        last - first
    );
    assert_eq!(
        rtsp_decode(&url, "tcp", 30),
        30 * 640 * 480,
        "a reading RTSP client plays"
    );
    let grown = node.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 8 * 1024,
        "RSS grew {grown} KiB with stalled clients"
    );
    let metrics = curl(&[&format!("{http}/metrics")]).text();
    assert!(
        metrics.contains("camfleet_viewers{camera=\"cam0\",protocol=\"http\"} 4"),
        "{metrics}"
    );
    drop((stalled_rtsp, stalled_http));
}
