//! Where frames come from (DESIGN.md, "Contract: camera sources").
//!
//! A [`Source`] is one run of a camera: open it, pull frames until it fails,
//! close it. Restarting is the supervisor's business ([`crate::camera`]).

mod file;
pub(crate) mod pattern;
mod process;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;
use bytes::Bytes;

pub use process::kill_all_camera_processes;

/// The `--source` spec of a camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `rpicam-vid`, or `libcamera-vid` where only that is installed.
    Rpicam,
    /// Any command writing concatenated JPEGs to stdout, run by `sh -c`.
    Cmd(String),
    /// An MJPEG file replayed in a loop at the configured frame rate.
    File(PathBuf),
    /// The built-in moving test pattern.
    Test,
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        if spec == "rpicam" {
            Ok(SourceSpec::Rpicam)
        } else if spec == "test" {
            Ok(SourceSpec::Test)
        } else if let Some(cmd) = spec.strip_prefix("cmd:") {
            match cmd.trim() {
                "" => Err("cmd: needs a command line after the colon".into()),
                cmd => Ok(SourceSpec::Cmd(cmd.to_owned())),
            }
        } else if let Some(path) = spec.strip_prefix("file:") {
            match path {
                "" => Err("file: needs a path after the colon".into()),
                path => Ok(SourceSpec::File(path.into())),
            }
        } else {
            Err(format!(
                "{spec:?} is not a source; use rpicam, test, cmd:<command> or file:<path>"
            ))
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Rpicam => f.write_str("rpicam"),
            SourceSpec::Cmd(c) => write!(f, "cmd:{c}"),
            SourceSpec::File(p) => write!(f, "file:{}", p.display()),
            SourceSpec::Test => f.write_str("test"),
        }
    }
}

/// Picture settings passed to the camera (or used by the test pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
}

/// One open run of a camera.
pub enum Source {
    Process(process::ProcessSource),
    File(file::FileSource),
    Test(pattern::TestPattern),
}

impl Source {
    /// Logs go to the caller's span, which names the camera.
    pub async fn open(spec: &SourceSpec, settings: CaptureSettings) -> Result<Source> {
        Ok(match spec {
            SourceSpec::Rpicam => Source::Process(process::ProcessSource::rpicam(settings)?),
            SourceSpec::Cmd(cmd) => Source::Process(process::ProcessSource::shell(cmd)?),
            SourceSpec::File(path) => {
                Source::File(file::FileSource::open(path, settings.fps).await?)
            }
            SourceSpec::Test => Source::Test(pattern::TestPattern::new(settings).await?),
        })
    }

    /// The next whole JPEG. An error ends this run (the process exited, the
    /// file vanished); damaged input is logged and skipped inside.
    pub async fn next_frame(&mut self) -> Result<Bytes> {
        match self {
            Source::Process(p) => p.next_frame().await,
            Source::File(f) => f.next_frame().await,
            Source::Test(t) => t.next_frame().await,
        }
    }

    /// Stops the run; a camera process and its group are terminated.
    pub async fn close(self) {
        if let Source::Process(p) = self {
            p.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for spec in [
            "rpicam",
            "test",
            "cmd:ffmpeg -i x -f mjpeg -",
            "file:/tmp/a.mjpeg",
        ] {
            assert_eq!(spec.parse::<SourceSpec>().unwrap().to_string(), spec);
        }
        assert!("webcam"
            .parse::<SourceSpec>()
            .unwrap_err()
            .contains("rpicam, test"));
        assert!("cmd:".parse::<SourceSpec>().is_err());
    }
}
