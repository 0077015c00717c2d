//! H.264 exports: a range of one camera re-encoded by ffmpeg for players
//! without MJPEG. Encoding takes a while, so it is a job; this file keeps
//! the jobs ([`Jobs`]: their files, how far each is, how it ended) and runs
//! them ([`run`]). Their HTTP API (`POST .../export.h264` starts one,
//! `GET /api/exports/<id>` tells how far it is, `GET /api/exports/<id>/file`
//! downloads the result) is the dashboard's, in `dashboard/exports.rs`. The
//! files live in a folder of the system's temporary directory, one per
//! viewer, and go when their job is evicted or the viewer stops.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::export;
use super::index::SampleRef;

/// Finished jobs kept for download; the oldest goes (file and all) when
/// one more starts.
pub const KEPT_H264_JOBS: usize = 8;

/// The dashboard's H.264 jobs.
pub struct Jobs {
    dir: PathBuf,
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            dir: std::env::temp_dir().join(format!("camfleet-exports-{}", std::process::id())),
            next: AtomicU64::new(1),
            jobs: Mutex::default(),
        }
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) struct Job {
    /// The download's name.
    pub(crate) name: String,
    pub(crate) file: PathBuf,
    percent: AtomicU8,
    outcome: Mutex<Option<Result<u64, String>>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Progress {
    job: u64,
    /// running, done or failed.
    state: &'static str,
    percent: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    download: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Jobs {
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs.lock().unwrap().get(&id).cloned()
    }

    /// A new job's id and record; the oldest finished job makes room.
    pub(crate) fn add(&self, name: String) -> std::io::Result<(u64, Arc<Job>)> {
        std::fs::create_dir_all(&self.dir)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let job = Arc::new(Job {
            name,
            file: self.dir.join(format!("{id}.mp4")),
            percent: AtomicU8::new(0),
            outcome: Mutex::new(None),
        });
        let mut jobs = self.jobs.lock().unwrap();
        while jobs.len() >= KEPT_H264_JOBS {
            let finished = jobs
                .iter()
                .find(|(_, j)| j.outcome.lock().unwrap().is_some())
                .map(|(id, _)| *id);
            let Some(old) = finished else { break };
            if let Some(gone) = jobs.remove(&old) {
                let _ = std::fs::remove_file(&gone.file);
            }
        }
        jobs.insert(id, Arc::clone(&job));
        Ok((id, job))
    }
}

impl Job {
    pub(crate) fn progress(&self, id: u64) -> Progress {
        let outcome = self.outcome.lock().unwrap().clone();
        let (state, bytes, error) = match outcome {
            None => ("running", None, None),
            Some(Ok(bytes)) => ("done", Some(bytes), None),
            Some(Err(e)) => ("failed", None, Some(e)),
        };
        Progress {
            job: id,
            state,
            percent: self.percent.load(Ordering::Relaxed),
            download: bytes.map(|_| format!("/api/exports/{id}/file")),
            bytes,
            error,
        }
    }

    /// Whether the job's file is made (and may be downloaded).
    pub(crate) fn is_done(&self) -> bool {
        matches!(*self.outcome.lock().unwrap(), Some(Ok(_)))
    }
}

/// Runs job `id` on a blocking thread: copies `samples` into an MJPEG MP4,
/// then re-encodes it into the job's file, keeping `percent` and at the
/// end `outcome`. `permit` (an export slot) is held until it ends;
/// `label` names the camera in the log.
pub(crate) fn run(
    worker: Arc<Job>,
    id: u64,
    label: String,
    samples: Vec<(PathBuf, SampleRef)>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let copied = worker.file.with_extension("mjpeg.mp4");
        let made = (|| -> anyhow::Result<u64> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&copied)?);
            // Copying the JPEGs is the first tenth of the work.
            let done = export::write_mp4(&samples, &mut out, |n, total| {
                let pct = (n * 10 / total.max(1)) as u8;
                worker.percent.store(pct, Ordering::Relaxed);
            })?;
            std::io::Write::flush(&mut out)?;
            drop(out);
            let duration = done.last_us - done.first_us;
            let copy = done.codec == Some(shared::frame::Codec::H264);
            export::to_h264(&copied, &worker.file, duration, copy, |pct| {
                let pct = 10 + u16::from(pct) * 90 / 100;
                worker.percent.store(pct as u8, Ordering::Relaxed);
            })?;
            Ok(std::fs::metadata(&worker.file)?.len())
        })();
        let _ = std::fs::remove_file(&copied);
        match &made {
            Ok(bytes) => tracing::info!("export {label}: H.264 job {id} done, {bytes} bytes"),
            Err(e) => tracing::warn!("export {label}: H.264 job {id} failed: {e:#}"),
        }
        *worker.outcome.lock().unwrap() = Some(made.map_err(|e| format!("{e:#}")));
    });
}
