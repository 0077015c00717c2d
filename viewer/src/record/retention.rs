//! Keeps the recordings within their budget: segments older than
//! `keep_days`, then the oldest closed segments while the folder is over
//! `max_size` or its file system has less free space than `keep_free`.
//! Never an open segment (`.part`); a session's `sensors.csv` and folder go
//! with its last segment. Each deletion is logged with its reason.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// How often the recordings are checked (and at start, and when a write
/// fails): a 1080p camera writes about 200 MB in that time at most.
pub const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Free space to leave on the recordings' file system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeepFree {
    Bytes(u64),
    /// Percent of the file system's size.
    Percent(f64),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub keep_days: Option<u32>,
    pub keep_free: Option<KeepFree>,
    pub max_size: Option<u64>,
}

/// What retention has deleted since the viewer started.
#[derive(Debug, Default)]
pub struct Freed {
    pub segments: AtomicU64,
    pub bytes: AtomicU64,
    /// What the recordings folder held after the last pass (passes run
    /// without a budget too, for this figure).
    pub holding: AtomicU64,
}

/// A size: bytes, or with a unit: `500MB`, `20GB`, `1.5TiB` (k/M/G/T are
/// powers of 1000, Ki/Mi/Gi/Ti of 1024; the `B` is optional).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 500MB, 20GB or 1.5TiB"))?;
    let unit = unit.trim();
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit);
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024f64.powi(2),
        "gi" => 1024f64.powi(3),
        "ti" => 1024f64.powi(4),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    Ok((number * scale) as u64)
}

/// A size or a percentage of the file system: `10%`, `5GB`.
pub fn parse_keep_free(text: &str) -> Result<KeepFree, String> {
    match text.trim().strip_suffix('%') {
        Some(pct) => {
            let pct: f64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a percentage like 10%"))?;
            if !(0.0..100.0).contains(&pct) {
                return Err(format!("{text:?}: a percentage from 0 to 100"));
            }
            Ok(KeepFree::Percent(pct))
        }
        None => parse_size(text).map(KeepFree::Bytes),
    }
}

/// One closed segment on disk.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    session: PathBuf,
    /// Its start, from its name.
    start: NaiveDateTime,
    size: u64,
}

/// What the recordings folder holds.
#[derive(Debug, Default)]
struct Holdings {
    /// Closed segments, oldest first.
    segments: Vec<Segment>,
    /// Every byte below the folder (open segments and CSV files too).
    total: u64,
}

impl Retention {
    pub fn is_off(&self) -> bool {
        self.keep_days.is_none() && self.keep_free.is_none() && self.max_size.is_none()
    }

    /// The budget in words, for the state topic.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(days) = self.keep_days {
            parts.push(format!("keep {days} days"));
        }
        if let Some(max) = self.max_size {
            parts.push(format!("at most {max} bytes"));
        }
        match self.keep_free {
            Some(KeepFree::Bytes(b)) => parts.push(format!("{b} bytes free")),
            Some(KeepFree::Percent(p)) => parts.push(format!("{p}% free")),
            None => {}
        }
        parts.join(", ")
    }

    /// One pass over `recordings`; the deletions are added to `freed`, what
    /// is left is its `holding`. Without a budget it only measures.
    pub fn enforce(&self, recordings: &Path, now: DateTime<Utc>, freed: &Freed) {
        let mut holdings = scan(recordings);
        let delete = |segment: &Segment, why: &str, total: &mut u64| match std::fs::remove_file(
            &segment.path,
        ) {
            Ok(()) => {
                tracing::info!(
                    "retention: deleted {} ({} bytes): {why}",
                    segment.path.display(),
                    segment.size
                );
                *total = total.saturating_sub(segment.size);
                freed.segments.fetch_add(1, Ordering::Relaxed);
                freed.bytes.fetch_add(segment.size, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!("retention: cannot delete {}: {e}", segment.path.display());
                false
            }
        };
        let mut kept = Vec::with_capacity(holdings.segments.len());
        let cutoff = self
            .keep_days
            .map(|days| now.naive_utc() - chrono::Duration::days(i64::from(days)));
        let mut touched = Vec::new();
        for segment in holdings.segments.drain(..) {
            if cutoff.is_some_and(|c| segment.start < c) {
                let why = format!("older than {} days", self.keep_days.unwrap_or(0));
                if delete(&segment, &why, &mut holdings.total) {
                    touched.push(segment.session.clone());
                    continue;
                }
            }
            kept.push(segment);
        }
        let mut kept = kept.into_iter();
        let mut free = self.keep_free.and_then(|_| free_space(recordings));
        loop {
            let over_size = self.max_size.is_some_and(|max| holdings.total > max);
            let short_of_space = match (self.keep_free, free) {
                (Some(want), Some((avail, size))) => avail < wanted_free(want, size),
                _ => false,
            };
            if !over_size && !short_of_space {
                break;
            }
            let Some(segment) = kept.next() else {
                tracing::warn!(
                    "retention: {} and nothing closed is left to delete",
                    if over_size {
                        "recordings over --max-size"
                    } else {
                        "free space under --keep-free"
                    }
                );
                break;
            };
            let why = if over_size {
                "recordings over --max-size"
            } else {
                "free space under --keep-free"
            };
            if delete(&segment, why, &mut holdings.total) {
                touched.push(segment.session.clone());
                if let Some((avail, _)) = free.as_mut() {
                    *avail += segment.size;
                }
            }
        }
        touched.sort();
        touched.dedup();
        for session in touched {
            remove_if_empty(&session);
        }
        if let Some(days) = self.keep_days {
            remove_old_sessions_without_media(recordings, now, days);
        }
        freed.holding.store(holdings.total, Ordering::Relaxed);
    }
}

fn wanted_free(want: KeepFree, size: u64) -> u64 {
    match want {
        KeepFree::Bytes(b) => b,
        KeepFree::Percent(p) => (size as f64 * p / 100.0) as u64,
    }
}

/// Free bytes (for unprivileged users) and size of the file system.
// statvfs's field types differ by target (32 bits on some).
#[allow(clippy::unnecessary_cast)]
fn free_space(path: &Path) -> Option<(u64, u64)> {
    match nix::sys::statvfs::statvfs(path) {
        Ok(fs) => {
            let block = fs.fragment_size() as u64;
            Some((
                fs.blocks_available() as u64 * block,
                fs.blocks() as u64 * block,
            ))
        }
        Err(e) => {
            tracing::warn!(
                "retention: cannot read free space of {}: {e}",
                path.display()
            );
            None
        }
    }
}

/// `<recordings>/<session>/<node>/<camera>/<start>.mp4`, oldest first.
fn scan(recordings: &Path) -> Holdings {
    let mut holdings = Holdings::default();
    for session in dirs(recordings) {
        for file in files_below(&session) {
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            holdings.total += size;
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Not open segments, nor sensors.csv.
            if let Some(start) = closed_segment_start(name) {
                holdings.segments.push(Segment {
                    path: file.clone(),
                    session: session.clone(),
                    start,
                    size,
                });
            }
        }
    }
    holdings
        .segments
        .sort_by(|a, b| (a.start, &a.path).cmp(&(b.start, &b.path)));
    holdings
}

/// The start a closed segment's file name gives: `<start>.mp4`, or
/// `<start>.mp4.<pid>.aside` (a segment the recorder moved aside to start
/// one of another picture size under its name: as closed as any, and
/// deleted by the same rules).
fn closed_segment_start(name: &str) -> Option<NaiveDateTime> {
    let stem = match name.strip_suffix(".aside") {
        Some(aside) => aside.split_once(".mp4.")?.0,
        None => name.strip_suffix(".mp4")?,
    };
    NaiveDateTime::parse_from_str(stem, "%Y%m%dT%H%M%SZ").ok()
}

fn dirs(path: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn files_below(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_below(&entry.path())),
            Ok(t) if t.is_file() => out.push(entry.path()),
            _ => {}
        }
    }
    out
}

/// A session folder without segments (closed or open) goes, its
/// `sensors.csv` with it.
fn remove_if_empty(session: &Path) {
    let media = files_below(session).iter().any(|f| {
        let name = f.to_string_lossy();
        name.ends_with(".mp4") || name.ends_with(".part") || name.ends_with(".aside")
    });
    if media {
        return;
    }
    match std::fs::remove_dir_all(session) {
        Ok(()) => tracing::info!(
            "retention: removed session {} (its last segment went)",
            session.display()
        ),
        Err(e) => tracing::warn!("retention: cannot remove {}: {e}", session.display()),
    }
}

/// Sessions dated (by their names) before the cutoff that hold no media,
/// and daily sensor files (`sensors/YYYY-MM-DD.csv`) older than it.
fn remove_old_sessions_without_media(recordings: &Path, now: DateTime<Utc>, days: u32) {
    let cutoff = now.naive_utc() - chrono::Duration::days(i64::from(days));
    for session in dirs(recordings) {
        let name = session.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if NaiveDateTime::parse_from_str(name, "%Y%m%dT%H%M%SZ").is_ok_and(|t| t < cutoff) {
            remove_if_empty(&session);
        }
    }
    for file in files_below(&recordings.join("sensors")) {
        let stem = file.file_stem().and_then(|n| n.to_str()).unwrap_or("");
        let old = NaiveDate::parse_from_str(stem, "%Y-%m-%d")
            .is_ok_and(|d| d.and_hms_opt(23, 59, 59).is_some_and(|end| end < cutoff));
        if old {
            match std::fs::remove_file(&file) {
                Ok(()) => tracing::info!(
                    "retention: deleted {}: older than {days} days",
                    file.display()
                ),
                Err(e) => tracing::warn!("retention: cannot delete {}: {e}", file.display()),
            }
        }
    }
}

/// Runs retention passes off the event loop, one at a time, and at most
/// one in [`PASS_SPACING`] times the last pass's length: a pass over 100 000
/// segments takes about half a second (docs/benchmarks.md).
pub struct RetentionRunner {
    retention: Arc<Retention>,
    recordings: PathBuf,
    freed: Arc<Freed>,
    running: Option<tokio::task::JoinHandle<()>>,
    last_started: Option<std::time::Instant>,
    /// How long the last pass took, microseconds.
    last_took_us: Arc<std::sync::atomic::AtomicU64>,
}

/// Retention spends at most a twentieth of one core.
const PASS_SPACING: u32 = 20;

impl RetentionRunner {
    pub fn new(retention: &Retention, recordings: &Path, freed: &Arc<Freed>) -> Self {
        RetentionRunner {
            retention: Arc::new(retention.clone()),
            recordings: recordings.to_owned(),
            freed: Arc::clone(freed),
            running: None,
            last_started: None,
            last_took_us: Arc::default(),
        }
    }

    /// Starts a pass unless one is under way or the last one was too recent
    /// (unless `urgent`: a write failed). Without a budget a pass only
    /// measures what the recordings hold.
    pub fn run(&mut self, urgent: bool) {
        if self.running.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let took =
            Duration::from_micros(self.last_took_us.load(std::sync::atomic::Ordering::Relaxed));
        if !urgent
            && self
                .last_started
                .is_some_and(|at| at.elapsed() < took * PASS_SPACING)
        {
            return;
        }
        self.last_started = Some(std::time::Instant::now());
        let (retention, recordings, freed, took) = (
            Arc::clone(&self.retention),
            self.recordings.clone(),
            Arc::clone(&self.freed),
            Arc::clone(&self.last_took_us),
        );
        self.running = Some(tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            retention.enforce(&recordings, Utc::now(), &freed);
            took.store(
                started.elapsed().as_micros() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }));
    }
}

#[cfg(test)]
mod tests;
