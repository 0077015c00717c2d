//! The record command's state machine: `start` and `stop` on `command/rec`
//! (live messages only), the session they open and close, the note the
//! state topic carries, and the session resumed after a restart. Pure: the
//! control loop applies what it answers (folders, the sensor log, the
//! camera tasks), so it is tested without MQTT.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use shared::messages::{
    LinkFigures, RecCommand, RecordingState, RecordingStatus, RetentionFigures,
};
use shared::topics::REC_COMMAND;

use super::desired::{DesiredState, Wanted};

/// A recording session as every camera task sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `YYYYmmddTHHMMSSZ`
    pub name: String,
    /// `<recordings>/<name>`
    pub dir: PathBuf,
}

impl Session {
    /// The session that starts at `at`, in `recordings`.
    pub fn starting_at(recordings: &Path, at: DateTime<Utc>) -> Session {
        Session::named(recordings, &at.format("%Y%m%dT%H%M%SZ").to_string())
    }

    pub fn named(recordings: &Path, name: &str) -> Session {
        Session {
            dir: recordings.join(name),
            name: name.to_owned(),
        }
    }
}

/// What a command changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing (a retained, unknown or redundant command); the note may say why.
    None,
    /// A new session, to open.
    Start(Session),
    /// The session ended.
    Stop(Session),
}

/// Whether the viewer records, and what it last said about commands.
#[derive(Debug)]
pub struct Recording {
    session: Option<(Session, DateTime<Utc>)>,
    note: Option<String>,
    /// What was asked for, on disk: a restarted viewer resumes it.
    desired: Option<DesiredState>,
    /// The session was resumed after a restart (said when it stops).
    resumed: bool,
    recordings: PathBuf,
}

impl Recording {
    /// Idle; with `desired`, what is asked for is kept there.
    pub fn new(recordings: &Path, desired: Option<DesiredState>) -> Self {
        Recording {
            session: None,
            note: None,
            desired,
            resumed: false,
            recordings: recordings.to_owned(),
        }
    }

    /// The session asked for before a restart, taken up again.
    pub fn resume(&mut self) -> Option<Session> {
        let wanted = self.desired.as_ref().and_then(DesiredState::load)?;
        tracing::info!(
            "resuming session {} after a restart (recording since {})",
            wanted.session,
            wanted.since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let session = Session::named(&self.recordings, &wanted.session);
        self.session = Some((session.clone(), wanted.since));
        self.note = Some(format!(
            "resumed session {} after a restart",
            wanted.session
        ));
        self.resumed = true;
        Some(session)
    }

    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref().map(|(s, _)| s)
    }

    pub fn is_on(&self) -> bool {
        self.session.is_some()
    }

    /// A message on `command/rec`, received `now`.
    pub fn on_command(&mut self, payload: &[u8], retained: bool, now: DateTime<Utc>) -> Change {
        let text = String::from_utf8_lossy(payload);
        if retained {
            tracing::info!("ignoring a retained {REC_COMMAND} {text:?}: only a live command starts or stops recording");
            return Change::None;
        }
        match (RecCommand::parse(payload), &self.session) {
            (None, _) => {
                tracing::warn!(
                    topic = REC_COMMAND,
                    "ignoring {text:?}: the command is start or stop"
                );
                self.note = Some(format!("ignored {text:?}: not start or stop"));
                Change::None
            }
            (Some(RecCommand::Start), Some((session, _))) => {
                tracing::info!("start: already recording session {}", session.name);
                self.note = Some(format!("start ignored: already recording {}", session.name));
                Change::None
            }
            (Some(RecCommand::Stop), None) => {
                tracing::info!("stop: not recording");
                self.note = Some("stop ignored: not recording".into());
                Change::None
            }
            (Some(RecCommand::Start), None) => {
                let session = Session::starting_at(&self.recordings, now);
                if let Some(desired) = &self.desired {
                    desired.save(Some(&Wanted {
                        session: session.name.clone(),
                        since: now,
                    }));
                }
                self.session = Some((session.clone(), now));
                self.note = None;
                self.resumed = false;
                Change::Start(session)
            }
            (Some(RecCommand::Stop), Some((session, _))) => {
                tracing::info!("stopping session {}", session.name);
                if let Some(desired) = &self.desired {
                    desired.save(None);
                }
                self.note = self
                    .resumed
                    .then(|| format!("stopped session {} (resumed after a restart)", session.name));
                let session = session.clone();
                self.session = None;
                self.resumed = false;
                Change::Stop(session)
            }
        }
    }

    /// The state topic's payload: `cameras` recording now, the last write
    /// error, the links' figures and retention's.
    pub fn state(
        &self,
        cameras: usize,
        error: Option<String>,
        links: Vec<LinkFigures>,
        retention: Option<RetentionFigures>,
    ) -> RecordingState {
        let (state, session, since) = match &self.session {
            Some((s, at)) => (
                RecordingStatus::Recording,
                Some(s.name.clone()),
                Some(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ),
            None => (RecordingStatus::Idle, None, None),
        };
        RecordingState {
            state,
            session,
            since,
            // Idle means none, even while the last segments are being closed.
            cameras: if self.is_on() { cameras } else { 0 },
            error,
            note: self.note.clone(),
            links,
            retention,
        }
    }
}

/// The state a viewer leaves when it stops.
pub fn stopped() -> RecordingState {
    RecordingState {
        state: RecordingStatus::Idle,
        session: None,
        since: None,
        cameras: 0,
        error: None,
        note: Some("viewer stopped".into()),
        links: vec![],
        retention: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn state(r: &Recording) -> RecordingState {
        r.state(2, None, vec![], None)
    }

    #[test]
    fn start_opens_a_session_named_by_its_instant_and_stop_closes_it() {
        let dir = Path::new("/rec");
        let mut r = Recording::new(dir, None);
        assert_eq!(state(&r).state, "idle");
        assert_eq!(state(&r).cameras, 0);
        let change = r.on_command(b"start", false, at("2026-12-01T10:20:30Z"));
        let session = Session {
            name: "20261201T102030Z".into(),
            dir: dir.join("20261201T102030Z"),
        };
        assert_eq!(change, Change::Start(session.clone()));
        let s = state(&r);
        assert_eq!(s.state, "recording");
        assert_eq!(s.session.as_deref(), Some("20261201T102030Z"));
        assert_eq!(s.since.as_deref(), Some("2026-12-01T10:20:30Z"));
        assert_eq!(s.cameras, 2);
        assert_eq!(s.note, None);
        assert_eq!(
            r.on_command(b"STOP", false, at("2026-12-01T10:25:00Z")),
            Change::Stop(session)
        );
        assert_eq!(state(&r).state, "idle");
        assert_eq!(r.session(), None);
    }

    #[test]
    fn start_while_recording_and_stop_while_idle_change_nothing_and_say_so() {
        let mut r = Recording::new(Path::new("/rec"), None);
        assert_eq!(r.on_command(b"stop", false, Utc::now()), Change::None);
        assert_eq!(
            state(&r).note.as_deref(),
            Some("stop ignored: not recording")
        );
        let t = at("2026-12-01T10:20:30Z");
        assert!(matches!(r.on_command(b"start", false, t), Change::Start(_)));
        let later = at("2026-12-01T10:21:00Z");
        assert_eq!(r.on_command(b"start", false, later), Change::None);
        assert_eq!(r.session().unwrap().name, "20261201T102030Z");
        assert_eq!(
            state(&r).note.as_deref(),
            Some("start ignored: already recording 20261201T102030Z")
        );
    }

    #[test]
    fn retained_and_unknown_commands_are_ignored() {
        let mut r = Recording::new(Path::new("/rec"), None);
        assert_eq!(r.on_command(b"start", true, Utc::now()), Change::None);
        assert!(!r.is_on());
        assert_eq!(r.on_command(b"record!", false, Utc::now()), Change::None);
        assert!(!r.is_on());
        assert_eq!(
            state(&r).note.as_deref(),
            Some("ignored \"record!\": not start or stop")
        );
        assert_eq!(r.on_command(b"\xff\xfe", false, Utc::now()), Change::None);
        assert!(!r.is_on());
    }

    #[test]
    fn a_session_asked_for_before_a_restart_is_resumed_and_its_stop_says_so() {
        let dir = std::env::temp_dir().join(format!("camfleet-session-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let desired = || Some(DesiredState::new(&dir, "v1"));
        let mut first = Recording::new(&dir, desired());
        assert_eq!(first.resume(), None);
        let t = at("2026-12-01T08:00:00Z");
        let Change::Start(session) = first.on_command(b"start", false, t) else {
            panic!("start did not start");
        };
        // The viewer restarts: the same session goes on.
        let mut second = Recording::new(&dir, desired());
        assert_eq!(second.resume(), Some(session.clone()));
        let s = state(&second);
        assert_eq!(s.state, "recording");
        assert_eq!(s.since.as_deref(), Some("2026-12-01T08:00:00Z"));
        assert_eq!(
            s.note.as_deref(),
            Some("resumed session 20261201T080000Z after a restart")
        );
        assert_eq!(
            second.on_command(b"stop", false, Utc::now()),
            Change::Stop(session)
        );
        assert_eq!(
            state(&second).note.as_deref(),
            Some("stopped session 20261201T080000Z (resumed after a restart)")
        );
        // Stopped: a third start of the viewer stays idle.
        let mut third = Recording::new(&dir, desired());
        assert_eq!(third.resume(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
