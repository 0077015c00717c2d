//! The viewer's Prometheus figures (`GET /metrics` on the dashboard's
//! address): per camera what arrived, what was missed or repeated and what
//! reached the disk, with the write latency; the recordings' file system;
//! MQTT; wanted and actual recording state.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::link::stats::{CameraCounters, Counters};
use crate::record::recorder::WRITE_BOUNDS_S;
use crate::record::retention::Freed;

#[derive(Debug)]
pub struct Metrics {
    /// Every camera's counters, and how many record now.
    pub counters: Arc<Counters>,
    pub mqtt_connected: Arc<AtomicBool>,
    /// A session is wanted (`command/rec start` and no `stop` since).
    pub wanted: AtomicBool,
    /// What retention deleted.
    pub freed: Arc<Freed>,
    recordings: PathBuf,
}

impl Metrics {
    pub fn new(recordings: PathBuf, mqtt_connected: Arc<AtomicBool>) -> Self {
        Metrics {
            counters: Arc::default(),
            mqtt_connected,
            wanted: AtomicBool::new(false),
            freed: Arc::default(),
            recordings,
        }
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let cameras = self.counters.all();
        let mut out = String::new();
        let mut per_camera =
            |name: &str,
             kind: &str,
             help: &str,
             value: &dyn Fn(&CameraCounters) -> Option<String>| {
                let _ = writeln!(out, "# HELP camfleet_viewer_{name} {help}");
                let _ = writeln!(out, "# TYPE camfleet_viewer_{name} {kind}");
                for (label, c) in &cameras {
                    let Some(value) = value(c) else { continue };
                    let (node, camera) = label.split_once('/').unwrap_or((label, ""));
                    let _ = writeln!(
                        out,
                        "camfleet_viewer_{name}{{node=\"{}\",camera=\"{}\"}} {value}",
                        escape(node),
                        escape(camera),
                    );
                }
            };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counter = |a: &AtomicU64| Some(load(a).to_string());
        per_camera(
            "frames_received_total",
            "counter",
            "Frames received from the camera's node.",
            &|c| counter(&c.link.frames),
        );
        per_camera(
            "frames_missed_total",
            "counter",
            "Frames the node skipped for this viewer (sequence gaps).",
            &|c| counter(&c.link.missed),
        );
        per_camera(
            "reconnects_total",
            "counter",
            "Times the connection to the camera was made again.",
            &|c| counter(&c.link.reconnects),
        );
        per_camera(
            "duplicates_skipped_total",
            "counter",
            "Frames received again after a reconnect and not recorded twice.",
            &|c| counter(&c.recorded.duplicates),
        );
        per_camera(
            "frames_before_keyframe_total",
            "counter",
            "H.264 frames not recorded because no keyframe came before them since a connect or a gap.",
            &|c| counter(&c.before_key),
        );
        per_camera(
            "segments_written_total",
            "counter",
            "Segments closed (renamed from .part).",
            &|c| counter(&c.written.segments),
        );
        per_camera(
            "bytes_written_total",
            "counter",
            "Bytes written to segments.",
            &|c| counter(&c.written.bytes),
        );
        per_camera(
            "clock_offset_seconds",
            "gauge",
            "The camera's node clock minus the viewer's, as last measured.",
            &|c| {
                let clock = c.clock.lock().expect("clock slot").clone();
                clock
                    .and_then(|k| k.estimate())
                    .map(|e| (e.offset_us as f64 / 1e6).to_string())
            },
        );

        write_histogram(&mut out, &cameras);

        let mut single = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP camfleet_viewer_{name} {help}");
            let _ = writeln!(out, "# TYPE camfleet_viewer_{name} {kind}");
            let _ = writeln!(out, "camfleet_viewer_{name} {value}");
        };
        single(
            "retention_deleted_segments_total",
            "counter",
            "Segments retention deleted.",
            load(&self.freed.segments).to_string(),
        );
        single(
            "retention_freed_bytes_total",
            "counter",
            "Bytes retention freed.",
            load(&self.freed.bytes).to_string(),
        );
        let mut gauge = |name: &str, help: &str, value: String| single(name, "gauge", help, value);
        let flag = |b: bool| u8::from(b).to_string();
        gauge(
            "mqtt_connected",
            "1 while connected to the broker.",
            flag(self.mqtt_connected.load(Ordering::Relaxed)),
        );
        gauge(
            "recording_wanted",
            "1 while a session is wanted (start, and no stop since).",
            flag(self.wanted.load(Ordering::Relaxed)),
        );
        gauge(
            "cameras_recording",
            "Cameras writing segments now.",
            self.counters.recording().to_string(),
        );
        gauge(
            "recordings_bytes",
            "Bytes in the recordings folder at the last retention pass (every 10 s or less often on a large folder).",
            load(&self.freed.holding).to_string(),
        );
        if let Ok(fs) = nix::sys::statvfs::statvfs(&self.recordings) {
            let block = fs.fragment_size() as f64;
            gauge(
                "recordings_free_bytes",
                "Free space on the recordings' file system (for unprivileged users).",
                (fs.blocks_available() as f64 * block).to_string(),
            );
            gauge(
                "recordings_size_bytes",
                "Size of the recordings' file system.",
                (fs.blocks() as f64 * block).to_string(),
            );
        }
        out
    }
}

/// The write latency histogram of every camera.
fn write_histogram(out: &mut String, cameras: &[(String, Arc<CameraCounters>)]) {
    let name = "camfleet_viewer_write_seconds";
    let _ = writeln!(out, "# HELP {name} Time to hand one frame to the segment writer, fragment writes and fsync included.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (label, c) in cameras {
        let (node, camera) = label.split_once('/').unwrap_or((label, ""));
        let (buckets, sum_s) = c.written.latency();
        let labels = format!("node=\"{}\",camera=\"{}\"", escape(node), escape(camera));
        for (i, bound) in WRITE_BOUNDS_S.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                buckets[i]
            );
        }
        let count = buckets[WRITE_BOUNDS_S.len()];
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum_s);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let m = Metrics::new(std::env::temp_dir(), Arc::default());
        let c = m.counters.camera("pi-\"door\"/cam0");
        c.written.record_latency(Duration::from_micros(300));
        c.written.record_latency(Duration::from_millis(30));
        c.link.frames.fetch_add(5, Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains(
                r#"camfleet_viewer_frames_received_total{node="pi-\"door\"",camera="cam0"} 5"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"le="0.0005"} 1"#), "{text}");
        assert!(text.contains(r#"le="0.05"} 2"#), "{text}");
        assert!(text.contains(r#"le="+Inf"} 2"#), "{text}");
        assert!(
            text.contains("camfleet_viewer_recordings_free_bytes "),
            "{text}"
        );
    }
}
