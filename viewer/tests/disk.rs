//! A full disk: the segment being written stops with an error on the state
//! topic, closed segments stay playable, recording resumes when space is
//! back. The disk is a small tmpfs mounted for the test (needs root, as CI
//! runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A tmpfs of `size` at a fresh directory, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("camfleet-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn plays(path: &Path) -> bool {
    Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_full_disk_is_reported_closed_segments_play_and_recording_resumes() {
    require("ffmpeg", "ffmpeg");
    let disk = SmallDisk::mount("12m");
    let filler = disk.0.join("filler");
    // 2 MB left: full within seconds; freeing the filler gives about 8 s more.
    std::fs::write(&filler, vec![0u8; 10_000_000]).unwrap();
    let broker = Broker::start();
    let url = broker.url();
    let _node = Node::start(
        &[
            node_args(&url, "pi-full", &ffmpeg_camera(640, 480, 30)),
            words("--fps 30"),
        ]
        .concat(),
    );
    let recordings = disk.0.join("rec");
    let viewer = Viewer::start(&broker, &recordings, &["--segment-seconds", "1"]);
    viewer.wait_log("camera{camera=pi-full/cam0}: connected", SECS(20));
    broker.publish("command/rec", "start");
    let full = wait_state(&broker, "a write error on the state topic", |s| {
        s.error.is_some()
    });
    assert!(
        full.error.as_deref().unwrap().contains("No space left"),
        "{:?}",
        full.error
    );
    assert_eq!(full.state, "recording", "the session goes on");
    viewer.wait_log("No space left on device", SECS(5));
    let closed = files(&recordings, ".mp4");
    assert!(
        !closed.is_empty(),
        "some segments closed before the disk filled"
    );
    for seg in &closed {
        assert!(plays(seg), "{} does not play", seg.display());
    }
    // Space is back: recording resumes and the error clears.
    std::fs::remove_file(&filler).unwrap();
    viewer.wait_log("recording again after the write error", SECS(20));
    wait_state(&broker, "the error to clear", |s| {
        s.error.is_none() && s.state == "recording"
    });
    let after = files(&recordings, ".mp4");
    assert!(
        after.len() > closed.len(),
        "new segments after the space came back"
    );
    broker.publish("command/rec", "stop");
    wait_state(&broker, "idle", |s| s.state == "idle");
}
