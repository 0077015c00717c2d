//! `viewer demo` as a child process, with its embedded broker and
//! dashboard on free ports and its recordings in a scratch folder.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::viewers::{mqtt_sub, viewer_binary, viewer_process};
use crate::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

pub struct Demo {
    pub child: Child,
    pub dir: TempDir,
    pub broker_port: u16,
    pub dashboard: String,
    /// What curl needs to reach the dashboard (CA, user) when locked.
    pub curl_args: Vec<String>,
    /// The test certificate and config of a locked dashboard.
    pub keys: Option<TempDir>,
}

/// The dashboard user of [`Demo::start_secure`].
pub const USER: (&str, &str) = ("alice", "correct horse battery");

/// A test certificate for 127.0.0.1 from `viewer broker-config` in `dir`:
/// the CA, the certificate and its key.
pub fn test_certificate(dir: &std::path::Path) -> (String, String, String) {
    let made = Command::new(viewer_binary())
        .args([
            "broker-config",
            "--nodes",
            "n",
            "--host",
            "127.0.0.1",
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let at = |f: &str| dir.join(f).display().to_string();
    (at("ca.crt"), at("server.crt"), at("server.key"))
}

/// A viewer config file with [`USER`], hashed by `viewer hash-password`.
pub fn config_with_user(path: &std::path::Path) {
    use std::io::Write;
    let mut child = Command::new(viewer_binary())
        .args(["hash-password", USER.0])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", USER.1).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "hash-password: {out:?}");
    std::fs::write(path, &out.stdout).unwrap();
}

/// Waits until the viewer's `/api/state` (as `state` fetches it) lists
/// `n` cameras, each with a frame under 2 s old.
pub fn wait_fresh_cameras(n: usize, limit: Duration, mut state: impl FnMut() -> serde_json::Value) {
    wait_for(
        &format!("frames from {n} cameras in the viewer"),
        limit,
        || {
            let state = state();
            let cameras = state["cameras"].as_array()?.clone();
            let fresh =
                |c: &serde_json::Value| c["last_frame_age_s"].as_f64().is_some_and(|a| a < 2.0);
            (cameras.len() == n && cameras.iter().all(fresh)).then_some(())
        },
    );
}

impl Demo {
    pub fn start(nodes: &str) -> Self {
        Self::start_with(nodes, &[])
    }

    /// The dashboard over HTTPS (a test certificate) with a login
    /// ([`USER`]).
    pub fn start_secure(nodes: &str) -> Self {
        let keys = TempDir::new("dashboard-tls");
        let (ca, cert, key) = test_certificate(&keys.0);
        let config = keys.path("viewer.toml");
        config_with_user(&config);
        let config = config.display().to_string();
        let mut demo = Self::start_with(
            nodes,
            &["--config", &config, "--tls-cert", &cert, "--tls-key", &key],
        );
        demo.dashboard = demo.dashboard.replace("http://", "https://");
        demo.curl_args = vec![
            "--cacert".into(),
            ca,
            "-u".into(),
            format!("{}:{}", USER.0, USER.1),
        ];
        demo.keys = Some(keys);
        demo
    }

    /// curl's arguments for a dashboard `path`.
    pub fn curl(&self, path: &str) -> HttpReply {
        let url = format!("{}{path}", self.dashboard);
        let mut args: Vec<&str> = self.curl_args.iter().map(String::as_str).collect();
        args.push(&url);
        curl(&args)
    }

    /// With more flags (`--relay`).
    pub fn start_with(nodes: &str, extra: &[&str]) -> Self {
        let _ = node_binary(); // built beside the viewer, where the demo looks first
        let dir = TempDir::new("fleet");
        let (broker_port, dashboard_port) = (free_port(), free_port());
        let (broker, dashboard) = (
            format!("127.0.0.1:{broker_port}"),
            format!("127.0.0.1:{dashboard_port}"),
        );
        let recordings = dir.path("recordings");
        let args = [
            "demo",
            "--nodes",
            nodes,
            "--headless",
            "--segment-seconds",
            "2",
            "--embedded-broker",
            &broker,
            "--dashboard",
            &dashboard,
            "--recordings",
            recordings.to_str().unwrap(),
        ];
        let args = [&args[..], extra].concat();
        let child = viewer_process(&args, &dir.path("demo.log"));
        Demo {
            child,
            dir,
            broker_port,
            dashboard: format!("http://127.0.0.1:{dashboard_port}"),
            curl_args: Vec::new(),
            keys: None,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("demo.log")).unwrap_or_default()
    }

    /// `mosquitto_sub` against the embedded broker: `count` messages.
    pub fn sub(&self, topic: &str, count: usize) -> Vec<String> {
        mqtt_sub(self.broker_port, topic, count, 20)
    }

    pub fn state(&self) -> serde_json::Value {
        self.curl("/api/state").json()
    }
    /// Waits for every node online and frames from every camera.
    pub fn wait_fleet(&self, nodes: usize) {
        let want = format!("{nodes}/{nodes} nodes online");
        wait_for(&want, SECS(60), || self.log().contains(&want).then_some(()));
        wait_fresh_cameras(nodes, SECS(30), || self.state());
    }

    /// A line-buffered `mosquitto_sub -d` on `topic`, returned once the
    /// broker has acknowledged its subscription; its stdout lines follow.
    pub fn watch(&self, topic: &str) -> (Child, impl Iterator<Item = String>) {
        use std::io::{BufRead, BufReader};
        require("mosquitto_sub", "mosquitto-clients");
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &self.broker_port.to_string(),
            ])
            .args(["-t", topic, "-C", "1", "-W", "20", "-d"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok);
        assert!(
            lines.any(|l| l.contains("SUBACK")),
            "mosquitto_sub subscribed to {topic}"
        );
        (child, lines)
    }
}

impl Drop for Demo {
    /// Ctrl+C first, so the demo stops its nodes; a killed demo would
    /// leave them running.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + SECS(20);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- viewer demo log ----\n{}", self.log());
        }
    }
}
