//! Wires a node together and owns its shutdown order: stop accepting and
//! close viewer connections, stop the cameras, publish `offline`.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use shared::messages::{CameraInfo, NodeInfo, PAYLOAD_VERSION};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use fanout::{tcp, Hub};

use crate::camera::Camera;
use crate::config::NodeConfig;
use crate::notify::Notifier;
use crate::presence::{advertised_addresses, host_port, Presence};
use crate::serve::http::{self, HttpServer};
use crate::serve::rtsp::{self, RtspCamera, RtspServer};
use crate::state::NodeState;

/// How often the kernel is asked whether the clock is synchronised (NTP
/// often arrives a minute or two after a Pi boots).
const CLOCK_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

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
    let http_base = format!(
        "http://{}",
        host_port(&host, tcp::local_port(&http_listener)?)
    );
    tracing::info!("RTSP on {rtsp_base}/<camera>, web page and API on {http_base}/");
    if config.users.is_open() && !config.bind.is_loopback() {
        tracing::warn!(
            "HTTP and RTSP are open to anyone who can reach {}: add [[user]] entries to the config file to require a password",
            config.bind
        );
    }
    let hubs: Vec<Arc<Hub>> = config.cameras.iter().map(|c| Hub::new(&c.id)).collect();
    let mut cameras_info = Vec::with_capacity(config.cameras.len());
    for (cam, listener) in config.cameras.iter().zip(&listeners) {
        let port = tcp::local_port(listener)?;
        tracing::info!(camera = %cam.id, "serving {} on TCP port {port} (source {})", cam.id, cam.source);
        cameras_info.push(CameraInfo {
            id: cam.id.clone(),
            width: cam.capture.width,
            height: cam.capture.height,
            fps: cam.capture.fps,
            codec: "mjpeg".into(),
            tcp: host_port(&host, port),
            rtsp: Some(format!("{rtsp_base}/{}", cam.id)),
            http: Some(format!("{http_base}/cameras/{}/stream.mjpg", cam.id)),
            enabled: true,
        });
    }
    let info = NodeInfo {
        v: PAYLOAD_VERSION,
        node_id: config.node_id.clone(),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").into(),
        addresses,
        started_at: Utc::now(),
        cameras: cameras_info,
        clock_synchronized: crate::clock::synchronized(),
    };
    tracing::info!(node = %config.node_id, "advertising {}", info.addresses.join(", "));
    let state = Arc::new(NodeState::new(info, hubs.clone(), config.watchdog));

    let servers = TaskTracker::new();
    let servers_stop = CancellationToken::new();
    for (listener, hub) in listeners.into_iter().zip(&hubs) {
        let task = tcp::run(
            listener,
            Arc::clone(hub),
            config.max_viewers,
            servers_stop.clone(),
            servers.clone(),
        );
        servers.spawn(task.instrument(tracing::info_span!("tcp", camera = %hub.camera_id())));
    }
    let rtsp = RtspServer::new(
        config.node_id.clone(),
        config
            .cameras
            .iter()
            .zip(&hubs)
            .map(|(cam, hub)| RtspCamera::new(Arc::clone(hub), cam.capture.fps))
            .collect(),
        config.max_viewers,
        config.users.clone(),
        config.rtsp_session_timeout,
    );
    let task = rtsp::run(
        rtsp_listener,
        Arc::new(rtsp),
        servers_stop.clone(),
        servers.clone(),
    );
    servers.spawn(task.instrument(tracing::info_span!("rtsp")));
    let web = HttpServer {
        node: Arc::clone(&state),
        users: config.users.clone(),
        max_viewers: config.max_viewers,
        closing: servers_stop.clone(),
    };
    let task = http::run(http_listener, Arc::new(web));
    servers.spawn(task.instrument(tracing::info_span!("http")));
    let clock = Arc::clone(&state);
    let stop = servers_stop.clone();
    servers.spawn(async move { clock.follow_clock(CLOCK_CHECK_EVERY, stop).await });
    let cameras = TaskTracker::new();
    let cameras_stop = CancellationToken::new();
    for (cam, hub) in config.cameras.iter().zip(&hubs) {
        let camera = Camera {
            config: cam.clone(),
            hub: Arc::clone(hub),
            watchdog: config.watchdog,
        };
        let span = tracing::info_span!("camera", camera = %cam.id);
        cameras.spawn(camera.run(cameras_stop.clone()).instrument(span));
    }
    let mqtt_connected = Arc::new(AtomicBool::new(false));
    let notifier = Notifier::from_env();
    let notify_stop = CancellationToken::new();
    let notify_task = notifier.run(
        hubs.clone(),
        Arc::clone(&mqtt_connected),
        config.watchdog,
        notify_stop.clone(),
    );
    let notify_task = tokio::spawn(notify_task.instrument(tracing::info_span!("systemd")));
    let mqtt_stop = CancellationToken::new();
    let presence = Presence {
        config: Arc::clone(&config),
        info: state.watch_info(),
        hubs,
        connected: mqtt_connected,
        relay_plans: Arc::clone(&state.relay_plans),
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
    cameras.close();
    cameras.wait().await;
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
