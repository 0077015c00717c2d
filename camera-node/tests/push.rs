//! A camera pushed on to an RTSP server (ANNOUNCE, SETUP mode=record over
//! TCP, RECORD): ffmpeg listening as the server, and a bare server in the
//! test that reads the RTCP sender reports the push sends. GStreamer's
//! RTSP server behind a password: push_gst.rs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use testkit::api::*;
use testkit::*;

mod push_common;
use push_common::*;

/// ffmpeg as the receiving server: `-rtsp_flags listen`, frames copied
/// into an MJPEG file, for `seconds` of stream.
fn ffmpeg_server(port: u16, out: &Path, seconds: u32) -> Child {
    require("ffmpeg", "ffmpeg");
    Command::new("ffmpeg")
        .args(words(
            "-hide_banner -loglevel error -rtsp_flags listen -rtsp_transport tcp -i",
        ))
        .arg(format!("rtsp://127.0.0.1:{port}/x"))
        .args(["-t", &seconds.to_string()])
        .args(words("-c copy -f mjpeg -y"))
        .arg(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("start ffmpeg")
}

/// Waits until `server` listens on `port`, read from /proc/net/tcp: a
/// test connection would be the one connection `-rtsp_flags listen` takes.
/// A server that exits first (its port taken meanwhile) says so.
fn wait_listening(server: &mut Child, port: u16) {
    let want = format!(":{port:04X} 00000000:0000 0A");
    wait_for(
        &format!("ffmpeg listening on port {port}"),
        Duration::from_secs(10),
        || {
            if let Some(status) = server.try_wait().unwrap() {
                panic!("the ffmpeg server exited before listening on {port}: {status}");
            }
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
            table.contains(&want).then_some(())
        },
    );
}

/// JPEG frames in an MJPEG file, as ffprobe counts its packets.
fn frames_in(file: &Path) -> u64 {
    require("ffprobe", "ffmpeg");
    let out = Command::new("ffprobe")
        .args(words("-v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0"))
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "ffprobe {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[test]
fn a_push_to_an_ffmpeg_server_delivers_its_frames_and_reconnects() {
    let broker = Broker::start();
    let node = camera_node(&broker, "push-ff");
    let dir = TempDir::new("push");
    let port = free_port();
    let first = dir.path("first.mjpeg");
    let mut server = ffmpeg_server(port, &first, 6);
    wait_listening(&mut server, port);
    let url = format!("rtsp://127.0.0.1:{port}/x");
    start_push(&node, &url);
    wait_push(&node, "cam0", "the push recording", |p| {
        p["state"] == "recording"
    });
    let state = wait_for(
        "the push on the state topic",
        Duration::from_secs(10),
        || {
            broker
                .retained("camfleet/node/push-ff/camera/cam0/state")
                .filter(|s| s.contains("\"recording\""))
        },
    );
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["pushes"][0]["url"], url, "{state}");
    let status = wait_for(
        "the server to finish its 6 s",
        Duration::from_secs(30),
        || server.try_wait().unwrap(),
    );
    assert!(status.success(), "ffmpeg server: {status}");
    // The push noticed the server leave; what it took from the camera
    // while connected is what it sent plus what it skipped.
    let push = wait_push(&node, "cam0", "the push to notice", |p| {
        p["state"] != "recording"
    });
    let offered = push["frames_sent"].as_u64().unwrap() + push["frames_skipped"].as_u64().unwrap();
    let received = frames_in(&first);
    eprintln!("server received {received} of {offered} frames the push took from the camera");
    assert!(
        received >= 6 * 15 * 9 / 10,
        "about 6 s at 15 fps: {received}"
    );
    assert!(
        received as f64 >= 0.95 * offered as f64 - 2.0,
        "received {received} of {offered}: {push}"
    );

    // The server comes back: the push reconnects by itself.
    let second = dir.path("second.mjpeg");
    let mut server = ffmpeg_server(port, &second, 2);
    wait_listening(&mut server, port);
    let push = wait_push(&node, "cam0", "a second connection", |p| {
        p["connects"].as_u64() >= Some(2)
    });
    assert!(push["last_error"].is_string(), "{push}");
    wait_for(
        "the second server to finish",
        Duration::from_secs(30),
        || server.try_wait().unwrap(),
    );
    assert!(frames_in(&second) >= 2 * 15 * 8 / 10);
    // Killed mid-stream and started again, twice: the push comes back.
    for (connects, name) in [(3, "third"), (4, "fourth")] {
        let mut server = ffmpeg_server(port, &dir.path(&format!("{name}.mjpeg")), 30);
        wait_listening(&mut server, port);
        wait_push(&node, "cam0", &format!("a {name} connection"), |p| {
            p["connects"].as_u64() >= Some(connects)
        });
        server.kill().unwrap();
        server.wait().unwrap();
        wait_push(&node, "cam0", "the kill noticed", |p| {
            p["state"] != "recording"
        });
    }
    let metrics = curl(&[&format!("{}/metrics", node.http_base())]).text();
    assert!(
        metrics.contains("camfleet_push_connects_total{camera=\"cam0\",push=\"p1\""),
        "{metrics}"
    );

    // Removed: it stops.
    let reply = api(
        &node,
        "DELETE",
        "/api/v1/cameras/cam0/pushes/p1",
        None,
        None,
    );
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(view(&node, "cam0")["pushes"].as_array().unwrap().is_empty());
}

/// A bare RTSP server that records what a push sends over TCP: replies
/// 200 to ANNOUNCE, SETUP and RECORD, then counts interleaved packets for
/// `seconds`; with `stall`, it first reads nothing for that long.
fn bare_server(
    listener: TcpListener,
    seconds: u64,
    stall: Option<Duration>,
) -> (Vec<String>, usize, Vec<Vec<u8>>) {
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut requests = Vec::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    while requests.len() < 3 {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "the push closed early"
            );
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        let cseq = head
            .lines()
            .find_map(|l| l.strip_prefix("CSeq: "))
            .unwrap()
            .trim()
            .to_owned();
        write!(
            stream,
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 12345678;timeout=60\r\n\r\n"
        )
        .unwrap();
        requests.push(format!("{head}{}", String::from_utf8_lossy(&body)));
    }
    if let Some(stall) = stall {
        // Not a wait for anything: the server is slow on purpose.
        std::thread::sleep(stall);
    }
    let (mut rtp, mut rtcp) = (0, Vec::new());
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        let mut head = [0u8; 4];
        reader.read_exact(&mut head).unwrap();
        assert_eq!(head[0], b'$', "interleaved data only after RECORD");
        let mut packet = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
        reader.read_exact(&mut packet).unwrap();
        match head[1] {
            0 => rtp += 1,
            1 => rtcp.push(packet),
            other => panic!("channel {other}"),
        }
    }
    (requests, rtp, rtcp)
}

#[test]
fn a_push_from_the_config_file_announces_records_and_sends_sender_reports() {
    let broker = Broker::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || bare_server(listener, 3, None));
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    // The config file's form of a push.
    let dir = TempDir::new("push-config");
    let config = dir.path("node.toml");
    let source = ffmpeg_camera(320, 240, 15);
    write(
        &config,
        &format!("[[camera]]\nsource = {source:?}\nwidth = 320\nheight = 240\nfps = 15\npush = [{url:?}]\n"),
    );
    let broker_url = broker.url();
    let config_path = config.display().to_string();
    let args = [
        node_base_args(&broker_url, "push-bare"),
        vec!["--config", &config_path],
    ]
    .concat();
    let node = Node::start(&args);
    let (requests, rtp, rtcp) = server.join().unwrap();
    let reply = api(
        &node,
        "DELETE",
        "/api/v1/cameras/cam0/pushes/p1",
        None,
        None,
    );
    assert_eq!(
        reply.status,
        409,
        "the config file's push stays: {}",
        reply.text()
    );
    assert!(
        requests[0].starts_with(&format!("ANNOUNCE {url} RTSP/1.0")),
        "{}",
        requests[0]
    );
    assert!(requests[0].contains("Content-Type: application/sdp"));
    assert!(
        requests[0].contains("m=video 0 RTP/AVP 26")
            && requests[0].contains("a=rtpmap:26 JPEG/90000")
    );
    assert!(
        requests[1].starts_with(&format!("SETUP {url}/trackID=0 RTSP/1.0")),
        "{}",
        requests[1]
    );
    assert!(requests[1].contains("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"));
    assert!(
        requests[2].starts_with("RECORD ") && requests[2].contains("Session: 12345678\r\n"),
        "{}",
        requests[2]
    );
    assert!(rtp > 3 * 15, "RTP packets of 3 s at 15 fps: {rtp}");
    assert!(rtcp.len() >= 2, "a sender report a second: {}", rtcp.len());
    for sr in &rtcp {
        assert_eq!(
            (sr[0] >> 6, sr[1]),
            (2, 200),
            "RTCP version 2, sender report"
        );
        let ntp_seconds = u32::from_be_bytes([sr[8], sr[9], sr[10], sr[11]]) as u64;
        let unix = ntp_seconds - 2_208_988_800;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            now.abs_diff(unix) <= 5,
            "the report's wall clock is the node's: {unix} vs {now}"
        );
    }
}

/// A listener whose connections advertise a small receive window (set
/// before listening, so the window scale agrees): a server that stops
/// reading is felt by the sender within a frame or two.
fn small_window_listener() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(1).unwrap();
    socket.into()
}

#[test]
fn a_server_that_stops_reading_makes_the_push_skip_and_never_slows_the_camera() {
    let broker = Broker::start();
    let node = camera_node(&broker, "push-slow");
    let listener = small_window_listener();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || bare_server(listener, 2, Some(Duration::from_secs(4))));
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    start_push(&node, &url);
    wait_push(&node, "cam0", "the push recording", |p| {
        p["state"] == "recording"
    });
    let frames = |v: &Value| v["frames"].as_u64().unwrap();
    let before = frames(&view(&node, "cam0"));
    let started = Instant::now();
    // Other viewers keep every frame while the server reads nothing.
    let mut viewer = FrameClient::connect(node.tcp_port("cam0"));
    let mut seqs = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        seqs.push(viewer.next().seq);
    }
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "a viewer beside the push lost frames: {seqs:?}"
    );
    let (_, rtp, _) = server.join().unwrap();
    let camera_rate =
        (frames(&view(&node, "cam0")) - before) as f64 / started.elapsed().as_secs_f64();
    assert!(
        camera_rate > 12.0,
        "the camera kept its 15 fps: {camera_rate:.1}"
    );
    eprintln!("after the stall: {}", push_of(&node, "cam0"));
    let push = wait_push(&node, "cam0", "skips counted", |p| {
        p["frames_skipped"].as_u64() > Some(0)
    });
    assert!(rtp > 0, "the push went on once the server read again");
    eprintln!("push after a 4 s stall: {push}");
}
