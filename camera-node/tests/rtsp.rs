//! The node's RTSP server as players meet it: ffprobe, ffmpeg (TCP and
//! UDP) and GStreamer play both kinds of camera (ffmpeg's JPEGs, and the
//! test pattern's with restart markers); a raw client checks the protocol
//! details players rely on (RTP-Info, PAUSE, TEARDOWN, timeouts).

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use camera_node::rtp::depacketise::Depacketiser;
use testkit::gst::{assert_gstreamer_decoded, gstreamer_gray, Depay};
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A node with two cameras: ffmpeg's picture at 320x240 (no restart
/// markers) and the test pattern at 352x288 (restart markers).
fn two_camera_node(broker: &Broker, extra_config: &str) -> (Node, TempDir) {
    let dir = TempDir::new("rtsp");
    let config = dir.path("node.toml");
    write(
        &config,
        &format!(
            "{extra_config}\n[[camera]]\nid = 'cam0'\nsource = '{}'\nwidth = 320\nheight = 240\nfps = 15\n\n\
             [[camera]]\nid = 'pattern'\nsource = 'test'\nwidth = 352\nheight = 288\nfps = 15\n",
            ffmpeg_camera(320, 240, 15)
        ),
    );
    let url = broker.url();
    let args = [
        vec!["--config", config.to_str().unwrap()],
        node_base_args(&url, "rtsp-test"),
    ];
    let node = Node::start(&args.concat());
    // Both cameras: a DESCRIBE waits 5 s at most for its camera's first
    // frame, and ffmpeg starts slower than the test pattern on a busy
    // machine.
    wait_for(
        "both cameras' first frame in the node log",
        SECS(30),
        || (node.log().matches("first frame from").count() >= 2).then_some(()),
    );
    (node, dir)
}

#[test]
fn ffprobe_ffmpeg_over_tcp_and_udp_decode_both_cameras_at_their_size() {
    require("ffprobe", "ffmpeg");
    let broker = Broker::start();
    let (node, _dir) = two_camera_node(&broker, "");
    let base = node.rtsp_base();
    let info = broker.node_info("rtsp-test");
    for (camera, w, h) in [("cam0", 320, 240), ("pattern", 352, 288)] {
        let url = format!("{base}/{camera}");
        let advertised = info.cameras.iter().find(|c| c.id == camera).unwrap();
        assert_eq!(
            advertised.rtsp.as_deref(),
            Some(url.as_str()),
            "NodeInfo advertises the RTSP URL"
        );

        let probe = run_ok(Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            &url,
        ]));
        assert_eq!(probe.trim(), format!("mjpeg,{w},{h}"), "{camera}");
        for transport in ["tcp", "udp"] {
            let bytes = rtsp_decode(&url, transport, 10);
            assert_eq!(
                bytes,
                10 * w * h,
                "{camera} over {transport}: 10 frames of {w}x{h}"
            );
        }
    }
    assert!(!node.log().contains("panicked"));
}

#[test]
fn gstreamer_rtspsrc_plays_both_cameras_over_tcp_and_udp() {
    let broker = Broker::start();
    let (node, _dir) = two_camera_node(&broker, "");
    let base = node.rtsp_base();
    for (camera, w, h) in [("cam0", 320, 240), ("pattern", 352, 288)] {
        for protocols in ["tcp", "udp"] {
            let out = gstreamer_gray(&format!("{base}/{camera}"), protocols, Depay::Jpeg, 16);
            let what = format!("{camera} over {protocols}");
            assert_gstreamer_decoded(&out, &what, Depay::Jpeg, 15, w * h);
        }
    }
}

#[test]
fn play_pause_play_and_teardown_as_a_player_sees_them() {
    let broker = Broker::start();
    let (node, _dir) = two_camera_node(&broker, "");
    let base = node.rtsp_base();
    let url = format!("{base}/pattern");
    let mut client = RtspClient::connect(&base);

    let options = client.request("OPTIONS", &url, &[]);
    assert_eq!(options.status, 200);
    let public = options.header("Public").unwrap();
    for method in [
        "DESCRIBE",
        "SETUP",
        "PLAY",
        "PAUSE",
        "TEARDOWN",
        "GET_PARAMETER",
    ] {
        assert!(public.contains(method), "Public: {public}");
    }

    let describe = client.request("DESCRIBE", &url, &[("Accept", "application/sdp")]);
    assert_eq!(describe.status, 200);
    assert_eq!(
        describe.header("Content-Base"),
        Some(format!("{url}/").as_str())
    );
    let sdp = String::from_utf8(describe.body.clone()).unwrap();
    for line in [
        "m=video 0 RTP/AVP 26",
        "a=rtpmap:26 JPEG/90000",
        "a=control:trackID=0",
        "a=framerate:15",
    ] {
        assert!(sdp.contains(line), "{line} in {sdp}");
    }

    let track = format!("{url}/trackID=0");
    let setup = client.request(
        "SETUP",
        &track,
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(setup.status, 200, "{setup:?}");
    assert!(setup
        .header("Transport")
        .unwrap()
        .contains("interleaved=0-1"));
    let session = setup.session();
    assert!(setup.header("Session").unwrap().contains("timeout=60"));

    let play = client.request(
        "PLAY",
        &format!("{url}/"),
        &[("Session", &session), ("Range", "npt=0.000-")],
    );
    assert_eq!(play.status, 200, "{play:?}");
    let (seq, rtptime) = rtp_info(&play);
    let (channel, first) = client.packet(SECS(10)).expect("RTP after PLAY");
    assert_eq!(channel, 0);
    assert_eq!(
        u16::from_be_bytes([first[2], first[3]]),
        seq,
        "RTP-Info seq is the first packet's"
    );
    assert_eq!(
        u32::from_be_bytes([first[4], first[5], first[6], first[7]]),
        rtptime,
        "RTP-Info rtptime too"
    );

    // Whole frames come back out of the packets and decode at the camera's size.
    let mut depacketiser = Depacketiser::default();
    let mut frames = Vec::new();
    let mut packet = Some((channel, first));
    while frames.len() < 5 {
        let (channel, data) = packet
            .take()
            .or_else(|| client.packet(SECS(10)))
            .expect("more RTP");
        if channel != 0 {
            assert_eq!(data[1], 200, "RTCP on channel 1 is a sender report");
            continue;
        }
        assert!(data.len() <= 1400, "packets of at most 1400 bytes");
        if let Some(frame) = depacketiser.push(&data).unwrap() {
            frames.push(frame);
        }
    }
    for frame in &frames {
        let decoded = image::load_from_memory(&frame.to_jpeg()).expect("a JPEG");
        assert_eq!((decoded.width(), decoded.height()), (352, 288));
        assert_eq!(frame.kind, 65, "4:2:0 with restart markers");
    }
    let gap = frames[4].timestamp.wrapping_sub(frames[3].timestamp);
    assert!(
        (3_000..=12_000).contains(&gap),
        "90 kHz timestamps ~1/15 s apart: {gap}"
    );

    // Receiver reports over the interleaved channel are accepted.
    let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 1];
    let mut framed = vec![b'$', 1, 0, rr.len() as u8];
    framed.extend_from_slice(&rr);
    client.send_raw(&framed);
    assert_eq!(
        client
            .request("GET_PARAMETER", &url, &[("Session", &session)])
            .status,
        200
    );

    let pause = client.request("PAUSE", &url, &[("Session", &session)]);
    assert_eq!(pause.status, 200);
    client.packets.clear();
    assert!(
        client.packet(Duration::from_millis(800)).is_none(),
        "no RTP while paused"
    );

    let play = client.request("PLAY", &url, &[("Session", &session)]);
    assert_eq!(play.status, 200);
    let (seq, _) = rtp_info(&play);
    let (_, data) = client.packet(SECS(10)).expect("RTP after the second PLAY");
    assert_eq!(u16::from_be_bytes([data[2], data[3]]), seq);
    let metrics = curl(&[&format!("{}/metrics", node.http_base())]).text();
    assert!(
        metrics.contains("camfleet_viewers{camera=\"pattern\",protocol=\"rtsp\"} 1"),
        "{metrics}"
    );

    let teardown = client.request("TEARDOWN", &url, &[("Session", &session)]);
    assert_eq!(teardown.status, 200);
    client.packets.clear();
    assert!(
        client.packet(Duration::from_millis(800)).is_none(),
        "no RTP after TEARDOWN"
    );
    assert_eq!(
        client
            .request("PLAY", &url, &[("Session", &session)])
            .status,
        454,
        "the session is gone"
    );
    let metrics = curl(&[&format!("{}/metrics", node.http_base())]).text();
    assert!(
        metrics.contains("camfleet_viewers{camera=\"pattern\",protocol=\"rtsp\"} 0"),
        "{metrics}"
    );
}

fn rtp_info(play: &RtspReply) -> (u16, u32) {
    let info = play.header("RTP-Info").expect("RTP-Info");
    let field = |name: &str| {
        info.split(';')
            .find_map(|f| f.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {info}"))
            .to_owned()
    };
    assert!(field("url=").ends_with("/trackID=0"), "{info}");
    (
        field("seq=").parse().unwrap(),
        field("rtptime=").parse().unwrap(),
    )
}

#[test]
fn a_udp_session_without_keepalive_times_out() {
    let broker = Broker::start();
    let (node, _dir) = two_camera_node(&broker, "rtsp_session_timeout_seconds = 2");
    let base = node.rtsp_base();
    let url = format!("{base}/cam0");
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_read_timeout(Some(SECS(5))).unwrap();
    let port = rtp.local_addr().unwrap().port();
    let mut client = RtspClient::connect(&base);
    let transport = format!("RTP/AVP;unicast;client_port={port}-{}", port + 1);
    let setup = client.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", &transport)],
    );
    assert_eq!(setup.status, 200, "{setup:?}");
    assert!(setup.header("Transport").unwrap().contains("server_port="));
    let session = setup.session();
    assert_eq!(
        client
            .request("PLAY", &url, &[("Session", &session)])
            .status,
        200
    );
    let mut buf = [0u8; 2048];
    let (n, _) = rtp.recv_from(&mut buf).expect("RTP over UDP");
    assert!(n > 12 && buf[1] & 0x7f == 26, "payload type 26");
    drop(client); // the connection goes; the UDP session lives on until its timeout

    node.wait_log("RTSP session timed out", SECS(15));
    rtp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while rtp.recv_from(&mut buf).is_ok() {} // what was in flight
    assert!(rtp.recv_from(&mut buf).is_err(), "no RTP after the timeout");
}
