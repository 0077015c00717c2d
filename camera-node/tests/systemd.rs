//! The systemd side of the node: readiness and watchdog over a fake
//! NOTIFY_SOCKET (a Unix datagram socket this test owns), and the unit
//! files checked by `systemd-analyze verify`.

use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testkit::*;

#[test]
fn ready_after_the_first_frame_and_watchdog_only_while_frames_flow() {
    require("ffmpeg", "ffmpeg");
    let broker = Broker::start();
    let url = broker.url();
    let dir = TempDir::new("notify");
    let socket_path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            if tx
                .send((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ))
                .is_err()
            {
                break;
            }
        }
    });
    // Three seconds of frames, then silent for good: a restarted run
    // (the second start) writes nothing.
    let starts = dir.path("starts");
    let script = dir.script(
        "camera.sh",
        &format!(
            "#!/bin/sh\necho x >> '{starts}'\n[ $(wc -l < '{starts}') -gt 1 ] && exec sleep 600\n\
             exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=160x120:rate=10 -t 3 -f mjpeg -\n",
            starts = starts.display()
        ),
    );
    let source = format!("cmd:{}", script.display());
    let args = [
        vec!["--broker", &url, "--node-id", "pi-sd", "--source", &source],
        words("--tcp-port 0 --no-cpu-temp --watchdog-seconds 1"),
    ]
    .concat();
    let node = Node::start_with_env(
        &args,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut client = FrameClient::connect(node.tcp_port("cam0"));
    client
        .raw()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut last_frame = Instant::now();
    while let Some(_frame) = client.try_next() {
        last_frame = Instant::now();
    }
    // Watch three more seconds of silence.
    let until = last_frame + Duration::from_secs(5);
    let mut seen: Vec<(Instant, String)> = Vec::new();
    while let Ok(m) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        seen.push(m);
    }
    let ready = seen
        .iter()
        .position(|(_, m)| m.contains("READY=1"))
        .expect("READY=1 was sent");
    let feeds: Vec<Instant> = seen
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(feeds.len() >= 2, "WATCHDOG=1 while frames flow: {seen:?}");
    assert!(
        seen[ready].0 <= feeds[0],
        "READY=1 comes before the first WATCHDOG=1"
    );
    // The node's camera watchdog is 1 s; allow a tick on top.
    let late: Vec<_> = feeds
        .iter()
        .filter(|t| **t > last_frame + Duration::from_secs(2))
        .collect();
    assert!(
        late.is_empty(),
        "WATCHDOG=1 {} times after the camera stalled",
        late.len()
    );
    assert!(
        seen.iter()
            .any(|(_, m)| m.contains("STATUS=cam0 no frames")),
        "STATUS says the camera is silent"
    );
}
