//! The real viewer binary (one or many on a broker), test nodes for it to
//! watch, and what it records: its recording state, segments, samples.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The viewer binary (see [`crate::binary`]).
pub fn viewer_binary() -> PathBuf {
    crate::binary("viewer")
}

/// The real viewer binary, headless; its log goes to a file.
pub struct Viewer {
    pub child: Child,
    pub dir: TempDir,
}

impl Viewer {
    /// Headless, as on a server.
    pub fn start(broker: &Broker, recordings: &Path, extra: &[&str]) -> Self {
        Self::spawn(
            broker,
            recordings,
            "ws",
            &[&["--headless"], extra].concat(),
            None,
        )
    }

    /// Headless, with its own viewer id (several viewers on one broker).
    pub fn start_as(broker: &Broker, recordings: &Path, id: &str, extra: &[&str]) -> Self {
        Self::spawn(
            broker,
            recordings,
            id,
            &[&["--headless"], extra].concat(),
            None,
        )
    }

    /// With windows on the X display `display`.
    pub fn start_windowed(
        broker: &Broker,
        recordings: &Path,
        extra: &[&str],
        display: &str,
    ) -> Self {
        Self::spawn(broker, recordings, "ws", extra, Some(display))
    }

    fn spawn(
        broker: &Broker,
        recordings: &Path,
        id: &str,
        extra: &[&str],
        display: Option<&str>,
    ) -> Self {
        let viewer = Self::spawn_at(&broker.url(), recordings, id, extra, display);
        // Commands published before the viewer is subscribed are lost, as
        // for any MQTT client: wait for its `online`, which says it listens.
        broker_wait(broker, &format!("camfleet/viewer/{id}/status"), "online");
        viewer
    }

    /// The viewer on the broker at `url` (credentials and all); the caller
    /// waits for it to be online.
    pub fn spawn_at(
        url: &str,
        recordings: &Path,
        id: &str,
        extra: &[&str],
        display: Option<&str>,
    ) -> Self {
        let dir = TempDir::new("viewer");
        let log = std::fs::File::create(dir.path("viewer.log")).unwrap();
        let mut cmd = Command::new(viewer_binary());
        cmd.args(["--broker", url, "--viewer-id", id])
            .arg("--recordings")
            .arg(recordings)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("CAMFLEET_DASHBOARD", "127.0.0.1:0")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(display) = display {
            cmd.env("DISPLAY", display);
        }
        Viewer {
            child: cmd.spawn().unwrap(),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("viewer.log")).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, limit: Duration) {
        wait_for(&format!("{needle:?} in the viewer log"), limit, || {
            self.log().contains(needle).then_some(())
        });
    }

    /// `host:port` of the dashboard (it listens on a free port in tests).
    /// The dashboard's host:port (http or https, as its log says).
    pub fn dashboard(&self) -> String {
        let needle = "dashboard on http";
        self.wait_log(needle, SECS(20));
        let log = self.log();
        let at = log.find(needle).unwrap() + needle.len();
        let rest = log[at..].trim_start_matches('s');
        let rest = rest.strip_prefix("://").expect("dashboard on http(s)://");
        rest.split('/').next().unwrap().to_owned()
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_for("the viewer to exit", SECS(20), || {
            self.child.try_wait().unwrap()
        });
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- viewer log ----\n{}", self.log());
        }
    }
}

/// A node drawing the test pattern at `size` (`WxH`), 10 fps.
pub fn test_node(broker: &Broker, id: &str, size: &str) -> Node {
    test_node_with(broker, id, size, &[])
}

/// [`test_node`] with more flags.
pub fn test_node_with(broker: &Broker, id: &str, size: &str, extra: &[&str]) -> Node {
    let url = broker.url();
    Node::start(&[camera_args(&url, id, "test", size), extra.to_vec()].concat())
}

/// A broker, two test nodes (`pi-a` at 320x240, `pi-b` at 160x120) and a
/// headless viewer recording 2 s segments, connected to both cameras. The
/// fields drop from the viewer down to the broker, as the locals of a test
/// that starts them one by one would.
pub struct TwoNodes {
    pub viewer: Viewer,
    pub recordings: TempDir,
    pub b: Node,
    pub a: Node,
    pub broker: Broker,
}

impl TwoNodes {
    pub fn start() -> Self {
        let broker = Broker::start();
        let a = test_node(&broker, "pi-a", "320x240");
        let b = test_node(&broker, "pi-b", "160x120");
        let recordings = TempDir::new("recordings");
        let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
        for node in ["pi-a", "pi-b"] {
            viewer.wait_log(
                &format!("camera{{camera={node}/cam0}}: connected"),
                SECS(20),
            );
        }
        TwoNodes {
            viewer,
            recordings,
            b,
            a,
            broker,
        }
    }
}

/// Files below `dir` ending in `suffix`.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The viewer's retained recording state.
pub fn recording_state(broker: &Broker) -> Option<shared::messages::RecordingState> {
    broker
        .retained("camfleet/viewer/ws/recording")
        .map(|p| serde_json::from_str(&p).expect("RecordingState JSON"))
}

/// Waits until the retained state satisfies `check`.
pub fn wait_state(
    broker: &Broker,
    what: &str,
    check: impl Fn(&shared::messages::RecordingState) -> bool,
) -> shared::messages::RecordingState {
    wait_for(what, SECS(20), || {
        recording_state(broker).filter(|s| check(s))
    })
}

/// Waits until the viewer says it is `online`: subscribed, commands heard.
pub fn wait_online(broker: &Broker) {
    broker_wait(broker, "camfleet/viewer/ws/status", "online");
}

fn broker_wait(broker: &Broker, topic: &str, want: &str) {
    wait_for(&format!("{want} on {topic}"), SECS(20), || {
        (broker.retained(topic).as_deref() == Some(want)).then_some(())
    });
}

/// `mosquitto_sub -v` on a broker's port for `count` messages within
/// `secs` (retained ones arrive at once); the `topic payload` lines.
pub fn mqtt_sub(port: u16, topic: &str, count: usize, secs: u32) -> Vec<String> {
    let port = port.to_string();
    mosquitto_sub(
        &["-h", "127.0.0.1", "-p", port.as_str()],
        topic,
        count,
        secs,
    )
}

/// Waits at most `limit` until `topic` says `want` on the broker at
/// `port` (a retained state answers at once).
pub fn wait_topic_at(port: u16, topic: &str, want: &str, limit: Duration) {
    let line = format!("{topic} {want}");
    wait_for(&format!("{want} on {topic}"), limit, || {
        (mqtt_sub(port, topic, 1, 2) == [line.as_str()]).then_some(())
    });
}

/// A viewer that is its own broker (`--embedded-broker ADDRESS`), as
/// `viewer_id`, headless and without a dashboard, recording into
/// `recordings`: [`viewer_process`]'s arguments, to which more flags add.
pub fn embedded_broker_args<'a>(
    address: &'a str,
    viewer_id: &'a str,
    recordings: &'a Path,
) -> Vec<&'a str> {
    vec![
        "--embedded-broker",
        address,
        "--viewer-id",
        viewer_id,
        "--headless",
        "--dashboard",
        "off",
        "--recordings",
        recordings.to_str().unwrap(),
    ]
}

/// The viewer binary with `args`, headless and without a config file, its
/// log (stdout and stderr) in `log`.
pub fn viewer_process(args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(viewer_binary())
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("CAMFLEET_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the viewer")
}

/// A segment's start (from its name, `YYYYmmddTHHMMSSZ.mp4[.part]`) in µs
/// since the epoch.
pub fn origin_us(segment: &Path) -> i64 {
    let name = segment.file_name().unwrap().to_string_lossy();
    let stamp = name.get(..16).unwrap_or(&name);
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .unwrap_or_else(|e| panic!("segment name {name}: {e}"))
        .and_utc()
        .timestamp_micros()
}

/// ffprobe on the video stream of `file` (`-v error -select_streams v`,
/// then `args`), whether or not it could read it.
pub fn ffprobe_video(file: &Path, args: &[&str]) -> Output {
    Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v"])
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

/// ffprobe's CSV line for every video packet of `file`, `pts_time,MD5:hash`
/// (seconds from the file's start), or its stderr when it cannot read the
/// file (a `.part` may be renamed while it is read).
pub fn packet_lines(file: &Path) -> Result<String, String> {
    require("ffprobe", "ffmpeg");
    let out = ffprobe_video(
        file,
        &[
            "-show_packets",
            "-show_data_hash",
            "md5",
            "-show_entries",
            "packet=pts_time,data_hash",
            "-of",
            "csv=p=0",
        ],
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout).unwrap())
}

/// Every sample of a segment as ffprobe reads it: its time on the
/// timeline (µs since the epoch) and the MD5 of its JPEG.
pub fn samples(segment: &Path) -> Vec<(i64, String)> {
    let lines = packet_lines(segment)
        .unwrap_or_else(|why| panic!("ffprobe cannot read {}: {why}", segment.display()));
    let origin = origin_us(segment);
    lines
        .lines()
        .map(|line| {
            let (pts, hash) = line
                .split_once(',')
                .unwrap_or_else(|| panic!("ffprobe line {line:?}"));
            let pts: f64 = pts.parse().unwrap();
            (origin + (pts * 1e6).round() as i64, hash.to_owned())
        })
        .collect()
}

/// Holds a process stopped for `hold` (the fault's length, not a wait for
/// anything), then lets it run again (unless its supervisor has replaced
/// it meanwhile).
pub fn freeze(pid: u32, hold: Duration) {
    let signal = |name: &str| {
        Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap()
            .success()
    };
    assert!(signal("STOP"), "kill -STOP {pid}");
    std::thread::sleep(hold);
    signal("CONT");
}

/// A per-camera counter of the viewer's `/metrics` (`camfleet_viewer_NAME`).
pub fn viewer_counter(dashboard: &str, name: &str, node: &str, camera: &str) -> u64 {
    let text = curl(&[&format!("http://{dashboard}/metrics")]).text();
    let series = format!("camfleet_viewer_{name}{{node=\"{node}\",camera=\"{camera}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the viewer's metrics:\n{text}"))
}

/// Segment name -> samples (timeline µs, MD5), for one viewer's recording
/// of one camera under `dir`.
pub fn recorded(dir: &Path) -> std::collections::BTreeMap<String, Vec<(i64, String)>> {
    files(dir, ".mp4")
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                samples(p),
            )
        })
        .collect()
}

/// Checks that two viewers recorded one camera alike: the segments both
/// hold, past each one's first (named for that viewer's own first frame)
/// and before the last (cut by the stop), have the same samples. At least
/// two such segments; how many there were.
pub fn assert_same_segments(far: &Path, near: &Path, what: &str) -> usize {
    let (far, near) = (recorded(far), recorded(near));
    let common: Vec<&String> = far
        .keys()
        .skip(1)
        .filter(|n| near.contains_key(*n))
        .collect();
    assert!(
        common.len() >= 2,
        "segments {:?} vs {:?}",
        far.keys(),
        near.keys()
    );
    for name in &common[..common.len() - 1] {
        assert!(!far[*name].is_empty(), "segment {name} is empty {what}");
        assert_eq!(far[*name], near[*name], "segment {name} differs {what}");
    }
    common.len() - 1
}

/// Starts a session once the viewer is online and waits until an open
/// segment holds more than `bytes`.
pub fn start_recording(broker: &Broker, recordings: &Path, bytes: u64) {
    wait_online(broker);
    broker.publish("command/rec", "start");
    wait_for("frames on disk", SECS(20), || {
        files(recordings, ".part")
            .iter()
            .any(|p| p.metadata().map(|m| m.len() > bytes).unwrap_or(false))
            .then_some(())
    });
}
