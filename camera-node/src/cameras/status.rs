//! What a camera's supervisor is doing, for the API, the dashboard and the
//! retained state topic: its state, restarts, last error, its last runs and
//! the last lines of its converter's log (a bounded ring, passwords
//! scrubbed before a line is stored).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::source::secrets::scrub;

/// Lines kept per camera, and the longest line kept whole.
pub const LOG_LINES: usize = 200;
pub const LOG_LINE_MAX: usize = 1024;
/// Runs kept per camera.
pub const RUNS_KEPT: usize = 10;

pub use shared::messages::RunState;

/// One run of a camera's source.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub frames: u64,
    /// How it ended: the exit status, the watchdog, a stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub at: String,
    /// `node` for the supervisor's own lines, else the program's name.
    pub from: String,
    pub text: String,
}

#[derive(Debug)]
struct Inner {
    state: RunState,
    restarts: u64,
    last_error: Option<String>,
    runs: VecDeque<Run>,
    log: VecDeque<LogLine>,
    /// What the converter does with its input (`copy mjpeg 640x480`).
    input: Option<String>,
    pid: Option<u32>,
    /// The converter's CPU time at the last look, for a rate.
    cpu_seen: Option<(Instant, Duration)>,
}

/// One camera's supervision record. Every change bumps [`Status::watch`].
#[derive(Debug)]
pub struct Status {
    inner: Mutex<Inner>,
    /// Passwords of the camera's source, scrubbed from every log line.
    secrets: Mutex<Vec<String>>,
    /// Frames of the current run: counted per frame without the lock,
    /// written into the run when it ends.
    run_frames: std::sync::atomic::AtomicU64,
    changed: watch::Sender<u64>,
}

/// A copy of the record for an answer.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub state: RunState,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub input: Option<String>,
    pub runs: Vec<Run>,
    pub converter: Option<Converter>,
}

/// The converter process's load.
#[derive(Debug, Clone, Serialize)]
pub struct Converter {
    pub pid: u32,
    /// Percent of one core since the last look (or since it started).
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Status {
    pub fn new(state: RunState) -> Self {
        Status {
            inner: Mutex::new(Inner {
                state,
                restarts: 0,
                last_error: None,
                runs: VecDeque::new(),
                log: VecDeque::new(),
                input: None,
                pid: None,
                cpu_seen: None,
            }),
            secrets: Mutex::default(),
            run_frames: std::sync::atomic::AtomicU64::new(0),
            changed: watch::Sender::new(0),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("status lock")
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Tells the watchers something of the camera changed (a push's state).
    pub fn touch(&self) {
        self.bump();
    }

    /// Wakes on every change (state, restarts, error; not log lines).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn set_secrets(&self, secrets: Vec<String>) {
        *self.secrets.lock().expect("secrets lock") = secrets;
    }

    pub fn state(&self) -> RunState {
        self.inner().state
    }

    pub fn set_state(&self, state: RunState) {
        let changed = {
            let mut inner = self.inner();
            std::mem::replace(&mut inner.state, state) != state
        };
        if changed {
            self.bump();
        }
    }

    pub fn set_input(&self, input: String) {
        self.inner().input = Some(input);
    }

    pub fn set_pid(&self, pid: Option<u32>) {
        let mut inner = self.inner();
        inner.pid = pid;
        inner.cpu_seen = None;
    }

    /// A run begins (its start is logged by the caller).
    pub fn run_started(&self) {
        self.run_frames.store(0, Ordering::Relaxed);
        let mut inner = self.inner();
        if inner.runs.len() == RUNS_KEPT {
            inner.runs.pop_front();
        }
        inner.runs.push_back(Run {
            started_at: now(),
            ended_at: None,
            frames: 0,
            end: None,
        });
    }

    /// Once per frame: no lock on the camera's path.
    pub fn count_frame(&self) {
        self.run_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// The run ended; `error` (scrubbed) becomes the last error.
    pub fn run_ended(&self, end: &str, error: Option<&str>, counts_as_restart: bool) {
        let end = self.scrubbed(end);
        {
            let mut inner = self.inner();
            if let Some(run) = inner.runs.back_mut() {
                run.ended_at = Some(now());
                run.end = Some(end);
                run.frames = self.run_frames.load(Ordering::Relaxed);
            }
            if let Some(error) = error {
                inner.last_error = Some(self.scrubbed(error));
            }
            if counts_as_restart {
                inner.restarts += 1;
            }
            inner.pid = None;
        }
        self.bump();
    }

    /// Adds a line to the ring (scrubbed, cut to [`LOG_LINE_MAX`]).
    pub fn line(&self, from: &str, text: &str) {
        let mut text = self.scrubbed(text);
        if text.len() > LOG_LINE_MAX {
            let mut cut = LOG_LINE_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let mut inner = self.inner();
        if inner.log.len() == LOG_LINES {
            inner.log.pop_front();
        }
        inner.log.push_back(LogLine {
            at: now(),
            from: from.to_owned(),
            text,
        });
    }

    /// A supervisor line: to the ring and to the node's log.
    pub fn note(&self, text: &str) {
        let text = self.scrubbed(text);
        tracing::info!("{text}");
        self.line("node", &text);
    }

    /// The same, as a warning in the node's log.
    pub fn warn(&self, text: &str) {
        let text = self.scrubbed(text);
        tracing::warn!("{text}");
        self.line("node", &text);
    }

    pub fn scrubbed(&self, text: &str) -> String {
        scrub(text, &self.secrets.lock().expect("secrets lock"))
    }

    pub fn log(&self) -> Vec<LogLine> {
        self.inner().log.iter().cloned().collect()
    }

    pub fn restarts(&self) -> u64 {
        self.inner().restarts
    }

    pub fn view(&self) -> StatusView {
        let mut inner = self.inner();
        let converter = inner.pid.map(|pid| {
            let cpu = cpu_time(pid);
            let now = Instant::now();
            let cpu_percent = match (cpu, inner.cpu_seen) {
                (Some(cpu), Some((then, before))) if now > then => Some(
                    cpu.saturating_sub(before).as_secs_f64() / (now - then).as_secs_f64() * 100.0,
                ),
                _ => None,
            };
            if let Some(cpu) = cpu {
                inner.cpu_seen = Some((now, cpu));
            }
            Converter {
                pid,
                cpu_percent,
                rss_bytes: rss(pid),
            }
        });
        StatusView {
            state: inner.state,
            restarts: inner.restarts,
            last_error: inner.last_error.clone(),
            input: inner.input.clone(),
            runs: {
                let mut runs: Vec<Run> = inner.runs.iter().cloned().collect();
                // The run going on: its frames so far.
                if let Some(run) = runs.last_mut().filter(|r| r.ended_at.is_none()) {
                    run.frames = self.run_frames.load(Ordering::Relaxed);
                }
                runs
            },
            converter,
        }
    }
}

/// A process's user + system CPU time, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields count from after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// A process's resident memory, from `/proc/<pid>/statm`.
fn rss(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some(pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_and_scrubbed() {
        let s = Status::new(RunState::Starting);
        s.set_secrets(vec!["hunter2".into()]);
        for i in 0..LOG_LINES + 50 {
            s.line("ffmpeg", &format!("line {i} rtsp://u:hunter2@h/x"));
        }
        let log = s.log();
        assert_eq!(log.len(), LOG_LINES);
        assert!(log[0].text.starts_with("line 50 "));
        assert!(log.iter().all(|l| !l.text.contains("hunter2")));
        s.line("ffmpeg", &"x".repeat(LOG_LINE_MAX * 3));
        assert!(s.log().last().unwrap().text.len() <= LOG_LINE_MAX + 3);
    }

    #[test]
    fn runs_are_counted_and_bounded() {
        let s = Status::new(RunState::Starting);
        let mut changes = s.watch();
        for _ in 0..RUNS_KEPT + 3 {
            s.run_started();
            s.count_frame();
            s.run_ended("exit status: 1", Some("exited"), true);
        }
        let v = s.view();
        assert_eq!(
            (v.runs.len(), v.restarts),
            (RUNS_KEPT, RUNS_KEPT as u64 + 3)
        );
        assert_eq!(v.runs[0].frames, 1);
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        s.set_state(RunState::Running);
        assert!(changes.has_changed().unwrap());
    }

    #[test]
    fn our_own_process_has_a_cpu_time_and_rss() {
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        assert!(rss(me).unwrap() > 0);
    }
}
