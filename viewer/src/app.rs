//! The viewer's life: wires the rooms together (MQTT control loop, camera
//! supervisor, live hubs, dashboard, display) and owns the shutdown order:
//! segments closed, sensor rows flushed, `idle` and `offline` published.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use shared::messages::OFFLINE;
use shared::mqtt::{self, Will};
use shared::topics::{Topics, REC_COMMAND};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::ViewerConfig;
use crate::control::Control;
use crate::dashboard::metrics::Metrics;
use crate::dashboard::{self, Dashboard, Feed};
use crate::discovery::Discovery;
use crate::display;
use crate::homeassistant::HomeAssistant;
use crate::link::live::Live;
use crate::link::supervisor::{Supervisor, Wiring};
use crate::record::desired::DesiredState;
use crate::record::recorder::Events;
use crate::record::retention::RetentionRunner;
use crate::record::sensors::SensorLog;
use crate::record::session::Recording;
use crate::relay::{advertised_host, Relays};

/// How long the last MQTT messages, and the dashboard's last requests, get
/// to finish.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

pub async fn run(config: ViewerConfig, shutdown: CancellationToken) -> Result<()> {
    let config = Arc::new(config);
    let topics = Topics::new(&config.topic_prefix);
    let will = Will {
        topic: topics.viewer_status(&config.viewer_id),
        payload: OFFLINE.into(),
    };
    let (client, driver) = mqtt::connect(&config.mqtt, Some(will))?;
    tracing::info!(broker = %config.mqtt.broker, viewer = %config.viewer_id, "connecting to MQTT broker");
    crate::node_http::trust(config.mqtt.ca_file.clone());
    let (session_tx, session_rx) = watch::channel(None);
    let (events, events_rx) = Events::channel();
    // Ends every live reader (dashboard streams) before the cameras stop.
    let closing = CancellationToken::new();
    let live = Arc::new(Live::new(closing.clone()));
    let feed = Arc::new(Feed::default());
    let metrics = Arc::new(Metrics::new(
        config.recordings.clone(),
        driver.connected_flag(),
    ));
    let tasks = TaskTracker::new();
    start_dashboard(
        &config,
        &tasks,
        Dashboard::new(&config, &feed, &metrics, &live, &client, &closing),
    )
    .await?;
    let ui = config
        .display
        .map(|layout| display::start(Arc::clone(&live), layout));
    let mut cameras = Supervisor::new(Wiring {
        session: session_rx,
        segment: config.segment,
        events,
        counters: Arc::clone(&metrics.counters),
        live: Arc::clone(&live),
    });
    cameras.viewer_id = config.viewer_id.clone();
    if let Some(bind) = config.relay {
        let b = &config.mqtt.broker;
        let host = advertised_host(bind, &b.host, b.port);
        tracing::info!("relaying: passing cameras on from {bind} as {host}, as their nodes plan");
        cameras.relays = Some(Arc::new(Relays::new(bind, host)));
    }
    let mut control = Control {
        home: home_assistant(&config, &topics),
        discovery: Discovery::new(topics.clone()),
        retention: retention(&config, &metrics),
        sensors: SensorLog::new(&config.recordings),
        rec: Recording::new(
            &config.recordings,
            config
                .resume
                .then(|| DesiredState::new(&config.recordings, &config.viewer_id)),
        ),
        config: Arc::clone(&config),
        topics,
        client,
        driver,
        cameras,
        feed,
        metrics,
        live,
        session: session_tx,
        events: events_rx,
        error: None,
        announced: None,
    };
    if !config.record {
        tracing::info!(
            "not recording (--no-record): {REC_COMMAND} and sensor topics are not followed"
        );
    }
    if let Some(session) = control.rec.resume() {
        control.open(session);
    }
    control.run(&shutdown).await;

    closing.cancel();
    tracing::info!("shutdown 1/3: closing open segments");
    control.cameras.shutdown().await;
    if let Some(ui) = ui {
        ui.stop();
    }
    tracing::info!("shutdown 2/3: flushing sensor rows");
    control.sensors.flush();
    tracing::info!("shutdown 3/3: publishing idle and offline");
    control.say_goodbye(CLOSE_LIMIT).await;
    tasks.close();
    if tokio::time::timeout(CLOSE_LIMIT, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("the dashboard did not finish its requests in time; stopping anyway");
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Serves the dashboard, when there is one, as a task of `tasks` that ends
/// with `dashboard.closing`.
async fn start_dashboard(
    config: &ViewerConfig,
    tasks: &TaskTracker,
    dashboard: Dashboard,
) -> Result<()> {
    let Some(addr) = config.dashboard else {
        return Ok(());
    };
    let tls = match &config.tls {
        Some((cert, key)) => {
            Some(shared::tls::acceptor(cert, key).context("dashboard: --tls-cert/--tls-key")?)
        }
        None => None,
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            let local = listener.local_addr().unwrap_or(addr);
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!("dashboard on {scheme}://{local}/");
            dashboard::warn_if_exposed(local, config);
            let span = tracing::info_span!("dashboard", %local);
            tasks.spawn(dashboard::run(listener, tls, Arc::new(dashboard)).instrument(span));
            Ok(())
        }
        Err(e) if config.dashboard_explicit => {
            anyhow::bail!("dashboard: cannot listen on {addr}: {e}");
        }
        Err(e) => {
            tracing::warn!(
                "no dashboard: cannot listen on {addr}: {e} (set --dashboard ADDR or off)"
            );
            Ok(())
        }
    }
}

fn home_assistant(config: &ViewerConfig, topics: &Topics) -> HomeAssistant {
    if let Some(prefix) = &config.homeassistant {
        tracing::info!(
            "Home Assistant: discovery under {prefix}/, a snapshot of each camera every {} s",
            config.snapshot_every.as_secs()
        );
    }
    HomeAssistant::new(
        config.homeassistant.clone(),
        &config.viewer_id,
        topics.clone(),
    )
}

fn retention(config: &ViewerConfig, metrics: &Metrics) -> RetentionRunner {
    if !config.retention.is_off() {
        tracing::info!(
            "retention: {} in {}",
            config.retention.describe(),
            config.recordings.display()
        );
    }
    RetentionRunner::new(&config.retention, &config.recordings, &metrics.freed)
}
