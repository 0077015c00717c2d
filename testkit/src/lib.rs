//! camfleet's end-to-end test harness: real mosquitto, the real
//! camera-node and viewer binaries, real ffmpeg, nginx and Chromium, all on
//! free loopback ports; clients that read as a user's tools would. A
//! dev-dependency of camera-node and viewer (their `tests/`, the viewer's
//! `benches/`), and a dependency of the fan-out benchmark (`bench/`),
//! whose binary starts the node with [`node_base_args`].
//!
//! # Layout
//!
//! - this file: waiting, free ports, scratch directories, programs a test
//!   needs, small file and process helpers, [`Rng`], [`binary`]
//! - `broker`: mosquitto per test, `mosquitto_sub`/`mosquitto_pub`
//! - `node`: the camera-node binary, its flags, fake `rpicam-vid`
//! - `client`: a TCP frame protocol v1 reader
//! - `web`: curl, multipart MJPEG, a raw RTSP client
//! - [`api`]: the node's camera API; [`rtmp`]: nginx-rtmp and an ffmpeg drone
//! - [`viewers`]: the viewer binary, test nodes, what it records
//! - [`demo`]: `viewer demo`; [`browser`]: headless Chromium over WebDriver
//! - [`live`]: a live WebSocket client from the RFC alone
//!
//! # Where the binaries come from
//!
//! Cargo hands an integration test the path of its own package's binaries
//! as `env!("CARGO_BIN_EXE_<name>")` at compile time, which a library
//! cannot see, and builds no other package's binaries for it. [`binary`]
//! looks at run time instead: `CARGO_BIN_EXE_<name>` in the environment
//! (recent cargo sets it there too for the package's own binaries),
//! `NEXTEST_BIN_EXE_<name>` (cargo-nextest, the same), else beside the
//! running test: tests run as `target/<profile>/deps/<test>-<hash>` and
//! every workspace binary is built to `target/<profile>/<name>`. So a
//! viewer test that starts camera-node needs it built:
//! `cargo test --workspace` (scripts/test.sh, CI) builds every member's
//! binaries; `cargo test -p viewer` alone needs a `cargo build -p
//! camera-node` first, and says so.

pub mod api;
mod broker;
pub mod browser;
mod client;
pub mod demo;
pub mod flags;
pub mod gst;
pub mod live;
mod node;
pub mod pi;
pub mod rtmp;
pub mod viewers;
mod web;
pub mod webcam;

pub use broker::{mosquitto_sub, Broker, Watcher};
pub use client::{FrameClient, Received, SlowLink};
pub use node::{
    camera_args, fake_camera_script, fake_h264_camera_script, invocations, node_args,
    node_base_args, node_base_args_on, node_binary, run_node, stamped_number, start_on_fake_camera,
    Node,
};
pub use web::{
    curl, metric_value, post_json, promtool_accepts, read_multipart, rtsp_decode, HttpReply, Part,
    RtspClient, RtspReply,
};

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Fails with how to install a missing program; tests never skip.
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "`{program}` is not installed: run `sudo apt-get install {package}` (or scripts/test.sh, which installs it)");
}

/// A binary of this workspace by its target name (`camera-node`,
/// `viewer`): from cargo's or nextest's `*_BIN_EXE_<name>` when the
/// running test belongs to the binary's package, else beside the test
/// executable (see the crate's doc). Fails with the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    for var in [
        format!("CARGO_BIN_EXE_{name}"),
        format!("NEXTEST_BIN_EXE_{name}"),
    ] {
        if let Some(path) = std::env::var_os(var) {
            return path.into();
        }
    }
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: cargo build -p {name} (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// xorshift64*: a few lines, and the same random choices for the same
/// seed (a test prints its seed so a failure can be replayed). The seed
/// must not be 0.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

/// A `/proc/<pid>/status` figure of any process in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A process's resident memory in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Polls `check` until it gives a value, failing after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("camfleet-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes an executable script.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A JPEG's size as its frame header gives it (the workspace's one parser,
/// [`shared::jpeg::dimensions`]), once the whole picture decodes: the tests
/// that size a frame also say it is a whole JPEG.
pub fn jpeg_size(jpeg: &[u8]) -> (u32, u32) {
    image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .expect("a JPEG that decodes");
    let (width, height) = shared::jpeg::dimensions(jpeg).expect("a JPEG with a frame header");
    (width.into(), height.into())
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The `cmd:` source of the contract's ffmpeg camera at a given size and rate.
pub fn ffmpeg_camera(width: u32, height: u32, fps: u32) -> String {
    require("ffmpeg", "ffmpeg");
    format!(
        "cmd:exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size={width}x{height}:rate={fps} \
         -f mjpeg -q:v 5 -huffman default -"
    )
}

pub fn is_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; only count running states.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub fn write(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// An MJPEG file (one JPEG when `frames` is 1) of ffmpeg's test picture,
/// baseline 4:2:0 with the standard Huffman tables like `rpicam-vid`.
pub fn make_mjpeg(path: &Path, size: &str, frames: u32) {
    require("ffmpeg", "ffmpeg");
    let made = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=10"),
        ])
        .args([
            "-frames:v",
            &frames.to_string(),
            "-f",
            "mjpeg",
            "-q:v",
            "5",
            "-huffman",
            "default",
        ])
        .arg(path)
        .status()
        .expect("run ffmpeg");
    assert!(made.success(), "ffmpeg could not make {}", path.display());
}

/// Command-line words from one string, to keep argument lists short.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs a command with `input` on its stdin to completion: its output,
/// whatever its exit.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a command to completion and returns its stdout; fails the test with
/// its stderr when it does not succeed.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Both binaries log their shutdown steps; all of them, in order.
pub fn assert_shutdown_in_order(log: &str) {
    let at = [
        "shutdown 1/3",
        "shutdown 2/3",
        "shutdown 3/3",
        "shutdown complete",
    ]
    .map(|s| log.find(s));
    assert!(
        at.iter().all(Option::is_some) && at.is_sorted(),
        "shutdown steps in order:\n{log}"
    );
}
