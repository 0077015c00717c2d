//! A camera pushed on to GStreamer's RTSP server in record mode, behind a
//! password (Basic and Digest challenges).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::api::*;
use testkit::*;

mod push_common;
use push_common::*;

/// GStreamer's RTSP server in record mode, behind `user`/`password`.
struct GstServer {
    child: Child,
    out: TempDir,
}

impl GstServer {
    fn start(port: u16, method: &str) -> Self {
        require(
            "/usr/bin/python3",
            "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good",
        );
        let out = TempDir::new("gst-record");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gst_record_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args([&port.to_string(), "/door", "pusher", "pw-gst-1", method])
            .arg(&out.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the GStreamer RTSP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the GStreamer RTSP server did not start (python3-gi, gir1.2-gst-rtsp-server-1.0)"
        );
        GstServer { child, out }
    }

    /// The JPEGs written so far. multifilesink writes each through a
    /// temporary file renamed into place (g_file_set_contents): only the
    /// `.jpg` names are whole frames, the rest come and go.
    fn frames(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<_> = std::fs::read_dir(&self.out.0)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
            .collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }
}

impl Drop for GstServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gst_push_with_a_password(method: &str) {
    let broker = Broker::start();
    let node = camera_node(&broker, &format!("push-gst-{method}"));
    let port = free_port();
    let server = GstServer::start(port, method);

    // The wrong password: refused, said clearly, retried.
    let wrong = format!("rtsp://pusher:nope@127.0.0.1:{port}/door");
    start_push(&node, &wrong);
    let push = wait_push(&node, "cam0", "a refused push", |p| {
        p["last_error"].is_string()
    });
    assert!(
        push["last_error"].as_str().unwrap().contains("401"),
        "{push}"
    );
    assert_eq!(
        push["url"],
        format!("rtsp://pusher:***@127.0.0.1:{port}/door")
    );
    assert_eq!(
        api(
            &node,
            "DELETE",
            "/api/v1/cameras/cam0/pushes/p1",
            None,
            None
        )
        .status,
        204
    );

    let right = format!("rtsp://pusher:pw-gst-1@127.0.0.1:{port}/door");
    start_push(&node, &right);
    wait_push(&node, "cam0", "recording on GStreamer", |p| {
        p["state"] == "recording"
    });
    let frames = wait_for("30 frames on the server", Duration::from_secs(20), || {
        let frames = server.frames();
        (frames.len() >= 30).then_some(frames)
    });
    assert_eq!(jpeg_size(&frames[frames.len() - 2]), (320, 240));
    for (what, text) in [
        ("the camera's answer", view(&node, "cam0").to_string()),
        ("the node's log", node.log()),
    ] {
        assert!(
            !text.contains("pw-gst-1") && !text.contains(":nope@"),
            "a password in {what}:\n{text}"
        );
    }
}

#[test]
fn a_push_to_gstreamer_answers_its_basic_challenge() {
    gst_push_with_a_password("basic");
}

#[test]
fn a_push_to_gstreamer_answers_its_digest_challenge() {
    gst_push_with_a_password("digest");
}
