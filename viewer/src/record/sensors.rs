//! Every message on the sensor topics as a CSV row (`received_at`, `topic`,
//! `payload`): in the session's `sensors.csv` while recording, in
//! `sensors/<YYYY-MM-DD>.csv` otherwise. The caller flushes every second.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

pub struct SensorLog {
    recordings: PathBuf,
    /// The session folder while recording.
    session: Option<PathBuf>,
    open: Option<(PathBuf, csv::Writer<File>)>,
}

impl SensorLog {
    pub fn new(recordings: &Path) -> Self {
        SensorLog {
            recordings: recordings.to_owned(),
            session: None,
            open: None,
        }
    }

    /// Rows go to `<dir>/sensors.csv` from now on (or the daily file: `None`).
    pub fn set_session(&mut self, dir: Option<&Path>) {
        self.flush();
        self.session = dir.map(Path::to_owned);
        self.open = None;
    }

    pub fn record(
        &mut self,
        at: DateTime<Utc>,
        topic: &str,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let path = match &self.session {
            Some(dir) => dir.join("sensors.csv"),
            None => self
                .recordings
                .join("sensors")
                .join(format!("{}.csv", at.format("%Y-%m-%d"))),
        };
        if self.open.as_ref().is_none_or(|(p, _)| *p != path) {
            self.flush();
            self.open = Some((path.clone(), open_csv(&path)?));
        }
        let text = match std::str::from_utf8(payload) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => {
                tracing::warn!(
                    topic,
                    "sensor payload is not UTF-8; written with replacement characters"
                );
                String::from_utf8_lossy(payload)
            }
        };
        let (_, writer) = self.open.as_mut().expect("opened above");
        let stamp = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        writer
            .write_record([stamp.as_str(), topic, &text])
            .map_err(std::io::Error::other)
    }

    pub fn flush(&mut self) {
        if let Some((path, writer)) = self.open.as_mut() {
            if let Err(e) = writer.flush() {
                tracing::error!("writing {}: {e}", path.display());
            }
        }
    }
}

/// Appends to a CSV, writing the header when the file is new.
fn open_csv(path: &Path) -> std::io::Result<csv::Writer<File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let new = !path.exists();
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut writer = csv::Writer::from_writer(file);
    if new {
        writer
            .write_record(["received_at", "topic", "payload"])
            .map_err(std::io::Error::other)?;
    }
    Ok(writer)
}

/// A node's health figures as sensor rows (`health/<node>/<figure>`, a
/// number each; flags as 0 or 1), so a session's player plots them under
/// the cameras like any sensor.
pub fn health_rows(node: &str, h: &shared::messages::NodeHealth) -> Vec<(String, String)> {
    let flag = |b: Option<bool>| b.map(|b| f64::from(u8::from(b)));
    let wifi = h.wifi.as_ref();
    let figures = [
        ("soc_temp_c", h.soc_temp_c),
        ("cpu_percent", h.cpu_percent),
        ("under_voltage", flag(h.under_voltage)),
        ("throttled", flag(h.throttled)),
        ("wifi_signal_dbm", wifi.and_then(|w| w.signal_dbm)),
        ("wifi_bitrate_mbit_s", wifi.and_then(|w| w.bitrate_mbit_s)),
        (
            "wifi_retries",
            wifi.and_then(|w| w.retries).map(|r| r as f64),
        ),
        ("state_free_percent", h.state_free_percent),
        ("frames_dropped", Some(h.frames_dropped as f64)),
        ("camera_restarts", Some(h.camera_restarts as f64)),
    ];
    figures
        .into_iter()
        .filter_map(|(name, v)| Some((format!("health/{node}/{name}"), v?.to_string())))
        .collect()
}

/// MQTT topic filter matching (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_like_mqtt() {
        assert!(topic_matches("sensor/#", "sensor/pi/cpu_temp"));
        assert!(topic_matches("sensor/+/temp", "sensor/a/temp"));
        assert!(!topic_matches("sensor/+/temp", "sensor/a/b/temp"));
        assert!(!topic_matches("sensor/#", "command/rec"));
        assert!(topic_matches("a/b", "a/b") && !topic_matches("a/b", "a/b/c"));
    }

    #[test]
    fn rows_are_quoted_and_go_to_the_session_then_the_daily_file() {
        let root = std::env::temp_dir().join(format!("camfleet-sensors-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut log = SensorLog::new(&root);
        let at = DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        log.record(at, "sensor/a", b"1.5").unwrap();
        log.set_session(Some(&root.join("S1")));
        log.record(at, "sensor/b", b"x,y\nz").unwrap();
        log.record(at, "sensor/c", b"\xffbad").unwrap();
        log.set_session(None);
        let daily = std::fs::read_to_string(root.join("sensors/2026-11-21.csv")).unwrap();
        assert_eq!(
            daily,
            "received_at,topic,payload\n2026-11-21T10:00:00.123Z,sensor/a,1.5\n"
        );
        let session = std::fs::read_to_string(root.join("S1/sensors.csv")).unwrap();
        let mut rows = csv::Reader::from_reader(session.as_bytes());
        let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
        assert_eq!(&rows[0][2], "x,y\nz");
        assert_eq!(&rows[1][2], "\u{FFFD}bad");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
