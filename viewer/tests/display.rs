//! The viewer's windows under Xvfb: a screenshot (ffmpeg's x11grab) shows
//! the camera's picture, and the REC mark once recording; the grid layout
//! puts every camera in one window. Screenshots are kept as test artifacts.
#![cfg(feature = "display")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const SCREEN: (usize, usize) = (1280, 800);

/// A virtual X server on a free display number.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        require("Xvfb", "xvfb");
        let size = format!("{}x{}x24", SCREEN.0, SCREEN.1);
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", &size, "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.trim().is_empty(), "Xvfb did not report its display");
        Xvfb {
            child,
            display: format!(":{}", line.trim()),
        }
    }

    /// The screen as RGB bytes, also saved as a PNG artifact.
    fn screenshot(&self, name: &str) -> Vec<u8> {
        require("ffmpeg", "ffmpeg");
        let size = format!("{}x{}", SCREEN.0, SCREEN.1);
        let grab = |format: &[&str], out: &str| {
            let o = Command::new("ffmpeg")
                .args([
                    "-v",
                    "error",
                    "-f",
                    "x11grab",
                    "-video_size",
                    &size,
                    "-i",
                    &self.display,
                    "-frames:v",
                    "1",
                ])
                .args(format)
                .args(["-y", out])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "x11grab: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            o.stdout
        };
        let artifact = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
        grab(&[], artifact.to_str().unwrap());
        eprintln!("screenshot: {}", artifact.display());
        grab(&["-f", "rawvideo", "-pix_fmt", "rgb24"], "-")
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pixels within 30 of `rgb` on every channel.
fn count(screen: &[u8], rgb: [u8; 3]) -> usize {
    screen
        .chunks_exact(3)
        .filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 30))
        .count()
}

fn start_viewer(broker: &Broker, x: &Xvfb, recordings: &TempDir, layout: &str) -> Viewer {
    Viewer::start_windowed(
        broker,
        &recordings.0,
        &["--layout", layout, "--segment-seconds", "60"],
        &x.display,
    )
}

#[test]
fn a_window_shows_the_camera_picture_and_rec_while_recording() {
    let x = Xvfb::start();
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-d", "640x480");
    let recordings = TempDir::new("recordings");
    let viewer = start_viewer(&broker, &x, &recordings, "windows");
    viewer.wait_log("showing pi-d/cam0", SECS(20));
    // The test pattern's yellow and cyan bars (75%) are on the screen.
    let screen = wait_for("the picture on screen", SECS(15), || {
        let s = x.screenshot("viewer-window");
        (count(&s, [191, 191, 0]) > 5_000 && count(&s, [0, 191, 191]) > 5_000).then_some(s)
    });
    assert!(
        count(&screen, [255, 0, 0]) < 100,
        "no REC mark before recording"
    );
    broker.publish("command/rec", "start");
    wait_state(&broker, "recording", |s| s.cameras == 1);
    wait_for("the REC mark", SECS(10), || {
        (count(&x.screenshot("viewer-window-rec"), [255, 0, 0]) > 100).then_some(())
    });
}

#[test]
fn the_grid_layout_shows_every_camera_in_one_window() {
    let x = Xvfb::start();
    let broker = Broker::start();
    let _a = test_node(&broker, "pi-g1", "640x480");
    let _b = test_node(&broker, "pi-g2", "320x240");
    let recordings = TempDir::new("recordings");
    let viewer = start_viewer(&broker, &x, &recordings, "grid");
    viewer.wait_log("showing every camera in one window", SECS(20));
    for node in ["pi-g1", "pi-g2"] {
        viewer.wait_log(
            &format!("camera{{camera={node}/cam0}}: first frame"),
            SECS(20),
        );
    }
    // Two tiles of colour bars: twice the yellow of one 640x360 cell.
    wait_for("both tiles on screen", SECS(15), || {
        (count(&x.screenshot("viewer-grid"), [191, 191, 0]) > 2 * 20_000).then_some(())
    });
}

#[test]
fn an_h264_camera_shows_in_its_window_decoded_by_ffmpeg() {
    let x = Xvfb::start();
    let broker = Broker::start();
    let _node = test_node_with(&broker, "pi-dh", "640x480", &["--codec", "h264"]);
    let recordings = TempDir::new("recordings");
    let viewer = start_viewer(&broker, &x, &recordings, "windows");
    viewer.wait_log("showing pi-dh/cam0", SECS(20));
    viewer.wait_log("decoding 640x480 H.264 for the window", SECS(20));
    // The same colour bars as the MJPEG test pattern, through the encoder.
    wait_for("the decoded picture on screen", SECS(20), || {
        let s = x.screenshot("viewer-window-h264");
        (count(&s, [191, 191, 0]) > 5_000 && count(&s, [0, 191, 191]) > 5_000).then_some(())
    });
    // It moves: the picture is decoded continuously, not once (the top
    // rows: the pattern's moving part, above the window's own label).
    let top = |s: Vec<u8>| s[..300 * SCREEN.0 * 3].to_vec();
    let first = top(x.screenshot("viewer-window-h264-a"));
    wait_for("a later picture", SECS(10), || {
        (top(x.screenshot("viewer-window-h264-b")) != first).then_some(())
    });
}
