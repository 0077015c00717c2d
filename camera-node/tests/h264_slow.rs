//! A slow H.264 viewer, over the TCP frame protocol v2 and over RTSP: a
//! small receive buffer read at a third of the stream's byte rate. Every
//! picture it gets decodes (it only ever skips to a keyframe), it is never
//! more than a keyframe interval and half a second behind, its skips are
//! counted, and a reader beside it that keeps up gets every frame.

mod h264_common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use h264_common::*;
use shared::frame::{Frame, FrameDecoder};
use testkit::*;
use tokio_util::codec::Decoder;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `camfleet_frames_dropped_total` of a protocol, from /metrics.
fn dropped(node: &Node, protocol: &str) -> f64 {
    let text = run_ok(Command::new("curl").args(["-s", &format!("{}/metrics", node.http_base())]));
    text.lines()
        .filter(|l| {
            l.starts_with("camfleet_frames_dropped_total")
                && l.contains(&format!("protocol=\"{protocol}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The setting of the slow-reader tests: the rpicam stand-in (x264's
/// sizes, a keyframe every 2 s), its byte rate and largest keyframe as a
/// reader that keeps up measured them, and such a reader running beside.
struct SlowCase {
    node: Node,
    _bin: TempDir,
    _broker: Broker,
    rate: f64,
    key_bytes: f64,
    fast: std::thread::JoinHandle<Vec<Frame>>,
}

impl SlowCase {
    fn start() -> Self {
        require("ffmpeg", "ffmpeg");
        let broker = Broker::start();
        let (node, bin) = node_on_fake_h264_camera(&broker, false, &[]);
        let port = node.tcp_port("cam0");
        let (_, sample, _) = read_frames(port, 30, SECS(10));
        let span_s =
            (sample.last().unwrap().captured_at_us - sample[0].captured_at_us) as f64 / 1e6;
        let bytes: usize = sample.iter().skip(1).map(|f| f.data.len() + 32).sum();
        let key_bytes = sample.iter().filter(|f| f.key).map(|f| f.data.len()).max();
        SlowCase {
            node,
            _bin: bin,
            _broker: broker,
            rate: bytes as f64 / span_s,
            key_bytes: key_bytes.unwrap() as f64,
            fast: std::thread::spawn(move || read_frames(port, 150, SECS(14)).1),
        }
    }

    /// How far behind a reader at a third of the rate may be, once
    /// settled: 1.5 s and one keyframe's transfer, and never more than the
    /// promise of a keyframe interval (2 s here) and half a second.
    fn limit_s(&self) -> f64 {
        (1.5 + self.key_bytes / (self.rate / 3.0)).min(2.0 + 0.5)
    }

    fn the_fast_reader_got_every_frame(self) {
        let fast = self.fast.join().unwrap();
        assert!(fast.len() >= 140, "{} frames", fast.len());
        for pair in fast.windows(2) {
            assert_eq!(
                pair[1].seq,
                pair[0].seq + 1,
                "the fast reader missed frames"
            );
        }
    }
}

#[test]
fn a_slow_v2_reader_skips_to_keyframes_decodes_all_it_gets_and_slows_no_one() {
    let case = SlowCase::start();
    let (node, port, rate) = (&case.node, case.node.tcp_port("cam0"), case.rate);
    let before = dropped(node, "tcp");

    let mut link = SlowLink::connect(format!("127.0.0.1:{port}").parse().unwrap(), rate / 3.0);
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new();
    let mut got: Vec<(Frame, u64)> = Vec::new();
    let until = Instant::now() + SECS(12);
    let mut chunk = vec![0u8; SlowLink::CHUNK];
    while Instant::now() < until {
        let n = link.read(&mut chunk).unwrap();
        assert!(n > 0, "the node closed the slow reader");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            got.push((frame, now_us()));
        }
    }
    assert!(got.len() > 20, "the slow reader got {} frames", got.len());
    assert!(got[0].0.key);
    // It only ever skipped to a keyframe, and it did skip.
    let mut skips = 0;
    for pair in got.windows(2) {
        if pair[1].0.seq != pair[0].0.seq + 1 {
            skips += 1;
            assert!(
                pair[1].0.key,
                "frame {} after a skip is no keyframe",
                pair[1].0.seq
            );
        }
    }
    assert!(skips > 0, "a reader at a third of the rate must skip");
    // Never more than `limit_s` behind, once settled.
    let settle = got[0].1 + 3_000_000;
    let limit = case.limit_s();
    let oldest = got
        .iter()
        .filter(|(_, at)| *at > settle)
        .map(|(f, at)| (*at as f64 - f.captured_at_us as f64) / 1e6)
        .fold(0.0, f64::max);
    assert!(
        oldest <= limit,
        "a frame {oldest:.2} s old (limit {limit:.2} s)"
    );
    assert!(dropped(node, "tcp") > before, "the drops are counted");
    // Every frame it got decodes.
    let mut annex_b = Vec::new();
    for (f, _) in &got {
        shared::h264::to_annex_b(&f.data, &mut annex_b);
    }
    let decoded = decode_annex_b(annex_b);
    assert_eq!(decoded.len(), got.len() * 640 * 480, "every frame decoded");
    // The reader that keeps up got every frame meanwhile.
    case.the_fast_reader_got_every_frame();
    eprintln!(
        "slow v2 reader: {} frames, {skips} skips, oldest {oldest:.2} s (limit {limit:.2} s), stream {:.0} KB/s",
        got.len(),
        rate / 1000.0
    );
}

/// Pictures of an RTP H.264 session (RFC 6184 mode 1), rebuilt from its
/// packets: each with its RTP time, when its last packet came, its NAL units.
#[derive(Default)]
struct Depacketised {
    pictures: Vec<(u32, u64, Vec<Vec<u8>>)>,
    current: Vec<Vec<u8>>,
    /// The newest sender report: NTP time (µs since the Unix epoch) and RTP time.
    report: Option<(u64, u32)>,
}

impl Depacketised {
    fn rtp(&mut self, packet: &[u8]) {
        let ts = u32::from_be_bytes(packet[4..8].try_into().unwrap());
        let payload = &packet[12..];
        match payload[0] & 0x1F {
            28 => {
                if payload[1] & 0x80 != 0 {
                    self.current
                        .push(vec![payload[0] & 0xE0 | payload[1] & 0x1F]);
                }
                self.current
                    .last_mut()
                    .expect("an FU-A start")
                    .extend_from_slice(&payload[2..]);
            }
            _ => self.current.push(payload.to_vec()),
        }
        if packet[1] & 0x80 != 0 {
            self.pictures
                .push((ts, now_us(), std::mem::take(&mut self.current)));
        }
    }

    fn rtcp(&mut self, packet: &[u8]) {
        if packet.get(1) == Some(&200) && packet.len() >= 20 {
            let seconds = u64::from(u32::from_be_bytes(packet[8..12].try_into().unwrap()));
            let fraction = u64::from(u32::from_be_bytes(packet[12..16].try_into().unwrap()));
            let us = (seconds - 2_208_988_800) * 1_000_000 + ((fraction * 1_000_000) >> 32);
            self.report = Some((us, u32::from_be_bytes(packet[16..20].try_into().unwrap())));
        }
    }

    /// A picture's capture time from the sender report.
    fn captured_at_us(&self, ts: u32) -> Option<f64> {
        let (us, rtp) = self.report?;
        Some(us as f64 + f64::from(ts.wrapping_sub(rtp) as i32) / 0.09)
    }
}

#[test]
fn a_slow_rtsp_client_skips_to_keyframes_decodes_all_it_gets_and_slows_no_one() {
    let case = SlowCase::start();
    let (node, rate) = (&case.node, case.rate);
    let before = dropped(node, "rtsp");

    let base = node.rtsp_base();
    let url = format!("{base}/cam0");
    let mut client = RtspClient::connect_slow(&base, rate / 3.0);
    assert_eq!(
        client
            .request("DESCRIBE", &url, &[("Accept", "application/sdp")])
            .status,
        200
    );
    let setup = client.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
    );
    let session = setup.session();
    assert_eq!(
        client
            .request("PLAY", &url, &[("Session", &session)])
            .status,
        200
    );
    let mut got = Depacketised::default();
    let until = Instant::now() + SECS(12);
    while Instant::now() < until {
        let Some((channel, packet)) = client.packet(SECS(5)) else {
            panic!("no packet for 5 s");
        };
        match channel {
            0 => got.rtp(&packet),
            _ => got.rtcp(&packet),
        }
    }
    let pictures = &got.pictures;
    assert!(
        pictures.len() > 20,
        "the slow client got {} pictures",
        pictures.len()
    );
    let is_key = |nals: &Vec<Vec<u8>>| nals.iter().any(|n| n[0] & 0x1F == 5);
    assert!(is_key(&pictures[0].2), "PLAY starts at a keyframe");
    // A gap of more than one and a half frame intervals is a skip: a keyframe follows.
    let interval = 90_000 / 15;
    let mut skips = 0;
    for pair in pictures.windows(2) {
        if pair[1].0.wrapping_sub(pair[0].0) > interval * 3 / 2 {
            skips += 1;
            assert!(is_key(&pair[1].2), "a picture after a skip is no keyframe");
        }
    }
    assert!(skips > 0, "a client at a third of the rate must skip");
    let settle = pictures[0].1 + 3_000_000;
    let limit = case.limit_s();
    let oldest = pictures
        .iter()
        .filter(|p| p.1 > settle)
        .filter_map(|p| Some((p.1 as f64 - got.captured_at_us(p.0)?) / 1e6))
        .fold(0.0, f64::max);
    assert!(got.report.is_some(), "sender reports came");
    assert!(
        oldest <= limit,
        "a picture {oldest:.2} s old (limit {limit:.2} s)"
    );
    assert!(dropped(node, "rtsp") > before, "the drops are counted");
    let mut annex_b = Vec::new();
    for (_, _, nals) in pictures {
        for n in nals {
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(n);
        }
    }
    let decoded = decode_annex_b(annex_b);
    assert_eq!(
        decoded.len(),
        pictures.len() * 640 * 480,
        "every picture decoded"
    );
    case.the_fast_reader_got_every_frame();
    eprintln!(
        "slow RTSP client: {} pictures, {skips} skips, oldest {oldest:.2} s (limit {limit:.2} s)",
        pictures.len()
    );
}
