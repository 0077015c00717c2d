//! Each camera's live hub in the viewer: dashboard streams and live
//! WebSockets that never read hold back neither the recorder (every frame received is recorded) nor a
//! relay child (it gets every frame), and the viewer's memory stays flat
//! while they hang on. Real mosquitto, node, viewer and ffprobe.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use shared::relay::RelayAnnounce;
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
/// How long the readers hang on (the issue's "flat over 60 s").
const HOLD: Duration = Duration::from_secs(60);
/// What the viewer's resident memory may grow by over [`HOLD`]: a hub's
/// ring (8 MiB at most) filling once, and allocator slack.
const RSS_SLACK_KIB: u64 = 24 * 1024;

/// One series of the viewer's `/metrics`.
fn metric(dashboard: &str, series: &str) -> f64 {
    let text = curl(&[&format!("http://{dashboard}/metrics")]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// A browser that asks for a tile's stream and then never reads it.
fn stalled_stream(dashboard: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(dashboard).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {dashboard}\r\n\r\n").unwrap();
    s
}

#[test]
fn stalled_dashboard_streams_delay_neither_the_recorder_nor_a_relay_child() {
    let broker = Broker::start();
    let recordings = TempDir::new("live-hub");
    let viewer = Viewer::start(&broker, &recordings.0, &["--relay", "127.0.0.1"]);
    let dashboard = viewer.dashboard();
    // Recording before the camera exists: it joins the session with its
    // first frame, so every frame it sends is one to be recorded.
    broker.publish("command/rec", "start");
    wait_state(&broker, "recording", |s| s.state == "recording");
    let mut node = test_node(&broker, "pi-hub", "640x480");

    let relay = wait_for("the viewer passing pi-hub/cam0 on", SECS(30), || {
        let a: RelayAnnounce =
            serde_json::from_str(&broker.retained("camfleet/viewer/ws/relay")?).ok()?;
        a.cameras.first()?.addr.clone()
    });
    let port: u16 = relay.rsplit(':').next().unwrap().parse().unwrap();
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| stalled_stream(&dashboard, "/cameras/pi-hub/cam0/stream.mjpg"))
        .collect();
    // Pages that ask for the camera over the live WebSocket and never read
    // (nor acknowledge) a frame.
    let stalled_pages: Vec<testkit::live::LiveClient> = (0..4)
        .map(|_| {
            let mut page = testkit::live::upgrade(&dashboard, "/api/live", &[])
                .socket
                .expect("a live WebSocket");
            page.show(&["pi-hub/cam0"]);
            page
        })
        .collect();
    // A page beside them that reads and acknowledges: it keeps getting
    // the camera at its rate (10 fps) while the others hang.
    let mut reading = testkit::live::upgrade(&dashboard, "/api/live", &[])
        .socket
        .expect("a live WebSocket");
    reading.show(&["pi-hub/cam0"]);
    let reading = std::thread::spawn(move || {
        let started = Instant::now();
        let mut frames = 0;
        while started.elapsed() < HOLD {
            reading.frame().expect("frames on the page that reads");
            frames += 1;
        }
        frames
    });
    let mut child = FrameClient::connect(port);
    let first = child.next().seq;
    let rss_before = rss_kib(viewer.child.id());

    let mut last = first;
    let started = Instant::now();
    while started.elapsed() < HOLD {
        let f = child.next();
        assert_eq!(f.seq, last + 1, "the relay child skipped frames");
        last = f.seq;
    }
    let rss_after = rss_kib(viewer.child.id());
    let page_frames = reading.join().unwrap();
    assert!(
        page_frames as f64 >= 0.8 * 10.0 * HOLD.as_secs_f64(),
        "the page that reads got {page_frames} frames in {HOLD:?} beside the stalled ones"
    );
    eprintln!(
        "relay child: frames {first}..={last}; viewer RSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(
        rss_after <= rss_before + RSS_SLACK_KIB,
        "the viewer grew from {rss_before} KiB to {rss_after} KiB with stalled readers"
    );

    // The camera stops: what the viewer received is all there is.
    node.signal("TERM");
    node.wait_exit(SECS(20));
    let camera = r#"{node="pi-hub",camera="cam0"}"#;
    // The link has left the stream (it closed, or the node said offline)
    // once its recorder closed: every frame read has been handed on.
    viewer.wait_log("recording closed", SECS(20));
    let received = metric(
        &dashboard,
        &format!("camfleet_viewer_frames_received_total{camera}"),
    ) as usize;
    let missed = metric(
        &dashboard,
        &format!("camfleet_viewer_frames_missed_total{camera}"),
    );
    broker.publish("command/rec", "stop");
    wait_state(&broker, "idle", |s| s.state == "idle");
    let recorded: usize = files(&recordings.0, ".mp4")
        .iter()
        .map(|segment| samples(segment).len())
        .sum();
    eprintln!("received {received}, missed {missed}, recorded {recorded}");
    assert_eq!(missed, 0.0, "the node skipped frames for the viewer");
    assert_eq!(
        recorded, received,
        "every frame received is recorded once, stalled readers or not"
    );
    drop(stalled);
    // Each stalled page was cut off after the write limit (20 s) and the
    // viewer said why.
    for mut page in stalled_pages {
        page.raw().set_read_timeout(Some(SECS(5))).unwrap();
        let mut read = 0;
        let end = loop {
            match page.message() {
                Ok((0x2, payload)) => read += payload.len(),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_ne!(
            end.kind(),
            std::io::ErrorKind::WouldBlock,
            "a stalled page is still connected after {HOLD:?} ({read} bytes waiting)"
        );
    }
    assert!(
        viewer.log().contains("no frame acknowledged for 20 s"),
        "the viewer says why it cut the stalled pages off"
    );
}
