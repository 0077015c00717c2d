//! The real camera-node binary, and fake `rpicam-vid`/`libcamera-vid`.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{require, wait_for, words, TempDir};

/// The camera-node binary (see [`crate::binary`]).
pub fn node_binary() -> PathBuf {
    crate::binary("camera-node")
}

/// The real camera-node binary; its log goes to a file the test can read.
pub struct Node {
    pub child: Option<Child>,
    pub dir: TempDir,
}

impl Node {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_command(Command::new(node_binary()), args, env)
    }

    /// Starts `program` (a wrapper such as qemu, with its own arguments and
    /// the node binary) followed by the node's `args`.
    pub fn start_command(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("node");
        let log = std::fs::File::create(dir.path("node.log")).unwrap();
        // Many nodes run at once: RTSP and HTTP on free ports unless a flag says otherwise.
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("CAMFLEET_RTSP_PORT", "0")
            .env("CAMFLEET_HTTP_PORT", "0")
            .env_remove("CAMFLEET_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start camera-node");
        Node {
            child: Some(child),
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("node.log")).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, limit: Duration) {
        wait_for(&format!("{needle:?} in the node log"), limit, || {
            self.log().contains(needle).then_some(())
        });
    }

    /// The TCP port of a camera, from the node's log.
    pub fn tcp_port(&self, camera: &str) -> u16 {
        let needle = format!("serving {camera} on TCP port ");
        wait_for(&needle, Duration::from_secs(20), || {
            let log = self.log();
            let at = log.find(&needle)? + needle.len();
            log[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the node to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        wait_for("the node to exit", limit, || child.try_wait().unwrap())
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `VmHWM:`).
    pub fn status_kib(&self, field: &str) -> u64 {
        crate::status_kib(self.pid(), field)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- camera-node log ----\n{}", self.log());
        }
    }
}

/// Runs camera-node to completion (for start-up errors).
pub fn run_node(args: &[&str]) -> Output {
    Command::new(node_binary())
        .args(args)
        .env("CAMFLEET_RTSP_PORT", "0")
        .env("CAMFLEET_HTTP_PORT", "0")
        .env_remove("CAMFLEET_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run camera-node")
}

pub fn node_args<'a>(broker: &'a str, node_id: &'a str, source: &'a str) -> Vec<&'a str> {
    [node_base_args(broker, node_id), vec!["--source", source]].concat()
}

/// Broker, id, every port free, loopback advertised, no temperature: the
/// source is left to the caller (or its config file).
pub fn node_base_args<'a>(broker: &'a str, node_id: &'a str) -> Vec<&'a str> {
    node_base_args_on(broker, node_id, "0")
}

/// [`node_base_args`] with the HTTP server on `http_port`: for a node whose
/// page another program reads, found again on the same port after a restart.
pub fn node_base_args_on<'a>(
    broker: &'a str,
    node_id: &'a str,
    http_port: &'a str,
) -> Vec<&'a str> {
    vec![
        "--broker",
        broker,
        "--node-id",
        node_id,
        "--tcp-port",
        "0",
        "--rtsp-port",
        "0",
        "--http-port",
        http_port,
        "--advertise-host",
        "127.0.0.1",
        "--no-cpu-temp",
    ]
}

/// A test camera: [`node_args`] with a `size` of `WxH` at 10 fps.
pub fn camera_args<'a>(
    broker: &'a str,
    node_id: &'a str,
    source: &'a str,
    size: &'a str,
) -> Vec<&'a str> {
    let (width, height) = size.split_once('x').expect("a size like 320x240");
    [
        node_args(broker, node_id, source),
        vec!["--width", width, "--height", height, "--fps", "10"],
    ]
    .concat()
}

/// What the stand-ins answer to `--list-cameras`, as rpicam-vid prints
/// it: one Camera Module 3, and with `FAKE_CAMERAS=2` in the environment a
/// Camera Module 2 on the second connector (a Pi 5). Not an invocation.
const LIST_CAMERAS: &str = r#"case " $* " in *" --list-cameras "*)
  echo "Available cameras"
  echo "-----------------"
  echo "0 : imx708 [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)"
  echo "    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]"
  echo "                             4608x2592 [14.35 fps - (0, 0)/4608x2592 crop]"
  if [ "${FAKE_CAMERAS:-1}" -ge 2 ]; then
    echo ""
    echo "1 : imx219 [3280x2464 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@80000/imx219@10)"
    echo "    Modes: 'SRGGB10_CSI2P' : 640x480 [206.65 fps - (1000, 752)/1280x960 crop]"
  fi
  exit 0;;
esac"#;

/// A stand-in for rpicam-vid/libcamera-vid: checks the contract's flags,
/// records its pid and flags, then streams MJPEG at the size and rate it
/// was asked for.
pub fn fake_camera_script(dir: &TempDir, name: &str) {
    require("ffmpeg", "ffmpeg");
    let log = dir.path("invocations");
    dir.script(
        name,
        &format!(
            r#"#!/bin/sh
{LIST_CAMERAS}
args=" $* "
echo "$$ $*" >> '{log}'
for want in "-t 0" "-n" "--codec mjpeg" "--flush" "-o -" "--width 320" "--height 240" "--framerate 10" "-q 70"; do
  case "$args" in *" $want "*) ;; *) echo "fake {name}: missing '$want' in:$args" >&2; exit 3;; esac
done
exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=10 -f mjpeg -q:v 5 -huffman default -
"#,
            log = log.display()
        ),
    );
}

/// A stand-in for rpicam-vid with `--codec h264`: records its flags, then
/// writes what the Pi 4's hardware encoder writes (Annex B, no AUDs,
/// SPS/PPS before every keyframe as `--inline` asks, no B-frames, a
/// keyframe every `--intra` frames) at the size and rate asked for, each
/// picture's number stamped in its top left ([`stamped_number`] reads
/// it); with `FAKE_PI5=1` in its environment it is a Pi 5's software
/// encoder, which writes B-frames unless given `--low-latency`.
pub fn fake_h264_camera_script(dir: &TempDir, name: &str) {
    require("ffmpeg", "ffmpeg");
    let log = dir.path("invocations");
    dir.script(
        name,
        &format!(
            r#"#!/bin/sh
{LIST_CAMERAS}
echo "$$ $*" >> '{log}'
args=" $* "
for want in "-t 0" "-n" "--codec h264" "--inline" "--flush" "-o -"; do
  case "$args" in *" $want "*) ;; *) echo "fake {name}: missing '$want' in:$args" >&2; exit 3;; esac
done
w=640; h=480; fps=30; intra=60
while [ $# -gt 0 ]; do
  case "$1" in
    --width) w=$2; shift;; --height) h=$2; shift;; --framerate) fps=$2; shift;; --intra) intra=$2; shift;;
  esac
  shift
done
case "$args" in
  *" --low-latency "*) tune="-preset ultrafast -tune zerolatency -bf 0";;
  *) if [ "$FAKE_PI5" = 1 ]; then tune="-preset superfast -bf 2"; else tune="-preset ultrafast -tune zerolatency -bf 0"; fi;;
esac
b=$((w / {STAMP_DIVISOR}))
stamp="drawbox=x=0:y=0:w=$((b * {STAMP_BITS})):h=$b:color=black:t=fill"
i=0
while [ $i -lt {STAMP_BITS} ]; do
  stamp="$stamp,drawbox=x=$((i * b)):y=0:w=$b:h=$b:color=white:t=fill:enable='bitand(n\,$((1 << i)))'"
  i=$((i + 1))
done
exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=${{w}}x${{h}}:rate=$fps -vf "$stamp"  -c:v libx264 $tune -g $intra -keyint_min $intra -sc_threshold 0 -pix_fmt yuv420p   -x264-params repeat-headers=1:aud=0 -f h264 -
"#,
            log = log.display()
        ),
    );
}

/// The bits of the H.264 stand-in's stamp: frame numbers up to 4095.
const STAMP_BITS: u32 = 12;
/// A stamp's square is this fraction of the picture's width.
const STAMP_DIVISOR: u32 = 16;

/// The number the H.264 stand-in stamped on a decoded grey picture of
/// `width` (a row of squares, white for a 1 bit, least significant
/// first); `None` when a square is neither clearly white nor black.
pub fn stamped_number(grey: &[u8], width: u32) -> Option<u64> {
    let side = (width / STAMP_DIVISOR) as usize;
    let mut number = 0;
    for bit in 0..STAMP_BITS as usize {
        let centre = *grey.get(side / 2 * width as usize + bit * side + side / 2)?;
        match centre {
            0..=63 => {}
            192..=255 => number |= 1 << bit,
            _ => return None,
        }
    }
    Some(number)
}

/// A node on `--source rpicam` with a fake `program` first on PATH; the
/// directory holds the fake's `invocations` log.
pub fn start_on_fake_camera(url: &str, node_id: &str, program: &str) -> (Node, TempDir) {
    let bin = TempDir::new("fakecam");
    fake_camera_script(&bin, program);
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let size = words("--width 320 --height 240 --fps 10 --quality 70");
    let node = Node::start_with_env(
        &[node_args(url, node_id, "rpicam"), size].concat(),
        &[("PATH", &path)],
    );
    (node, bin)
}

pub fn invocations(dir: &TempDir) -> Vec<String> {
    std::fs::read_to_string(dir.path("invocations"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
