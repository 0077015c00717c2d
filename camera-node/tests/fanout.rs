//! The fan-out's two promises, end to end with the real node: every frame
//! to a viewer that keeps up (also when the camera hands over a burst),
//! the newest frame to one that does not (a slow link), over the TCP frame
//! protocol, HTTP multipart and RTSP interleaved.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use shared::frame::{FrameHeader, HEADER_LEN, HELLO};
use testkit::*;

/// Frames the burst camera writes at once, once a second.
const BURST: usize = 3;
/// 90 kHz RTP ticks between two bursts is 90 000; within one, about none.
const BURST_GAP_TICKS: u32 = 45_000;

/// A camera that writes `BURST` JPEGs in one write every second, as a
/// camera pipe does after a scheduling hiccup.
fn burst_source(dir: &TempDir) -> String {
    require("ffmpeg", "ffmpeg");
    let clip = dir.path("burst.mjpeg");
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=30")
        .args(["-frames:v", &BURST.to_string(), "-f", "mjpeg", "-q:v", "5"])
        .args(["-huffman", "default", "-y"])
        .arg(&clip)
        .status()
        .expect("run ffmpeg");
    assert!(made.success(), "ffmpeg could not make the burst clip");
    let size = std::fs::metadata(&clip).unwrap().len();
    assert!(
        size < 60_000,
        "the burst must fit one pipe write: {size} bytes"
    );
    let script = dir.script(
        "burst-camera",
        &format!(
            "#!/bin/sh\nwhile :; do cat '{}'; sleep 1; done\n",
            clip.display()
        ),
    );
    format!("cmd:{}", script.display())
}

#[test]
fn every_prompt_reader_gets_every_frame_of_a_burst() {
    let broker = Broker::start();
    let dir = TempDir::new("burst");
    let source = burst_source(&dir);
    let node = Node::start(&node_args(&broker.url(), "burst-node", &source));
    let port = node.tcp_port("cam0");
    let rtsp_url = format!("{}/cam0", node.rtsp_base());

    let tcp: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut client = FrameClient::connect(port);
                (0..4 * BURST)
                    .map(|_| client.next().seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let rtsp: Vec<_> = (0..4)
        .map(|_| {
            let url = rtsp_url.clone();
            thread::spawn(move || rtsp_bursts(&url, 5))
        })
        .collect();

    for reader in tcp {
        let seqs = reader.join().expect("TCP reader");
        let missing: Vec<_> = seqs.windows(2).filter(|w| w[1] != w[0] + 1).collect();
        assert!(missing.is_empty(), "TCP reader missed frames: {seqs:?}");
    }
    for reader in rtsp {
        let bursts = reader.join().expect("RTSP reader");
        // The first burst may have been joined in its middle.
        assert!(
            bursts[1..].iter().all(|&frames| frames == BURST),
            "RTSP reader missed frames; frames per burst: {bursts:?}"
        );
    }
    let dropped = metric(&node, "camfleet_frames_dropped_total", "tcp")
        + metric(&node, "camfleet_frames_dropped_total", "rtsp");
    assert_eq!(dropped, 0.0, "the node counted drops for prompt readers");
}

/// Plays `url` over RTSP/TCP and counts frames per burst of the camera
/// until `complete` bursts after the first are whole; checks that no RTP
/// packet is missing.
fn rtsp_bursts(url: &str, complete: usize) -> Vec<usize> {
    let base = url.rsplit_once('/').unwrap().0;
    let mut client = RtspClient::connect(base);
    let setup = client.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    assert_eq!(setup.status, 200, "{setup:?}");
    let play = client.request("PLAY", url, &[("Session", &setup.session())]);
    assert_eq!(play.status, 200, "{play:?}");
    let mut bursts: Vec<usize> = Vec::new();
    let (mut last_ts, mut last_seq) = (None::<u32>, None::<u16>);
    while bursts.len() < complete + 2 {
        let (channel, packet) = client
            .packet(Duration::from_secs(10))
            .expect("RTP packets while playing");
        if channel != 0 {
            continue;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        if let Some(prev) = last_seq {
            assert_eq!(seq, prev.wrapping_add(1), "an RTP packet is missing");
        }
        last_seq = Some(seq);
        if packet[1] & 0x80 == 0 {
            continue; // not a frame's last packet
        }
        let ts = u32::from_be_bytes(packet[4..8].try_into().unwrap());
        match last_ts {
            Some(prev) if ts.wrapping_sub(prev) < BURST_GAP_TICKS => {
                *bursts.last_mut().unwrap() += 1
            }
            _ => bursts.push(1),
        }
        last_ts = Some(ts);
    }
    bursts.pop(); // the burst being read when the loop ended
    bursts
}

fn metric(node: &Node, name: &str, protocol: &str) -> f64 {
    let text = curl(&[&format!("{}/metrics", node.http_base())]).text();
    let label = format!("protocol=\"{protocol}\"");
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} for {protocol} in /metrics:\n{text}"))
}

/// A frame as a slow viewer got it.
struct Got {
    captured_at_us: u64,
    received_at_us: u64,
}

/// What a slow-link test needs from the camera: its byte rate and frame
/// size, measured by a viewer that keeps up.
struct Stream {
    bytes_per_s: f64,
    frame_bytes: f64,
    fps: f64,
}

fn measure(port: u16) -> Stream {
    let mut client = FrameClient::connect(port);
    let first = client.next();
    let frames: Vec<Received> = (0..60).map(|_| client.next()).collect();
    let last = frames.last().unwrap();
    let seconds = (last.captured_at_us - first.captured_at_us) as f64 / 1e6;
    let bytes: usize = frames.iter().map(|f| f.jpeg.len()).sum();
    let fps = (last.seq - first.seq) as f64 / seconds;
    Stream {
        bytes_per_s: bytes as f64 / seconds,
        frame_bytes: bytes as f64 / frames.len() as f64,
        fps,
    }
}

/// Runs a slow viewer of a 640x480 30 fps camera through `read` for
/// `SLOW_FOR` and checks the promise: after the first seconds only frames
/// younger than two frames' transfer time at its rate plus 0.5 s, about a
/// third of the frames, and drops counted for its protocol.
fn slow_viewer_gets_the_newest(protocol: &str, read: fn(&Node, SlowLink, Duration) -> Vec<Got>) {
    const SLOW_FOR: Duration = Duration::from_secs(14);
    const SETTLE_US: u64 = 4_000_000;
    let broker = Broker::start();
    let source = ["--width", "640", "--height", "480", "--fps", "30"];
    let node = Node::start(
        &[
            node_args(&broker.url(), "slow-node", "test"),
            source.to_vec(),
        ]
        .concat(),
    );
    let port = node.tcp_port("cam0");
    let stream = measure(port);
    let rate = stream.bytes_per_s / 3.0;
    let addr: SocketAddr = match protocol {
        "tcp" => format!("127.0.0.1:{port}"),
        "http" => node.http_base().trim_start_matches("http://").to_owned(),
        _ => node.rtsp_base().trim_start_matches("rtsp://").to_owned(),
    }
    .parse()
    .unwrap();
    let dropped_before = metric(&node, "camfleet_frames_dropped_total", protocol);
    let got = read(&node, SlowLink::connect(addr, rate), SLOW_FOR);

    let start = got
        .first()
        .expect("the slow viewer got frames")
        .received_at_us;
    let settled: Vec<&Got> = got
        .iter()
        .filter(|g| g.received_at_us > start + SETTLE_US)
        .collect();
    let transfer_s = stream.frame_bytes / rate;
    let limit_s = 2.0 * transfer_s + 0.5;
    let ages: Vec<f64> = settled
        .iter()
        .map(|g| (g.received_at_us as f64 - g.captured_at_us as f64) / 1e6)
        .collect();
    let oldest = ages.iter().cloned().fold(0.0, f64::max);
    assert!(
        oldest <= limit_s,
        "{protocol}: a frame {oldest:.2} s old reached the slow viewer (limit {limit_s:.2} s; ages {ages:.2?})"
    );
    let window_s =
        (settled.last().unwrap().received_at_us - settled[0].received_at_us) as f64 / 1e6;
    let share = settled.len() as f64 / (window_s * stream.fps);
    assert!(
        (0.15..=0.6).contains(&share),
        "{protocol}: the slow viewer got {:.0}% of the frames, expected about a third",
        share * 100.0
    );
    let dropped = metric(&node, "camfleet_frames_dropped_total", protocol) - dropped_before;
    assert!(
        dropped > 0.0,
        "{protocol}: the node counted no drops for a slow viewer"
    );
    eprintln!(
        "{protocol}: {} frames, {:.0}% of the camera's, oldest {oldest:.2} s (limit {limit_s:.2} s), median {:.2} s, frame {:.0} bytes, {dropped} drops counted",
        settled.len(),
        share * 100.0,
        median(&ages),
        stream.frame_bytes
    );
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

#[test]
fn a_slow_tcp_viewer_gets_the_newest_frames() {
    slow_viewer_gets_the_newest("tcp", |_, mut link, run_for| {
        let mut hello = [0u8; HELLO.len()];
        link.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, HELLO);
        let until = Instant::now() + run_for;
        let mut got = Vec::new();
        let mut jpeg = Vec::new();
        while Instant::now() < until {
            let mut head = [0u8; HEADER_LEN];
            link.read_exact(&mut head).unwrap();
            let header = FrameHeader::decode(&head);
            jpeg.resize(header.len as usize, 0);
            link.read_exact(&mut jpeg).unwrap();
            got.push(Got {
                captured_at_us: header.captured_at_us,
                received_at_us: now_us(),
            });
        }
        got
    });
}

#[test]
fn a_slow_http_viewer_gets_the_newest_frames() {
    slow_viewer_gets_the_newest("http", |_, mut link, run_for| {
        // HTTP/1.0: the body is the multipart stream itself, not chunked.
        link.stream
            .write_all(b"GET /cameras/cam0/stream.mjpg HTTP/1.0\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::with_capacity(SlowLink::CHUNK, link);
        let status = read_head(&mut reader);
        assert!(status[0].contains(" 200 "), "{status:?}");
        let until = Instant::now() + run_for;
        let mut got = Vec::new();
        let mut jpeg = Vec::new();
        while Instant::now() < until {
            let head = read_head(&mut reader);
            let field = |name: &str| -> String {
                head.iter()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in part {head:?}"))
                    .trim()
                    .to_owned()
            };
            let len: usize = field("Content-Length:").parse().unwrap();
            let stamp: f64 = field("X-Timestamp:").parse().unwrap();
            jpeg.resize(len, 0);
            reader.read_exact(&mut jpeg).unwrap();
            got.push(Got {
                captured_at_us: (stamp * 1e6) as u64,
                received_at_us: now_us(),
            });
        }
        got
    });
}

/// Lines up to an empty one, skipping blank lines and boundaries first.
fn read_head(reader: &mut impl BufRead) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
        let line = line.trim_end().to_owned();
        if line.is_empty() || line.starts_with("--") {
            if lines.is_empty() {
                continue;
            }
            return lines;
        }
        lines.push(line);
    }
}

#[test]
fn a_slow_rtsp_viewer_gets_the_newest_frames() {
    slow_viewer_gets_the_newest("rtsp", |node, mut link, run_for| {
        let url = format!("{}/cam0", node.rtsp_base());
        link.stream
            .write_all(
                format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        let mut reader = BufReader::with_capacity(SlowLink::CHUNK, link);
        let setup = read_head(&mut reader);
        assert!(setup[0].contains(" 200 "), "{setup:?}");
        let session = setup
            .iter()
            .find_map(|l| l.strip_prefix("Session:"))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        reader
            .get_mut()
            .stream
            .write_all(
                format!("PLAY {url} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n").as_bytes(),
            )
            .unwrap();
        let play = read_head(&mut reader);
        assert!(play[0].contains(" 200 "), "{play:?}");
        // RTP time to wall clock from the first sender report.
        let mut clock: Option<(u32, u64)> = None;
        let mut ends: Vec<(u32, u64)> = Vec::new();
        let until = Instant::now() + run_for;
        let mut packet = Vec::new();
        while Instant::now() < until {
            let mut prefix = [0u8; 4];
            reader.read_exact(&mut prefix).unwrap();
            assert_eq!(prefix[0], b'$', "interleaved data expected");
            packet.resize(u16::from_be_bytes([prefix[2], prefix[3]]) as usize, 0);
            reader.read_exact(&mut packet).unwrap();
            match prefix[1] {
                1 if packet[1] == 200 && clock.is_none() => {
                    let seconds = u32::from_be_bytes(packet[8..12].try_into().unwrap()) as u64;
                    let fraction = u32::from_be_bytes(packet[12..16].try_into().unwrap()) as u64;
                    let unix_us =
                        (seconds - 2_208_988_800) * 1_000_000 + ((fraction * 1_000_000) >> 32);
                    let ts = u32::from_be_bytes(packet[16..20].try_into().unwrap());
                    clock = Some((ts, unix_us));
                }
                0 if packet[1] & 0x80 != 0 => {
                    ends.push((
                        u32::from_be_bytes(packet[4..8].try_into().unwrap()),
                        now_us(),
                    ));
                }
                _ => {}
            }
        }
        let (sr_ts, sr_us) = clock.expect("a sender report");
        ends.into_iter()
            .map(|(ts, received_at_us)| Got {
                captured_at_us: (sr_us as i64 + ts.wrapping_sub(sr_ts) as i32 as i64 * 100 / 9)
                    as u64,
                received_at_us,
            })
            .collect()
    });
}
