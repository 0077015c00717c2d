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
use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tracing::Instrument;

use super::url::UrlSource;
use super::{CaptureSettings, Output};
use crate::cameras::status::Status;
use crate::mjpeg::Splitter;

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
    splitter: Splitter,
}

impl ProcessSource {
    /// `rpicam-vid` with the contract's flags, or `libcamera-vid` (older Pi OS).
    pub fn rpicam(s: CaptureSettings, status: &Arc<Status>) -> Result<Self> {
        let program = ["rpicam-vid", "libcamera-vid"]
            .into_iter()
            .find_map(find_in_path)
            .context("neither rpicam-vid nor libcamera-vid is on PATH (on Pi OS: sudo apt install rpicam-apps)")?;
        let mut cmd = Command::new(&program);
        cmd.args(["-t", "0", "-n", "--codec", "mjpeg", "--flush"])
            .args(["-q", &s.quality.to_string()])
            .args([
                "--width",
                &s.width.to_string(),
                "--height",
                &s.height.to_string(),
            ])
            .args(["--framerate", &s.fps.to_string(), "-o", "-"]);
        let name = program.display().to_string();
        Self::spawn(cmd, name, Signal::SIGTERM, status)
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
        copy: bool,
        status: &Arc<Status>,
    ) -> Result<Self> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(source.ffmpeg_args(out, copy));
        Self::spawn(cmd, "ffmpeg".into(), Signal::SIGINT, status)
            .map_err(|e| e.context("is ffmpeg installed? (sudo apt install ffmpeg)"))
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
            splitter: Splitter::default(),
        })
    }

    pub async fn next_frame(&mut self) -> Result<Bytes> {
        loop {
            while let Some(split) = self.splitter.next_frame() {
                match split {
                    Ok(frame) => return Ok(frame),
                    Err(warning) => {
                        tracing::warn!("camera stream: {warning}")
                    }
                }
            }
            let n = self
                .stdout
                .read_buf(self.splitter.read_buf())
                .await
                .with_context(|| format!("reading from {}", self.program))?;
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

fn find_in_path(name: &str) -> Option<PathBuf> {
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
