//! Test harness: real mosquitto, the real camera-node binary, real ffmpeg,
//! all on free loopback ports; clients that read as a user's tools would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::frame::{FrameHeader, HEADER_LEN, HELLO};
use shared::messages::NodeInfo;

/// Fails with how to install a missing program; tests never skip.
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "`{program}` is not installed: run `sudo apt-get install {package}` (or scripts/test.sh, which installs it)");
}

/// Polls `check` until it gives a value, failing after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("camfleet-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes an executable script.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

    /// A broker that only lets `user` in with `password`.
    pub fn start_with_password(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Self {
        require("mosquitto", "mosquitto");
        require("mosquitto_sub", "mosquitto-clients");
        let dir = TempDir::new("broker");
        let port = free_port();
        let mut conf = format!("listener {port} 127.0.0.1\npersistence false\n");
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
        let out = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-v",
                "-t",
                topic,
            ])
            .args(["-C", &count.to_string(), "-W", &secs.to_string()])
            .args(
                self.tls_ca
                    .iter()
                    .flat_map(|ca| [std::ffi::OsStr::new("--cafile"), ca.as_os_str()]),
            )
            .output()
            .expect("run mosquitto_sub");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(t, p)| (t.to_owned(), p.to_owned())))
            .collect()
    }

    /// The retained payload of `topic` (a fresh subscriber's first message).
    pub fn retained(&self, topic: &str) -> Option<String> {
        self.sub(topic, 1, 1).into_iter().next().map(|(_, p)| p)
    }

    pub fn publish(&self, topic: &str, payload: &str) {
        let ok = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-t",
                topic,
                "-m",
                payload,
            ])
            .status()
            .expect("run mosquitto_pub")
            .success();
        assert!(ok, "mosquitto_pub failed");
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

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The real camera-node binary; its log goes to a file the test can read.
pub struct Node {
    pub child: Option<Child>,
    pub dir: TempDir,
}

impl Node {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_command(Command::new(env!("CARGO_BIN_EXE_camera-node")), args, env)
    }

    /// Starts `program` (a wrapper such as qemu, with its own arguments and
    /// the node binary) followed by the node's `args`.
    pub fn start_command(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("node");
        let log = std::fs::File::create(dir.path("node.log")).unwrap();
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env_remove("CAMFLEET_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start camera-node");
        Node {
            child: Some(child),
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("node.log")).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, limit: Duration) {
        wait_for(&format!("{needle:?} in the node log"), limit, || {
            self.log().contains(needle).then_some(())
        });
    }

    /// The TCP port of a camera, from the node's log.
    pub fn tcp_port(&self, camera: &str) -> u16 {
        let needle = format!("serving {camera} on TCP port ");
        wait_for(&needle, Duration::from_secs(20), || {
            let log = self.log();
            let at = log.find(&needle)? + needle.len();
            log[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the node to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        wait_for("the node to exit", limit, || child.try_wait().unwrap())
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `VmHWM:`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- camera-node log ----\n{}", self.log());
        }
    }
}

/// Runs camera-node to completion (for start-up errors).
pub fn run_node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camera-node"))
        .args(args)
        .env_remove("CAMFLEET_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run camera-node")
}

/// A viewer reading TCP frame protocol v1 the way a third-party client would.
pub struct FrameClient {
    stream: TcpStream,
}

#[derive(Debug)]
pub struct Received {
    pub seq: u64,
    pub captured_at_us: u64,
    pub jpeg: Vec<u8>,
}

impl FrameClient {
    pub fn connect(port: u16) -> Self {
        let stream = wait_for("the TCP frame port", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut client = FrameClient { stream };
        let mut hello = [0u8; 11];
        client
            .stream
            .read_exact(&mut hello)
            .expect("read the hello");
        assert_eq!(&hello, HELLO, "the node must greet with CAMFLEET/1");
        client
    }

    pub fn next(&mut self) -> Received {
        self.try_next().expect("read a frame")
    }

    /// The next frame, or `None` once the read times out or the stream ends.
    pub fn try_next(&mut self) -> Option<Received> {
        let mut head = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut head).ok()?;
        let h = FrameHeader::decode(&head);
        let mut jpeg = vec![0u8; h.len as usize];
        self.stream.read_exact(&mut jpeg).ok()?;
        Some(Received {
            seq: h.seq,
            captured_at_us: h.captured_at_us,
            jpeg,
        })
    }

    /// Waits longer for each frame (a node under emulation).
    pub fn patient(self, limit: Duration) -> Self {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        self
    }

    /// A client that connects and then never reads.
    pub fn stalled(port: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nonblocking(false).unwrap();
        s
    }

    pub fn raw(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Decodes a JPEG and returns its size.
pub fn jpeg_size(jpeg: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .expect("a JPEG that decodes");
    (img.width(), img.height())
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The `cmd:` source of the contract's ffmpeg camera at a given size and rate.
pub fn ffmpeg_camera(width: u32, height: u32, fps: u32) -> String {
    require("ffmpeg", "ffmpeg");
    format!(
        "cmd:exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size={width}x{height}:rate={fps} \
         -f mjpeg -q:v 5 -huffman default -"
    )
}

pub fn is_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; only count running states.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub fn write(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// An MJPEG file (one JPEG when `frames` is 1) of ffmpeg's test picture,
/// baseline 4:2:0 with the standard Huffman tables like `rpicam-vid`.
pub fn make_mjpeg(path: &Path, size: &str, frames: u32) {
    require("ffmpeg", "ffmpeg");
    let made = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=10"),
        ])
        .args([
            "-frames:v",
            &frames.to_string(),
            "-f",
            "mjpeg",
            "-q:v",
            "5",
            "-huffman",
            "default",
        ])
        .arg(path)
        .status()
        .expect("run ffmpeg");
    assert!(made.success(), "ffmpeg could not make {}", path.display());
}

/// Command-line words from one string, to keep argument lists short.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}
