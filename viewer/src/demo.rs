//! `viewer demo`: a whole fleet on one machine with nothing installed but
//! this project: the embedded broker, N camera-node processes on the test
//! pattern, and the viewer with its dashboard. Ctrl+C stops all of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shared::messages::NodeInfo;
use shared::mqtt::{self, MqttEvent, MqttSettings};
use shared::topics::Topics;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::config::ViewerConfig;

/// Frame sizes of the simulated cameras, in turn.
const SIZES: [(u32, u32); 3] = [(640, 480), (800, 600), (1280, 720)];
/// How long the fleet may take to come up before the demo says what is missing.
const COME_UP_LIMIT: Duration = Duration::from_secs(30);

/// The running nodes' process ids, for [`kill_nodes_now`].
static NODE_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// SIGKILL every demo node: the second Ctrl+C, when the viewer exits at
/// once, must not leave them running.
pub fn kill_nodes_now() {
    let pids = NODE_PIDS.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Defaults that make the demo self-contained; flags still win.
pub fn adjust(config: &mut ViewerConfig, recordings_given: bool) {
    if config.embedded_broker.is_none() {
        config.embedded_broker = Some(([127, 0, 0, 1], 0).into());
    }
    if !recordings_given {
        config.recordings = PathBuf::from("camfleet-demo/recordings");
    }
    // A demo shows recording from a clean start, never a resumed session.
    config.resume = false;
    // Relaying on one machine: everything on loopback.
    if config.relay.is_some() {
        config.relay = Some([127, 0, 0, 1].into());
    }
    // The default dashboard port may be taken (another viewer): use a free one.
    if !config.dashboard_explicit {
        if let Some(addr) = config.dashboard {
            if std::net::TcpListener::bind(addr).is_err() {
                config.dashboard = Some(([127, 0, 0, 1], 0).into());
                if let Ok(free) = std::net::TcpListener::bind(("127.0.0.1", 0)) {
                    config.dashboard = free.local_addr().ok();
                }
            }
        }
    }
}

/// With `--relay`: headless relay viewers beside the demo's own, and the
/// nodes' relay group size.
const DEMO_RELAYS: usize = 3;
const DEMO_GROUP: usize = 2;

/// The codec of demo node `i` (from 0) when the demo asks for `codec`
/// (`mjpeg`, `h264`, or `mixed`: every other node H.264).
fn node_codec(codec: &str, i: u16) -> &'static str {
    match codec {
        "h264" => "h264",
        "mixed" if i % 2 == 1 => "h264",
        _ => "mjpeg",
    }
}

/// Runs the fleet and the viewer until `shutdown`.
pub async fn run(
    config: ViewerConfig,
    nodes: u16,
    codec: &str,
    shutdown: CancellationToken,
) -> Result<()> {
    let node_bin = node_binary().await?;
    let logs = config
        .recordings
        .parent()
        .unwrap_or(Path::new("."))
        .join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let broker = config.mqtt.broker.clone();
    tracing::info!(
        "demo: starting {nodes} camera nodes ({}, {codec}), logs in {}",
        node_bin.display(),
        logs.display()
    );
    let mut children = Vec::with_capacity(usize::from(nodes));
    for i in 0..nodes {
        let (w, h) = SIZES[usize::from(i) % SIZES.len()];
        let id = format!("demo-{}", i + 1);
        let mut node = Command::new(&node_bin);
        node.args([
            "--broker",
            &broker.to_string(),
            "--node-id",
            &id,
            "--source",
            "test",
        ])
        .args([
            "--width",
            &w.to_string(),
            "--height",
            &h.to_string(),
            "--fps",
            "15",
            "--codec",
            node_codec(codec, i),
        ])
        .args(["--tcp-port", "0", "--rtsp-port", "0", "--http-port", "0"])
        .args([
            "--bind",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
            "--no-cpu-temp",
        ])
        .args(if config.relay.is_some() {
            vec!["--relay-max-member".to_owned(), DEMO_GROUP.to_string()]
        } else {
            vec![]
        });
        children.push((id.clone(), spawn_logged(node, &logs, &id)?));
    }
    if config.relay.is_some() {
        // Headless relays that neither record nor display: the demo's own
        // viewer takes the cameras from one of them, as the nodes plan.
        let exe = std::env::current_exe().context("the viewer's own path")?;
        for k in 1..=DEMO_RELAYS {
            let id = format!("demo-relay-{k}");
            let mut relay = Command::new(&exe);
            relay
                .args(["--broker", &broker.to_string(), "--viewer-id", &id])
                .args([
                    "--headless",
                    "--no-record",
                    "--relay",
                    "127.0.0.1",
                    "--dashboard",
                    "off",
                ])
                .arg("--recordings")
                .arg(&config.recordings);
            children.push((id.clone(), spawn_logged(relay, &logs, &id)?));
        }
        tracing::info!(
            "demo: {DEMO_RELAYS} headless relays started; the nodes plan groups of {DEMO_GROUP}"
        );
    }
    let watch = watch_fleet(
        config.mqtt.clone(),
        Topics::new(&config.topic_prefix),
        usize::from(nodes),
        config.dashboard,
        shutdown.clone(),
    );
    let watcher = tokio::spawn(watch);
    let result = crate::run(config, shutdown).await;
    watcher.abort();
    tracing::info!("demo: stopping the camera nodes");
    for (id, child) in &mut children {
        stop_child(id, child).await;
    }
    if let Ok(mut pids) = NODE_PIDS.lock() {
        pids.clear();
    }
    tracing::info!("demo: stopped");
    result
}

/// Starts one process of the demo with its log in `<logs>/<id>.log`; it is
/// killed with the demo (and by a second Ctrl+C).
fn spawn_logged(mut cmd: Command, logs: &Path, id: &str) -> Result<Child> {
    let log = std::fs::File::create(logs.join(format!("{id}.log")))?;
    let program = cmd.as_std().get_program().to_owned();
    let child = cmd
        .env_remove("CAMFLEET_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    if let (Some(pid), Ok(mut pids)) = (child.id(), NODE_PIDS.lock()) {
        pids.push(pid);
    }
    Ok(child)
}

/// SIGTERM, a few seconds for the node's orderly shutdown, then SIGKILL.
async fn stop_child(id: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(Ok(status)) => tracing::debug!(node = id, "exited: {status}"),
        _ => {
            tracing::warn!(node = id, "did not stop within 5 s; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Reports the fleet coming up (`2/3 nodes online`), then the URLs.
async fn watch_fleet(
    settings: MqttSettings,
    topics: Topics,
    want: usize,
    dashboard: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
) {
    let settings = MqttSettings {
        client_id: format!("{}-demo", settings.client_id),
        persistent: false,
        keep_alive: None,
        ..settings
    };
    let Ok((client, mut driver)) = mqtt::connect(&settings, None) else {
        return;
    };
    let mut online: BTreeMap<String, NodeInfo> = BTreeMap::new();
    let mut reported = 0;
    let deadline = tokio::time::sleep(COME_UP_LIMIT);
    tokio::pin!(deadline);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut deadline, if reported < want => {
                tracing::warn!("demo: only {reported} of {want} nodes online after {} s; see the node logs", COME_UP_LIMIT.as_secs());
                reported = want;
                continue;
            }
            event = driver.next() => event,
        };
        match event {
            None => return,
            Some(MqttEvent::Connected) => {
                let _ = client.try_subscribe(topics.all_node_info(), rumqttc::QoS::AtLeastOnce);
            }
            Some(MqttEvent::Subscribed) => {}
            Some(MqttEvent::Message(p)) => {
                // A node publishes its info right after `online`.
                let Some(node) = topics.node_id_of(&p.topic, "info") else {
                    continue;
                };
                match serde_json::from_slice::<NodeInfo>(&p.payload) {
                    Ok(info) if node.starts_with("demo-") => {
                        online.insert(node.to_owned(), info);
                    }
                    _ => continue,
                }
                let ready = online.len();
                if ready > reported && reported < want {
                    reported = ready;
                    tracing::info!("demo: {ready}/{want} nodes online");
                    if ready == want {
                        print_banner(&settings, dashboard, &online);
                    }
                }
            }
        }
    }
}

fn print_banner(
    settings: &MqttSettings,
    dashboard: Option<std::net::SocketAddr>,
    nodes: &BTreeMap<String, NodeInfo>,
) {
    let port = settings.broker.port;
    let mut text = String::from("\ncamfleet demo is running\n");
    if let Some(addr) = dashboard {
        text.push_str(&format!("  dashboard:  http://{addr}/\n"));
    }
    text.push_str(&format!(
        "  broker:     {}   (mosquitto_sub -p {port} -t 'camfleet/#' -v)\n  record:     mosquitto_pub -p {port} -t command/rec -m start   (and -m stop)\n",
        settings.broker
    ));
    for info in nodes.values() {
        for cam in &info.cameras {
            if let Some(rtsp) = &cam.rtsp {
                text.push_str(&format!(
                    "  player:     ffplay {rtsp}   ({} {}x{})\n",
                    info.node_id, cam.width, cam.height
                ));
            }
        }
    }
    text.push_str("Ctrl+C stops everything.\n");
    println!("{text}");
}

/// camera-node beside this binary, else built by cargo in this workspace.
async fn node_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let beside = exe.with_file_name("camera-node");
    if beside.exists() {
        return Ok(beside);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    let (Some(workspace), Some(target)) = (workspace, exe.parent().and_then(Path::parent)) else {
        bail!("camera-node not found beside {}", exe.display());
    };
    if !workspace.join("Cargo.toml").exists() {
        bail!(
            "camera-node not found beside {}: install it there (it comes with camfleet)",
            exe.display()
        );
    }
    let release = exe
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|n| n == "release");
    tracing::info!("demo: building camera-node with cargo (first run only)");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&workspace)
        .args(["build", "-p", "camera-node", "--target-dir"])
        .arg(target);
    if release {
        cargo.arg("--release");
    }
    let status = cargo
        .status()
        .await
        .context("cannot run cargo to build camera-node")?;
    if !status.success() || !beside.exists() {
        bail!("building camera-node failed ({status}); try: cargo build --release -p camera-node");
    }
    Ok(beside)
}
