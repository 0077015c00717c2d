//! Retention with the real viewer: `--max-size`, `--keep-free` (on a small
//! tmpfs the test mounts; needs root, as CI has) and `--keep-days` delete
//! the oldest closed segments, never an open one, and what is kept plays.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn plays(path: &Path) -> bool {
    require("ffprobe", "ffmpeg");
    Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name"])
        .arg(path)
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("mjpeg"))
        .unwrap_or(false)
}

/// File names the viewer says retention deleted.
fn deleted(viewer: &Viewer) -> Vec<String> {
    viewer
        .log()
        .lines()
        .filter_map(|l| l.split("retention: deleted ").nth(1))
        .map(|rest| rest.split(" (").next().unwrap_or(rest).to_owned())
        .collect()
}

fn name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Records 1-second segments until retention has deleted at least `n`,
/// stops, and waits for the pass after the last segment closed.
fn record_until_deleted(broker: &Broker, viewer: &Viewer, n: usize) {
    broker.publish("command/rec", "start");
    wait_for(&format!("{n} segments deleted"), SECS(60), || {
        (deleted(viewer).len() >= n).then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_state(broker, "idle", |s| s.state == "idle");
    // Closing the last segment starts one more pass within about a second.
    wait_for("the last segment closed", SECS(20), || {
        viewer.log().contains("recording closed").then_some(())
    });
}

/// Checks what is left: closed segments only newer than any deleted one,
/// each playing; no open segment was ever deleted.
fn check_kept_are_newest(recordings: &Path, viewer: &Viewer) -> Vec<PathBuf> {
    let gone = deleted(viewer);
    assert!(
        gone.iter().all(|p| p.ends_with(".mp4")),
        "retention touched an open segment: {gone:?}"
    );
    let kept = files(recordings, ".mp4");
    assert!(kept.len() >= 2, "kept {kept:?}");
    let newest_gone = gone.iter().map(|p| name(p)).max().unwrap();
    let oldest_kept = kept
        .iter()
        .map(|p| name(&p.to_string_lossy()))
        .min()
        .unwrap();
    assert!(
        newest_gone < oldest_kept,
        "{newest_gone} was deleted but {oldest_kept} is kept"
    );
    for segment in &kept {
        assert!(plays(segment), "{} does not play", segment.display());
    }
    let sizes: Vec<u64> = kept
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .collect();
    eprintln!(
        "{} segments deleted; kept {} of sizes {sizes:?}",
        gone.len(),
        kept.len()
    );
    kept
}

#[test]
fn max_size_keeps_the_newest_segments() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-budget", "320x240");
    let recordings = TempDir::new("max-size");
    // A 1-second segment of this camera is about 66 kB: a little over three.
    let budget = 230_000u64;
    let viewer = Viewer::start(
        &broker,
        &recordings.0,
        &["--segment-seconds", "1", "--max-size", "230KB"],
    );
    record_until_deleted(&broker, &viewer, 4);
    wait_for("the folder within its budget", SECS(20), || {
        let total: u64 = files(&recordings.0, "")
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        (total <= budget).then_some(())
    });
    check_kept_are_newest(&recordings.0, &viewer);
    let state = recording_state(&broker).unwrap();
    let retention = state.retention.expect("retention figures in the state");
    assert!(retention.deleted_segments >= 4, "{retention:?}");
}

/// A tmpfs of `size` at a fresh folder, unmounted when dropped.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = TempDir::new("tmpfs");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot mount a tmpfs at {}: this test needs root (CI runs as root)",
            dir.0.display()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0 .0).status();
    }
}

#[test]
fn keep_free_leaves_the_space_asked_for() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-free", "320x240");
    let fs = Tmpfs::mount("3m");
    let recordings = fs.0 .0.join("recordings");
    // 3 MiB with 2.9 MB kept free leaves room for about three segments.
    let keep_free = 2_900_000u64;
    let viewer = Viewer::start(
        &broker,
        &recordings,
        &["--segment-seconds", "1", "--keep-free", "2.9MB"],
    );
    record_until_deleted(&broker, &viewer, 4);
    wait_for("the free space kept", SECS(20), || {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&recordings)
            .output()
            .unwrap();
        let avail: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)?
            .trim()
            .parse()
            .ok()?;
        (avail >= keep_free).then_some(())
    });
    check_kept_are_newest(&recordings, &viewer);
    drop(viewer);
}

#[test]
fn keep_days_removes_old_sessions_by_their_names() {
    let broker = Broker::start();
    let recordings = TempDir::new("keep-days");
    let old = recordings.0.join("20200101T000000Z");
    std::fs::create_dir_all(old.join("pi-old/cam0")).unwrap();
    std::fs::write(old.join("pi-old/cam0/20200101T000000Z.mp4"), b"old").unwrap();
    std::fs::write(old.join("sensors.csv"), b"received_at,topic,payload\n").unwrap();
    let today = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let recent = recordings.0.join(&today);
    std::fs::create_dir_all(recent.join("pi-new/cam0")).unwrap();
    let kept = recent.join(format!("pi-new/cam0/{today}.mp4"));
    std::fs::write(&kept, b"new").unwrap();
    std::fs::create_dir_all(recordings.0.join("sensors")).unwrap();
    let old_daily = recordings.0.join("sensors/2020-01-01.csv");
    std::fs::write(&old_daily, b"received_at,topic,payload\n").unwrap();

    let viewer = Viewer::start(&broker, &recordings.0, &["--keep-days", "1"]);
    wait_for("the old session removed", SECS(20), || {
        (!old.exists() && !old_daily.exists()).then_some(())
    });
    assert!(kept.exists(), "a recent segment was deleted");
    assert!(
        viewer.log().contains("older than 1 days"),
        "{}",
        viewer.log()
    );
}
