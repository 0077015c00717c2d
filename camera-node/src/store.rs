//! The node's state file: cameras added over the API and every camera's
//! desired state, so a restarted node comes back as it was left.
//!
//! One JSON file, `cameras.json` under `--state-dir`, mode 0600 (source
//! URLs may hold passwords), replaced atomically: written beside, synced,
//! renamed over, the directory synced. A node killed mid-write leaves the
//! old file or the new one, never half of one.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::source::url::Output;

pub const FILE_NAME: &str = "cameras.json";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub v: u32,
    pub cameras: Vec<SavedCamera>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCamera {
    pub id: String,
    /// `api` or `config`; a config camera keeps only its desired state.
    pub origin: String,
    pub enabled: bool,
    /// The source as given, password included (API cameras only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub tcp_port: u16,
    #[serde(default)]
    pub output: Option<Output>,
    /// RTSP servers the camera is pushed to, passwords included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushes: Vec<String>,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    /// One write at a time: two would share the temporary file, and one
    /// could rename the other's half-written bytes into place.
    writing: std::sync::Mutex<()>,
}

impl Store {
    /// Creates the directory (mode 0700) when it is missing.
    pub fn open(dir: &Path) -> Result<Store> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        }
        Ok(Store {
            path: dir.join(FILE_NAME),
            writing: std::sync::Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; empty when there is no file yet. A file that
    /// cannot be read is an error (the node must not start and then
    /// overwrite what it could not read).
    pub fn load(&self) -> Result<Saved> {
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.path.display()))
            }
        };
        let saved: Saved = serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is damaged (move it aside to start afresh)",
                self.path.display()
            )
        })?;
        if saved.v != VERSION {
            bail!(
                "{} is version {}; this node reads version {VERSION}",
                self.path.display(),
                saved.v
            );
        }
        Ok(saved)
    }

    /// Replaces the file atomically with what `now` gives, taken while no
    /// other write runs (so an older picture never lands after a newer one).
    pub fn save(&self, now: impl FnOnce() -> Saved) -> Result<()> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let saved = &now();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&serde_json::to_vec_pretty(saved).unwrap_or_default())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            anyhow::Error::from(e).context(format!("cannot write {}", self.path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saves_privately_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("camfleet-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("state")).unwrap();
        assert_eq!(store.load().unwrap(), Saved::default());
        let saved = Saved {
            v: VERSION,
            cameras: vec![SavedCamera {
                id: "drone1".into(),
                origin: "api".into(),
                enabled: false,
                source: Some("rtsp://u:pw@h/x".into()),
                tcp_port: 8003,
                output: None,
                pushes: vec![],
            }],
        };
        store.save(|| saved.clone()).unwrap();
        assert_eq!(store.load().unwrap(), saved);
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(store.path(), b"{\"v\":1,\"cam").unwrap();
        assert!(format!("{:#}", store.load().unwrap_err()).contains("damaged"));
        let _ = fs::remove_dir_all(&dir);
    }
}
