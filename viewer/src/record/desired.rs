//! The recording the user asked for, kept on disk beside the recordings,
//! so a viewer that crashed (or was restarted by systemd) resumes its
//! session instead of coming back idle.
//!
//! One small JSON file per viewer id, `<recordings>/.camfleet-viewer-<id>.json`,
//! replaced atomically (written to a temporary file, synced, renamed, the
//! folder synced): a crash leaves the old state or the new, never half.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the file's layout.
const VERSION: u32 = 1;

/// A session the viewer is to be recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    /// `YYYYmmddTHHMMSSZ`, the session's folder.
    pub session: String,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    v: u32,
    recording: Option<Wanted>,
}

/// Where one viewer keeps its desired state.
#[derive(Debug, Clone)]
pub struct DesiredState {
    path: PathBuf,
}

impl DesiredState {
    pub fn new(recordings: &Path, viewer_id: &str) -> Self {
        DesiredState {
            path: recordings.join(format!(".camfleet-viewer-{viewer_id}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The session to resume, if the viewer was recording when it stopped
    /// without being told to. An unreadable file is logged and ignored.
    pub fn load(&self) -> Option<Wanted> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read {}: {e}; starting idle", self.path.display());
                return None;
            }
        };
        match serde_json::from_slice::<StateFile>(&text) {
            Ok(state) if state.v == VERSION => state.recording.filter(|w| valid_name(&w.session)),
            Ok(state) => {
                tracing::warn!(
                    "{}: version {} is not {VERSION}; starting idle",
                    self.path.display(),
                    state.v
                );
                None
            }
            Err(e) => {
                tracing::warn!("{}: {e}; starting idle", self.path.display());
                None
            }
        }
    }

    /// Records what is wanted now; a failure is logged (recording goes on,
    /// only a crash would forget it).
    pub fn save(&self, recording: Option<&Wanted>) {
        if let Err(e) = self.write(recording) {
            tracing::error!(
                "cannot keep the recording state in {}: {e}; a restart would not resume it",
                self.path.display()
            );
        }
    }

    fn write(&self, recording: Option<&Wanted>) -> std::io::Result<()> {
        let state = StateFile {
            v: VERSION,
            recording: recording.cloned(),
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&state).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()
    }
}

/// A session name is a folder name under the recordings: `YYYYmmddTHHMMSSZ`.
fn valid_name(name: &str) -> bool {
    let ok = chrono::NaiveDateTime::parse_from_str(name, "%Y%m%dT%H%M%SZ").is_ok();
    if !ok {
        tracing::warn!("ignoring a saved session named {name:?}: not YYYYmmddTHHMMSSZ");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("camfleet-desired-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_wanted_session_survives_a_restart_and_a_stop_clears_it() {
        let dir = scratch("roundtrip");
        let state = DesiredState::new(&dir, "ws");
        assert_eq!(state.load(), None);
        let wanted = Wanted {
            session: "20261127T101500Z".into(),
            since: "2026-11-27T10:15:00Z".parse().unwrap(),
        };
        state.save(Some(&wanted));
        assert_eq!(DesiredState::new(&dir, "ws").load(), Some(wanted));
        assert_eq!(DesiredState::new(&dir, "other").load(), None);
        state.save(None);
        assert_eq!(state.load(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_or_foreign_file_means_idle() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        let state = DesiredState::new(&dir, "ws");
        for text in [
            "{not json",
            r#"{"v":9,"recording":null}"#,
            r#"{"v":1,"recording":{"session":"../../etc","since":"2026-11-27T10:15:00Z"}}"#,
        ] {
            std::fs::write(state.path(), text).unwrap();
            assert_eq!(state.load(), None, "{text}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
