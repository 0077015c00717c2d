//! The README's first command works: scripts/demo.sh brings up a broker and
//! a test-source node and reads a frame over the TCP protocol.

mod common;

use common::*;

#[test]
fn the_demo_script_saves_a_frame_from_the_test_source() {
    require("mosquitto", "mosquitto");
    let dir = TempDir::new("demo");
    let out = dir.path("frame.jpg");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo.sh");
    let run = std::process::Command::new("bash")
        .args([script, "--once"])
        .env("CAMERA_NODE_BIN", env!("CARGO_BIN_EXE_camera-node"))
        .env("DEMO_OUT", &out)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("\"node_id\":\"demo-node\""), "{stdout}");
    assert_eq!(jpeg_size(&std::fs::read(&out).unwrap()), (640, 480));
}
