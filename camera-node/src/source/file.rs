//! `file:` source: an MJPEG file replayed in a loop at the configured rate.
//! The file is streamed through the splitter, never loaded whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tokio::fs::File;
use tokio::io::AsyncReadExt;
use tokio::time::{interval, Interval, MissedTickBehavior};

use crate::mjpeg::Splitter;

pub struct FileSource {
    path: PathBuf,
    file: File,
    splitter: Splitter,
    ticks: Interval,
    /// Frames found in the current pass over the file.
    frames_this_pass: u64,
}

impl FileSource {
    pub async fn open(path: &Path, fps: u32) -> Result<Self> {
        let file = File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut ticks = interval(Duration::from_secs_f64(1.0 / f64::from(fps.max(1))));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tracing::info!("replaying {} at {fps} fps", path.display());
        Ok(FileSource {
            path: path.to_owned(),
            file,
            splitter: Splitter::default(),
            ticks,
            frames_this_pass: 0,
        })
    }

    pub async fn next_frame(&mut self) -> Result<Bytes> {
        let frame = loop {
            match self.splitter.next_frame() {
                Some(Ok(frame)) => break frame,
                Some(Err(warning)) => {
                    tracing::warn!("{}: {warning}", self.path.display());
                    continue;
                }
                None => {}
            }
            let n = self.file.read_buf(self.splitter.read_buf()).await?;
            if n == 0 {
                if self.frames_this_pass == 0 {
                    bail!("{} holds no complete JPEG frame", self.path.display());
                }
                // Start over; a partial frame at the end of the file is dropped.
                self.file = File::open(&self.path).await?;
                self.splitter = Splitter::default();
                self.frames_this_pass = 0;
            }
        };
        self.frames_this_pass += 1;
        self.ticks.tick().await;
        Ok(frame)
    }
}
