//! The README's first command works: scripts/demo.sh brings up a broker,
//! three test-pattern nodes and the viewer, reads a frame over the TCP
//! protocol and records a short session.

mod support;

use support::common::*;
use support::files;

#[test]
fn the_demo_script_shows_the_fleet_and_records_a_session() {
    require("mosquitto", "mosquitto");
    let dir = TempDir::new("demo");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo.sh");
    let run = std::process::Command::new("bash")
        .args([script, "--once"])
        .env("CAMERA_NODE_BIN", node_binary())
        .env("VIEWER_BIN", env!("CARGO_BIN_EXE_viewer"))
        .env("DEMO_DIR", &dir.0)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("\"node_id\":\"demo-0\""), "{stdout}");
    assert_eq!(
        jpeg_size(&std::fs::read(dir.path("frame.jpg")).unwrap()),
        (640, 480)
    );
    let segments = files(&dir.path("recordings"), ".mp4");
    for node in ["demo-0", "demo-1", "demo-2"] {
        assert!(
            segments
                .iter()
                .any(|s| s.to_string_lossy().contains(&format!("/{node}/cam0/"))),
            "{node}: {segments:?}"
        );
    }
    assert!(stdout.contains("segments:"), "{stdout}");
}
