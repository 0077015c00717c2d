//! `file:` source: an MJPEG file, or raw H.264 (Annex B, as `ffmpeg -f h264`
//! or `rpicam-vid -o x.h264` write it), replayed in a loop at the
//! configured rate. Which it is is told from the first bytes; the file is
//! streamed through the splitter, never loaded whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use tokio::fs::File;
use tokio::io::AsyncReadExt;
use tokio::time::{interval, Interval, MissedTickBehavior};

use super::Picture;
use crate::{h264, mjpeg};
use shared::frame::Codec;

/// An access unit delimiter: written after the file's last byte, it tells
/// the H.264 splitter that the last picture is complete.
const END_OF_PICTURE: [u8; 6] = [0, 0, 0, 1, 0x09, 0x10];

enum Splitter {
    Mjpeg(mjpeg::Splitter),
    H264(h264::Splitter),
}

impl Splitter {
    /// The splitter for a file that starts with `first`.
    fn for_start(first: &[u8]) -> Splitter {
        match h264::looks_like_annex_b(first) {
            true => Splitter::H264(h264::Splitter::new()),
            false => Splitter::Mjpeg(mjpeg::Splitter::default()),
        }
    }

    fn fresh(&self) -> Splitter {
        match self {
            Splitter::Mjpeg(_) => Splitter::Mjpeg(mjpeg::Splitter::default()),
            Splitter::H264(_) => Splitter::H264(h264::Splitter::new()),
        }
    }

    fn read_buf(&mut self) -> &mut BytesMut {
        match self {
            Splitter::Mjpeg(s) => s.read_buf(),
            Splitter::H264(s) => s.read_buf(),
        }
    }

    fn next(&mut self, path: &Path) -> Option<Picture> {
        loop {
            let warning = match self {
                Splitter::Mjpeg(s) => match s.next_frame()? {
                    Ok(frame) => return Some(Picture::jpeg(frame)),
                    Err(w) => w.to_string(),
                },
                Splitter::H264(s) => match s.next_unit()? {
                    Ok(au) => {
                        return Some(Picture {
                            codec: Codec::H264,
                            key: au.key,
                            data: au.data,
                        })
                    }
                    Err(h264::Warning::NewParams { .. }) => continue,
                    Err(w) => w.to_string(),
                },
            };
            tracing::warn!("{}: {warning}", path.display());
        }
    }

    /// At the end of the file: H.264's last picture is complete.
    fn end_of_file(&mut self) {
        if let Splitter::H264(s) = self {
            s.push(&END_OF_PICTURE);
        }
    }
}

pub struct FileSource {
    path: PathBuf,
    file: File,
    splitter: Splitter,
    ticks: Interval,
    /// Frames found in the current pass over the file.
    frames_this_pass: u64,
    /// The file's end was reached and the splitter told so.
    at_end: bool,
}

impl FileSource {
    pub async fn open(path: &Path, fps: u32) -> Result<Self> {
        let mut file = File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut first = [0u8; 8];
        let n = file.read(&mut first).await?;
        let mut splitter = Splitter::for_start(&first[..n]);
        splitter.read_buf().extend_from_slice(&first[..n]);
        let mut ticks = interval(Duration::from_secs_f64(1.0 / f64::from(fps.max(1))));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let what = match splitter {
            Splitter::Mjpeg(_) => "MJPEG",
            Splitter::H264(_) => "H.264",
        };
        tracing::info!("replaying {} ({what}) at {fps} fps", path.display());
        Ok(FileSource {
            path: path.to_owned(),
            file,
            splitter,
            ticks,
            frames_this_pass: 0,
            at_end: false,
        })
    }

    pub async fn next_frame(&mut self) -> Result<Picture> {
        let frame = loop {
            if let Some(frame) = self.splitter.next(&self.path) {
                break frame;
            }
            if self.at_end {
                if self.frames_this_pass == 0 {
                    bail!("{} holds no complete frame", self.path.display());
                }
                // Start over; a partial JPEG at the end of the file is dropped.
                self.file = File::open(&self.path).await?;
                self.splitter = self.splitter.fresh();
                self.frames_this_pass = 0;
                self.at_end = false;
                continue;
            }
            let n = self.file.read_buf(self.splitter.read_buf()).await?;
            if n == 0 {
                self.splitter.end_of_file();
                self.at_end = true;
            }
        };
        self.frames_this_pass += 1;
        self.ticks.tick().await;
        Ok(frame)
    }
}
