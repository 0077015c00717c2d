//! Wires a node together and owns its shutdown order: stop accepting and
//! close viewer connections, stop the cameras, publish `offline`.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use shared::messages::{NodeInfo, PAYLOAD_VERSION};
use shared::net::host_port;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use fanout::tcp;
use tokio::sync::watch;

use crate::cameras::store::{Saved, Store};
use crate::cameras::{Cameras, Env, Origin};
use crate::config::NodeConfig;
use crate::info::NodeState;
use crate::net::advertised_addresses;
use crate::notify::Notifier;
use crate::presence::Presence;
use crate::relay::PublishedPlans;
use crate::serve::http::{self, HttpServer};
use crate::serve::rtsp::{self, RtspServer};
use crate::source::{CaptureSettings, SourceSpec};

/// How often the kernel is asked whether the clock is synchronised (NTP
/// often arrives a minute or two after a Pi boots).
const CLOCK_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Picture settings of a test camera added over the API without them, on a
/// node with no camera of its own to take them from.
const DEFAULT_CAPTURE: CaptureSettings = CaptureSettings {
    width: 1280,
    height: 720,
    fps: 30,
    quality: 80,
    codec: shared::frame::Codec::Mjpeg,
    h264: crate::source::H264Settings::DEFAULT,
};

/// Runs the node until `shutdown` is cancelled. Errors only when it cannot
/// start (a port in use, a bad CA file).
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> Result<()> {
    let config = Arc::new(config);
    let addresses = advertised_addresses(&config);
    let host = addresses[0].clone();
    let mut listeners = Vec::with_capacity(config.cameras.len());
    for cam in &config.cameras {
        let what = format!("camera {}", cam.id);
        listeners.push(listen(config.bind, cam.tcp_port, &what, "tcp").await?);
    }
    let rtsp_listener = listen(config.bind, config.rtsp_port, "RTSP", "rtsp").await?;
    let http_listener = listen(config.bind, config.http_port, "HTTP", "http").await?;
    let rtsp_base = format!(
        "rtsp://{}",
        host_port(&host, tcp::local_port(&rtsp_listener)?)
    );
    let tls = match &config.tls {
        Some((cert, key)) => {
            Some(shared::tls::acceptor(cert, key).context("HTTP: --tls-cert/--tls-key")?)
        }
        None => None,
    };
    let http_base = format!(
        "{}://{}",
        if tls.is_some() { "https" } else { "http" },
        host_port(&host, tcp::local_port(&http_listener)?)
    );
    tracing::info!("RTSP on {rtsp_base}/<camera>, web page and API on {http_base}/");
    warn_if_exposed(&config);
    let info = node_info(&config, addresses).await;
    tracing::info!(node = %config.node_id, "advertising {}", info.addresses.join(", "));
    let info = Arc::new(watch::Sender::new(info));
    let (store, saved) = open_store(&config)?;
    let servers = TaskTracker::new();
    let servers_stop = CancellationToken::new();
    let supervisors = TaskTracker::new();
    let cameras_stop = CancellationToken::new();
    let rtsp = Arc::new(RtspServer::new(
        config.node_id.clone(),
        config.max_viewers,
        config.users.clone(),
        config.rtsp_session_timeout,
    ));
    let env = Env {
        node_id: config.node_id.clone(),
        bind: config.bind,
        host: host.clone(),
        rtsp_base,
        http_base,
        base_tcp_port: config.cameras.first().map_or(0, |c| c.tcp_port),
        max_viewers: config.max_viewers,
        watchdog: config.watchdog,
        defaults: config
            .cameras
            .first()
            .map_or(DEFAULT_CAPTURE, |c| c.capture),
        rtsp: Arc::clone(&rtsp),
        servers: servers.clone(),
        servers_stop: servers_stop.clone(),
        supervisors: supervisors.clone(),
        cameras_stop: cameras_stop.clone(),
        allow_anything: config.api_allow_commands,
    };
    let cameras = Cameras::new(env, Arc::clone(&info), store);
    start_config_cameras(&cameras, &config, listeners, &saved)?;
    cameras.restore(saved).await;
    if let Some(path) = cameras.state_file() {
        tracing::info!("cameras added over the API are kept in {}", path.display());
    }
    let state = Arc::new(NodeState::new(
        Arc::clone(&info),
        Arc::clone(&cameras),
        config.watchdog,
    ));
    let task = rtsp::run(
        rtsp_listener,
        Arc::clone(&rtsp),
        servers_stop.clone(),
        servers.clone(),
    );
    servers.spawn(task.instrument(tracing::info_span!("rtsp")));
    let relay_plans = Arc::new(PublishedPlans::default());
    let web = HttpServer {
        node: Arc::clone(&state),
        relay_plans: Arc::clone(&relay_plans),
        users: config.users.clone(),
        api_token: config.api_token.clone(),
        max_viewers: config.max_viewers,
        tls: tls.is_some(),
        throttle: Default::default(),
        closing: servers_stop.clone(),
    };
    let task = http::run(http_listener, tls, Arc::new(web));
    servers.spawn(task.instrument(tracing::info_span!("http")));
    let clock = Arc::clone(&state);
    let stop = servers_stop.clone();
    servers.spawn(async move { clock.follow_clock(CLOCK_CHECK_EVERY, stop).await });
    servers.spawn(Arc::clone(&cameras).follow(servers_stop.clone()));
    let mqtt_connected = Arc::new(AtomicBool::new(false));
    let notifier = Notifier::from_env();
    let notify_stop = CancellationToken::new();
    let notify_task = notifier.run(
        Arc::clone(&cameras),
        Arc::clone(&mqtt_connected),
        config.watchdog,
        notify_stop.clone(),
    );
    let notify_task = tokio::spawn(notify_task.instrument(tracing::info_span!("systemd")));
    let mqtt_stop = CancellationToken::new();
    let presence = Presence {
        config: Arc::clone(&config),
        info: state.watch_info(),
        cameras: Arc::clone(&cameras),
        connected: mqtt_connected,
        relay_plans,
        machine: Arc::clone(&state.machine),
    };
    let mut presence = tokio::spawn(
        presence
            .run(mqtt_stop.clone())
            .instrument(tracing::info_span!("mqtt")),
    );

    let early = tokio::select! {
        _ = shutdown.cancelled() => None,
        ended = &mut presence => Some(ended),
    };
    notify_stop.cancel();
    let _ = notify_task.await;
    tracing::info!("shutdown 1/3: closing listeners and viewer connections");
    servers_stop.cancel();
    servers.close();
    servers.wait().await;
    tracing::info!("shutdown 2/3: stopping cameras");
    cameras_stop.cancel();
    supervisors.close();
    supervisors.wait().await;
    tracing::info!("shutdown 3/3: publishing offline on MQTT");
    mqtt_stop.cancel();
    let ended = match early {
        Some(ended) => ended,
        None => presence.await,
    };
    ended.context("MQTT task panicked")?.context("MQTT")?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Warns when anyone who reaches the node may watch or change its cameras.
fn warn_if_exposed(config: &NodeConfig) {
    if config.users.is_open() && !config.bind.is_loopback() {
        tracing::warn!(
            "HTTP and RTSP are open to anyone who can reach {}: add [[user]] entries to the config file to require a password",
            config.bind
        );
    }
    if config.api_token.is_none() && !config.bind.is_loopback() {
        let guard = if config.users.is_open() {
            "anyone who can reach the node can add, change and delete cameras"
        } else {
            "only the [[user]] passwords guard adding, changing and deleting cameras"
        };
        tracing::warn!(
            "the camera API's write calls have no token and the node listens on {}: {guard}; set api_token (or --api-token)",
            config.bind
        );
    }
}

/// The config file's cameras on their listeners, each with the controls
/// the state file kept for it (its file's remembered beside).
fn start_config_cameras(
    cameras: &Arc<Cameras>,
    config: &NodeConfig,
    listeners: Vec<TcpListener>,
    saved: &Saved,
) -> Result<()> {
    for (cam, listener) in config.cameras.iter().zip(listeners) {
        let entry = cameras.start(
            saved.with_controls(cam.clone()),
            Origin::Config,
            listener,
            true,
        )?;
        entry.set_file_controls(cam.controls.clone());
    }
    Ok(())
}

/// The node's NodeInfo at start, before its cameras are added: with the
/// Pi's cameras when one of the node's is `rpicam`.
async fn node_info(config: &NodeConfig, addresses: Vec<String>) -> NodeInfo {
    let rpicam = config
        .cameras
        .iter()
        .any(|c| c.source == SourceSpec::Rpicam);
    let pi_cameras = match crate::source::rpicam_program().filter(|_| rpicam) {
        Some(program) => crate::source::rpicam::list_cameras(&program).await,
        None => Vec::new(),
    };
    NodeInfo {
        v: PAYLOAD_VERSION,
        node_id: config.node_id.clone(),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").into(),
        addresses,
        started_at: Utc::now(),
        cameras: Vec::new(),
        clock_synchronized: crate::clock::synchronized(),
        pi_cameras,
    }
}

/// The state file (when there is a state directory) and what it holds.
fn open_store(config: &NodeConfig) -> Result<(Option<Store>, Saved)> {
    let store = match &config.state_dir {
        Some(dir) => Some(Store::open(dir)?),
        None => None,
    };
    let saved = match &store {
        Some(store) => store.load()?,
        None => Saved::default(),
    };
    Ok((store, saved))
}

/// A listener on `bind:port`, or an error that names what it was for
/// (`camera cam0`, `RTSP`) and the flag that moves it.
async fn listen(bind: IpAddr, port: u16, what: &str, flag: &str) -> Result<TcpListener> {
    TcpListener::bind((bind, port)).await.with_context(|| {
        format!(
            "{what}: cannot listen on TCP {} (set another port with --{flag}-port)",
            host_port(&bind.to_string(), port)
        )
    })
}
