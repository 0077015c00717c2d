//! A camera process writing MJPEG to stdout: `rpicam-vid`, `libcamera-vid`
//! or any `cmd:` command line.
//!
//! The process gets its own process group, so the whole pipeline a `cmd:`
//! shell starts is terminated together, and dies with the node (a
//! parent-death signal); its stderr goes to the log line by line, in the
//! camera's span, and to the camera's log ring.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tracing::Instrument;

use super::controls::{self, Controls};
use super::url::{Plan, UrlSource};
use super::{CaptureSettings, Output, Picture};
use crate::cameras::status::Status;
use crate::{h264, mjpeg};
use shared::frame::Codec;

/// How long a camera process may take to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Process groups of running cameras, for the exit-at-once path of a second
/// Ctrl-C, which cannot wait for the orderly shutdown.
static GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Kills every camera process group still running. Synchronous, for use
/// right before `process::exit`.
pub fn kill_all_camera_processes() {
    let groups = GROUPS
        .lock()
        .map(|mut g| g.take().unwrap_or_default())
        .unwrap_or_default();
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

fn register(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        g.get_or_insert_with(HashSet::new).insert(pgid);
    }
}

fn unregister(pgid: i32) {
    if let Ok(mut g) = GROUPS.lock() {
        if let Some(set) = g.as_mut() {
            set.remove(&pgid);
        }
    }
}

pub struct ProcessSource {
    program: String,
    /// What asks the program to stop: SIGINT for ffmpeg (it finishes its
    /// output), SIGTERM for the others.
    stop: Signal,
    child: Child,
    stdout: ChildStdout,
    pgid: i32,
    splitter: Splitting,
}

/// How the program's output is cut into pictures: as the camera was told
/// to write it, or (a `cmd:` source) as its first bytes say.
enum Splitting {
    Sniff(Vec<u8>),
    Mjpeg(mjpeg::Splitter),
    H264(h264::Splitter),
}

/// Bytes of a `cmd:` source's output looked at before its codec is
/// decided (a start code and a NAL header), unless it starts like a JPEG.
const SNIFF_BYTES: usize = 5;

/// The board's model, as the kernel names it ("Raspberry Pi 5 Model B
/// Rev 1.0"), under the machine's root.
const DEVICE_MODEL: &str = "proc/device-tree/model";

/// Whether the machine whose `/proc` is under `root` is a Pi 5 (its
/// rpicam-vid encodes H.264 in software, with B-frames unless told not to).
pub fn board_is_pi5(root: &std::path::Path) -> bool {
    std::fs::read_to_string(root.join(DEVICE_MODEL)).is_ok_and(|m| m.contains("Raspberry Pi 5"))
}

impl ProcessSource {
    /// `rpicam-vid` with the contract's flags, or `libcamera-vid` (older Pi OS).
    pub fn rpicam(s: CaptureSettings, controls: &Controls, status: &Arc<Status>) -> Result<Self> {
        let program = rpicam_program().context("neither rpicam-vid nor libcamera-vid is on PATH (on Pi OS: sudo apt install rpicam-apps)")?;
        let libav = s
            .h264
            .libav
            .unwrap_or_else(|| board_is_pi5(std::path::Path::new("/")));
        super::rpicam::check_camera(controls)?;
        let mut cmd = Command::new(&program);
        cmd.args(rpicam_args(&s, libav));
        cmd.args(controls::args(controls));
        let name = program.display().to_string();
        let mut source = Self::spawn(cmd, name, Signal::SIGTERM, status)?;
        source.splitter = match s.codec {
            Codec::Mjpeg => Splitting::Mjpeg(mjpeg::Splitter::default()),
            Codec::H264 => Splitting::H264(h264::Splitter::new()),
        };
        Ok(source)
    }

    /// A `cmd:` source, run by `sh -c` so pipes and quoting work as typed.
    pub fn shell(command_line: &str, status: &Arc<Status>) -> Result<Self> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command_line);
        Self::spawn(
            cmd,
            format!("sh -c {command_line:?}"),
            Signal::SIGTERM,
            status,
        )
    }

    /// ffmpeg reading a URL or device: one fixed argument list, no shell.
    pub fn ffmpeg(
        source: &UrlSource,
        out: &Output,
        plan: Plan,
        status: &Arc<Status>,
    ) -> Result<Self> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(source.ffmpeg_args(out, plan));
        let mut source = Self::spawn(cmd, "ffmpeg".into(), Signal::SIGINT, status)
            .map_err(|e| e.context("is ffmpeg installed? (sudo apt install ffmpeg)"))?;
        source.splitter = match plan.codec() {
            Codec::Mjpeg => Splitting::Mjpeg(mjpeg::Splitter::default()),
            Codec::H264 => Splitting::H264(h264::Splitter::new()),
        };
        Ok(source)
    }

    fn spawn(
        mut cmd: Command,
        program: String,
        stop: Signal,
        status: &Arc<Status>,
    ) -> Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        die_with_the_node(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", status.scrubbed(&program)))?;
        let pid = child.id().context("camera process exited at once")? as i32;
        register(pid);
        status.set_pid(Some(pid as u32));
        status.note(&format!("started {program} (pid {pid})"));
        let stdout = child
            .stdout
            .take()
            .context("camera process has no stdout")?;
        if let Some(stderr) = child.stderr.take() {
            let from = program
                .split_whitespace()
                .next()
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or("camera")
                .to_owned();
            tokio::spawn(log_lines(stderr, from, Arc::clone(status)).in_current_span());
        }
        Ok(ProcessSource {
            program,
            stop,
            child,
            stdout,
            pgid: pid,
            splitter: Splitting::Sniff(Vec::new()),
        })
    }

    pub async fn next_frame(&mut self) -> Result<Picture> {
        loop {
            if let Some(picture) = self.splitter.next(&self.program) {
                return Ok(picture);
            }
            let read = match &mut self.splitter {
                Splitting::Sniff(seen) => {
                    let mut byte = [0u8; 1];
                    let n = self.stdout.read(&mut byte).await;
                    if let Ok(1) = n {
                        seen.push(byte[0]);
                        self.splitter.decide();
                    }
                    n
                }
                Splitting::Mjpeg(s) => self.stdout.read_buf(s.read_buf()).await,
                Splitting::H264(s) => self.stdout.read_buf(s.read_buf()).await,
            };
            let n = read.with_context(|| format!("reading from {}", self.program))?;
            if n == 0 {
                let status = tokio::time::timeout(TERM_GRACE, self.child.wait()).await;
                match status {
                    Ok(Ok(status)) => bail!("{} exited ({status})", self.program),
                    _ => bail!("{} closed its output", self.program),
                }
            }
        }
    }

    /// SIGINT or SIGTERM to the group, SIGKILL after [`TERM_GRACE`], then reaped.
    pub async fn close(mut self) {
        let group = Pid::from_raw(self.pgid);
        let _ = killpg(group, self.stop);
        if tokio::time::timeout(TERM_GRACE, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!("{} ignored {}; killing it", self.program, self.stop);
        }
        // Also takes down what the leader left behind in its group.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait().await;
        unregister(self.pgid);
    }
}

impl Splitting {
    /// The next picture, logging what the splitter dropped on the way.
    fn next(&mut self, program: &str) -> Option<Picture> {
        match self {
            Splitting::Sniff(_) => None,
            Splitting::Mjpeg(s) => loop {
                match s.next_frame()? {
                    Ok(frame) => return Some(Picture::jpeg(frame)),
                    Err(warning) => tracing::warn!("camera stream: {warning}"),
                }
            },
            Splitting::H264(s) => loop {
                match s.next_unit()? {
                    Ok(au) => {
                        return Some(Picture {
                            codec: Codec::H264,
                            key: au.key,
                            data: au.data,
                        })
                    }
                    Err(h264::Warning::NewParams {
                        width,
                        height,
                        codec,
                    }) => tracing::info!("{program}: H.264 {width}x{height} ({codec})"),
                    Err(warning @ h264::Warning::BFrames) => {
                        tracing::error!("camera stream: {warning}")
                    }
                    Err(warning) => tracing::warn!("camera stream: {warning}"),
                }
            },
        }
    }

    /// Once enough of a `cmd:` source's output is seen: H.264 when it
    /// starts with a start code and a NAL unit, else MJPEG (whose splitter
    /// skips and reports anything before the first JPEG).
    fn decide(&mut self) {
        let Splitting::Sniff(seen) = self else {
            return;
        };
        if seen.len() < SNIFF_BYTES && seen.first() != Some(&0xFF) {
            return;
        }
        let seen = std::mem::take(seen);
        *self = if h264::looks_like_annex_b(&seen) {
            tracing::info!("the camera writes H.264 (Annex B)");
            let mut s = h264::Splitter::new();
            s.push(&seen);
            Splitting::H264(s)
        } else {
            let mut s = mjpeg::Splitter::default();
            s.push(&seen);
            Splitting::Mjpeg(s)
        };
    }
}

/// `rpicam-vid`, or `libcamera-vid` on older Pi OS, where it is on PATH.
pub fn rpicam_program() -> Option<PathBuf> {
    ["rpicam-vid", "libcamera-vid"]
        .into_iter()
        .find_map(find_in_path)
}

/// rpicam-vid's flags: the contract's for MJPEG; for H.264 the hardware
/// encoder's settings with SPS/PPS before every keyframe, and on a Pi 5
/// (software encoder) the flags that make it write raw H.264 to a pipe
/// without B-frames.
fn rpicam_args(s: &CaptureSettings, libav: bool) -> Vec<String> {
    let mut args: Vec<String> = ["-t", "0", "-n"].map(String::from).to_vec();
    match s.codec {
        Codec::Mjpeg => {
            args.extend(["--codec", "mjpeg", "--flush"].map(String::from));
            args.extend(["-q".into(), s.quality.to_string()]);
        }
        Codec::H264 => {
            let h = &s.h264;
            args.extend(["--codec", "h264", "--inline", "--flush"].map(String::from));
            args.extend([
                "--intra".into(),
                (s.fps * h.keyframe_seconds.max(1)).to_string(),
            ]);
            args.extend(["--profile".into(), h.profile.as_str().into()]);
            args.extend([
                "--level".into(),
                match h.level {
                    40 => "4".into(),
                    l => format!("{}.{}", l / 10, l % 10),
                },
            ]);
            args.extend([
                "--bitrate".into(),
                h.bitrate_for(s.width, s.height, s.fps).to_string(),
            ]);
            if libav {
                args.extend(["--libav-format", "h264", "--low-latency"].map(String::from));
            }
        }
    }
    args.extend(["--width".into(), s.width.to_string()]);
    args.extend(["--height".into(), s.height.to_string()]);
    args.extend([
        "--framerate".into(),
        s.fps.to_string(),
        "-o".into(),
        "-".into(),
    ]);
    args
}

impl Drop for ProcessSource {
    fn drop(&mut self) {
        // Closed sources are already gone (ESRCH is ignored); this covers a
        // run abandoned without close().
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
        unregister(self.pgid);
    }
}

/// `name` as found on PATH, executable.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Longest stderr line logged whole; longer ones are cut.
const MAX_STDERR_LINE: u64 = 4096;

/// Asks the kernel to kill the program when the node's thread that
/// started it dies, so a node killed with SIGKILL leaves no converter
/// running (the tokio worker threads live as long as the node).
fn die_with_the_node(cmd: &mut Command) {
    #[allow(unsafe_code)]
    // SAFETY: the closure runs between fork and exec and calls only
    // prctl(2), which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// Logs a camera process's stderr line by line until it closes.
async fn log_lines(stderr: impl AsyncRead + Unpin, from: String, status: Arc<Status>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_STDERR_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                if !text.is_empty() {
                    let text = status.scrubbed(text);
                    tracing::info!("{from}: {text}");
                    status.line(&from, &text);
                }
            }
        }
    }
}
