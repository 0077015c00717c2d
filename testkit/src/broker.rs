//! A real mosquitto broker per test, and `mosquitto_sub`/`mosquitto_pub`
//! as a user would type them.

use std::ffi::{OsStr, OsString};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use shared::messages::NodeInfo;

use super::{free_port, require, wait_for, TempDir};

/// A real mosquitto broker on a free loopback port.
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    config: PathBuf,
    /// Set for a TLS broker: mosquitto_sub/pub then use it.
    tls_ca: Option<PathBuf>,
}

impl Broker {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// The test's panic message, kept to be said again after the logs
    /// (below them, where a summary that shows the end of a failure finds
    /// it).
    fn remember_failures() {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                FAILURE.with(|f| *f.borrow_mut() = Some(info.to_string()));
                default(info);
            }));
        });
    }

    /// A broker on TLS only, with a certificate for 127.0.0.1 from a fresh
    /// test CA; returns it and the CA file clients should trust.
    pub fn start_tls() -> (Self, PathBuf) {
        require("openssl", "openssl");
        let mut broker = Self::start_with(None);
        broker.stop();
        let d = &broker.dir;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&d.0)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            &[
                "-subj",
                "/CN=camfleet test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
            &["-addext", "keyUsage=critical,keyCertSign"],
        ]
        .concat());
        run(&[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat());
        std::fs::write(
            d.path("ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        let conf = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\ncafile {}\ncertfile {}\nkeyfile {}\n",
            broker.port,
            d.path("ca.pem").display(),
            d.path("server.pem").display(),
            d.path("server.key").display()
        );
        std::fs::write(&broker.config, conf).unwrap();
        // mosquitto started as root drops to its own user: let it read the
        // (throwaway) key.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.path("server.key"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let ca = d.path("ca.pem");
        broker.tls_ca = Some(ca.clone());
        broker.restart();
        (broker, ca)
    }

    /// mosquitto started with a configuration of its own (one written by
    /// `viewer broker-config`, say) listening on `port`. Run as root,
    /// mosquitto would drop to its own user and not read the files' 0600
    /// keys: `user root` keeps it as it is (ignored when not root).
    pub fn start_config(config: &std::path::Path, port: u16, tls_ca: Option<PathBuf>) -> Self {
        require("mosquitto", "mosquitto");
        let dir = TempDir::new("broker");
        let text = std::fs::read_to_string(config).unwrap();
        let ours = dir.path("mosquitto.conf");
        std::fs::write(
            &ours,
            format!(
                "{text}
user root
persistence false
log_type all
"
            ),
        )
        .unwrap();
        Self::remember_failures();
        let mut broker = Broker {
            port,
            child: None,
            dir,
            config: ours,
            tls_ca,
        };
        broker.restart();
        broker
    }

    /// The broker's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("mosquitto.log")).unwrap_or_default()
    }

    /// A broker that only lets `user` in with `password`.
    pub fn start_with_password(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Self {
        require("mosquitto", "mosquitto");
        require("mosquitto_sub", "mosquitto-clients");
        let dir = TempDir::new("broker");
        let port = free_port();
        let mut conf = format!("listener {port} 127.0.0.1\npersistence false\nlog_type all\n");
        match credentials {
            None => conf.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let file = dir.path("passwords");
                let ok = Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, password])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "mosquitto_passwd failed");
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
        }
        let config = dir.path("mosquitto.conf");
        std::fs::write(&config, conf).unwrap();
        Self::remember_failures();
        let mut broker = Broker {
            port,
            child: None,
            dir,
            config,
            tls_ca: None,
        };
        broker.restart();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_for("the broker port to close", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port))
                .is_err()
                .then_some(())
        });
    }

    /// Starts (again) on the same port, with no retained messages.
    pub fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.path("mosquitto.log")).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        wait_for("mosquitto to listen", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    /// Messages on `topic` as `mosquitto_sub -v` prints them, at most
    /// `count`, waiting at most `secs` seconds.
    pub fn sub(&self, topic: &str, count: usize, secs: u32) -> Vec<(String, String)> {
        let mut connection: Vec<OsString> = vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string().into(),
        ];
        if let Some(ca) = &self.tls_ca {
            connection.push("--cafile".into());
            connection.push(ca.into());
        }
        mosquitto_sub(&connection, topic, count, secs)
            .into_iter()
            .filter_map(|l| l.split_once(' ').map(|(t, p)| (t.to_owned(), p.to_owned())))
            .collect()
    }

    /// The retained payload of `topic` (a fresh subscriber's first message).
    pub fn retained(&self, topic: &str) -> Option<String> {
        self.sub(topic, 1, 1).into_iter().next().map(|(_, p)| p)
    }

    pub fn publish(&self, topic: &str, payload: &str) {
        self.mosquitto_pub(&["-t", topic, "-m", payload]);
    }

    /// Published with QoS 1, so the broker keeps it for a persistent
    /// session that is away (`mosquitto_pub -q 1`).
    pub fn publish_qos1(&self, topic: &str, payload: &str) {
        self.mosquitto_pub(&["-q", "1", "-t", topic, "-m", payload]);
    }

    /// Published with the retain flag (an empty payload clears it).
    pub fn publish_retained(&self, topic: &str, payload: &str) {
        self.mosquitto_pub(&["-r", "-t", topic, "-m", payload]);
    }

    /// The bytes of `file` as the payload, as they are (`mosquitto_pub -f`).
    pub fn publish_file(&self, topic: &str, file: &std::path::Path) {
        self.mosquitto_pub(&["-t", topic, "-f", file.to_str().unwrap()]);
    }

    fn mosquitto_pub(&self, args: &[&str]) {
        let ok = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .status()
            .expect("run mosquitto_pub")
            .success();
        assert!(ok, "mosquitto_pub {args:?} failed");
    }

    /// Waits for the retained NodeInfo of `node_id`.
    pub fn node_info(&self, node_id: &str) -> NodeInfo {
        let topic = format!("camfleet/node/{node_id}/info");
        wait_for(
            &format!("retained {topic}"),
            Duration::from_secs(20),
            || {
                self.retained(&topic)
                    .map(|p| serde_json::from_str(&p).expect("NodeInfo JSON"))
            },
        )
    }

    pub fn wait_status(&self, node_id: &str, want: &str) {
        let topic = format!("camfleet/node/{node_id}/status");
        wait_for(
            &format!("retained {want} on {topic}"),
            Duration::from_secs(20),
            || (self.retained(&topic).as_deref() == Some(want)).then_some(()),
        );
    }
}

/// `mosquitto_sub -v` on `topic` with the flags that reach a broker
/// (`connection`: host, port, CA, user): the `topic payload` lines of at
/// most `count` messages within `secs` (retained ones arrive at once).
pub fn mosquitto_sub<S: AsRef<OsStr>>(
    connection: &[S],
    topic: &str,
    count: usize,
    secs: u32,
) -> Vec<String> {
    require("mosquitto_sub", "mosquitto-clients");
    let out = Command::new("mosquitto_sub")
        .args(connection)
        .args(["-v", "-t", topic])
        .args(["-C", &count.to_string(), "-W", &secs.to_string()])
        .output()
        .expect("run mosquitto_sub");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A `mosquitto_sub -v` running in the background, writing what it sees
/// to a file; [`Watcher::start`] returns once it is subscribed.
pub struct Watcher {
    child: Child,
    out: PathBuf,
    _dir: TempDir,
}

impl Watcher {
    pub fn start(broker: &Broker, filter: &str) -> Self {
        let dir = TempDir::new("watch");
        let out = dir.path("seen");
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.port.to_string(),
                "-v",
                "-t",
                filter,
                "-t",
                "test/ready",
            ])
            .stdout(file)
            .spawn()
            .expect("run mosquitto_sub");
        let watcher = Watcher {
            child,
            out,
            _dir: dir,
        };
        wait_for("the watcher to subscribe", Duration::from_secs(10), || {
            broker.publish("test/ready", "1");
            watcher.seen().contains("test/ready").then_some(())
        });
        watcher
    }

    pub fn seen(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The end of the broker's log a failed test prints.
const LOG_TAIL_LINES: usize = 100;

thread_local! {
    /// This test thread's panic message, once it has panicked.
    static FAILURE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path("mosquitto.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            eprintln!(
                "---- mosquitto log ({} lines before these left out) ----\n{}",
                from,
                lines[from..].join("\n")
            );
            if let Some(failure) = FAILURE.with(|f| f.borrow_mut().take()) {
                eprintln!("---- the failure, again ----\n{failure}");
            }
        }
    }
}
