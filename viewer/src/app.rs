//! The viewer's MQTT side and its life: discovery, the record command,
//! sensor rows, the retained state; shutdown closes segments, flushes the
//! CSV, publishes `idle` and `offline`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{SecondsFormat, Utc};
use rumqttc::{AsyncClient, Publish, QoS, SubscribeFilter};
use shared::messages::{RecCommand, RecordingState, RetentionFigures, OFFLINE, ONLINE};
use shared::mqtt::{self, MqttEvent, Will};
use shared::topics::{Topics, GETIP_REQUEST, GETIP_RESPONSE, REC_COMMAND};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::camera::Session;
use crate::config::ViewerConfig;
use crate::dashboard::{self, Dashboard, Feed};
use crate::discovery::Discovery;
use crate::homeassistant::HomeAssistant;
use crate::metrics::Metrics;
use crate::record::desired::{DesiredState, Wanted};
use crate::relay::{advertised_host, Relays};
use crate::retention::{RetentionRunner, RETENTION_EVERY};
use crate::screens::Screens;
use crate::sensors::{topic_matches, SensorLog};
use crate::supervisor::Supervisor;

/// How often discovery requests go out (besides once per connect).
const GETIP_EVERY: Duration = Duration::from_secs(30);
/// How often the state (with per-camera figures) is republished.
const STATE_EVERY: Duration = Duration::from_secs(10);
/// Per-camera figures go to the log every this many state publications (a minute).
const LOG_FIGURES_EVERY: u32 = 6;
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

struct Recording {
    session: Option<(Session, chrono::DateTime<Utc>)>,
    note: Option<String>,
    /// What was asked for, on disk: a restarted viewer resumes it.
    desired: Option<DesiredState>,
    /// The session was resumed after a restart (said when it stops).
    resumed: bool,
}

pub async fn run(config: ViewerConfig, shutdown: CancellationToken) -> Result<()> {
    let topics = Topics::new(&config.topic_prefix);
    let status_topic = topics.viewer_status(&config.viewer_id);
    let state_topic = topics.viewer_recording(&config.viewer_id);
    let will = Will {
        topic: status_topic.clone(),
        payload: OFFLINE.into(),
    };
    let (client, mut driver) = mqtt::connect(&config.mqtt, Some(will))?;
    tracing::info!(broker = %config.mqtt.broker, viewer = %config.viewer_id, "connecting to MQTT broker");
    crate::node_http::trust(config.mqtt.ca_file.clone());
    let (session_tx, session_rx) = watch::channel(None);
    let errors = Arc::new(Mutex::new(None));
    let wants_frames =
        config.display.is_some() || config.dashboard.is_some() || config.homeassistant.is_some();
    let screens = wants_frames.then(|| Arc::new(Screens::default()));
    let feed = Arc::new(Feed::default());
    let metrics = Arc::new(Metrics::new(
        config.recordings.clone(),
        driver.connected_flag(),
    ));
    let dashboard_stop = CancellationToken::new();
    if let (Some(addr), Some(screens)) = (config.dashboard, &screens) {
        let dashboard = Dashboard {
            feed: Arc::clone(&feed),
            metrics: Arc::clone(&metrics),
            screens: Arc::clone(screens),
            client: client.clone(),
            recordings: config.recordings.clone(),
            node_token: config.node_api_token.clone(),
            segments: Arc::default(),
            exports: Arc::default(),
            access: Arc::new(crate::dashboard::login::Access::new(
                config.users.clone(),
                config.tls.is_some(),
            )),
            closing: dashboard_stop.clone(),
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
                warn_if_exposed(local, &config);
                let task = dashboard::run(listener, tls, Arc::new(dashboard));
                tokio::spawn(task);
            }
            Err(e) if config.dashboard_explicit => {
                anyhow::bail!("dashboard: cannot listen on {addr}: {e}");
            }
            Err(e) => tracing::warn!(
                "no dashboard: cannot listen on {addr}: {e} (set --dashboard ADDR or off)"
            ),
        }
    }
    let ui = config
        .display
        .zip(screens.clone())
        .map(|(layout, screens)| start_ui(screens, layout));
    let snapshots_from = screens.clone();
    let mut cameras = Supervisor::new(
        session_rx,
        config.segment,
        Arc::clone(&errors),
        screens,
        Arc::clone(&metrics),
    );
    cameras.viewer_id = config.viewer_id.clone();
    if !config.record {
        tracing::info!(
            "not recording (--no-record): {REC_COMMAND} and sensor topics are not followed"
        );
    }
    let relay_topic = topics.viewer_relay(&config.viewer_id);
    if let Some(bind) = config.relay {
        let b = &config.mqtt.broker;
        let host = advertised_host(bind, &b.host, b.port);
        tracing::info!("relaying: passing cameras on from {bind} as {host}, as their nodes plan");
        cameras.relays = Some(Arc::new(Relays::new(bind, host)));
    }
    // The relay announcement last published (republished when it changes).
    let mut announced: Option<String> = None;
    let mut discovery = Discovery::new(topics.clone());
    let mut home = HomeAssistant::new(
        config.homeassistant.clone(),
        &config.viewer_id,
        topics.clone(),
    );
    if let Some(prefix) = &config.homeassistant {
        tracing::info!(
            "Home Assistant: discovery under {prefix}/, a snapshot of each camera every {} s",
            config.snapshot_every.as_secs()
        );
    }
    let mut snapshot_tick = tokio::time::interval(config.snapshot_every);
    let mut sensors = SensorLog::new(&config.recordings);
    let mut rec = Recording {
        session: None,
        note: None,
        desired: config
            .resume
            .then(|| DesiredState::new(&config.recordings, &config.viewer_id)),
        resumed: false,
    };
    if let Some(wanted) = rec.desired.as_ref().and_then(DesiredState::load) {
        tracing::info!(
            "resuming session {} after a restart (recording since {})",
            wanted.session,
            wanted.since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let session = open_session(&config.recordings, &wanted.session, &mut sensors);
        session_tx.send_replace(Some(session.clone()));
        rec.session = Some((session, wanted.since));
        rec.note = Some(format!(
            "resumed session {} after a restart",
            wanted.session
        ));
        rec.resumed = true;
    }
    if !config.retention.is_off() {
        tracing::info!(
            "retention: {} in {}",
            config.retention.describe(),
            config.recordings.display()
        );
    }
    let mut retention = RetentionRunner::new(&config.retention, &config.recordings, &metrics.freed);
    let mut retention_tick = tokio::time::interval(RETENTION_EVERY);
    let mut segments_seen = 0;
    let mut getip = tokio::time::interval(GETIP_EVERY);
    let mut state_tick = tokio::time::interval(STATE_EVERY);
    let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
    let mut published_cameras = 0;
    let mut ticks = 0u32;
    let mut published_error: Option<String> = None;
    let publish_state = |client: &AsyncClient, rec: &Recording, cameras: &mut Supervisor| {
        metrics
            .wanted
            .store(rec.session.is_some(), std::sync::atomic::Ordering::Relaxed);
        let retention = (!config.retention.is_off()).then(|| RetentionFigures {
            budget: config.retention.describe(),
            deleted_segments: metrics
                .freed
                .segments
                .load(std::sync::atomic::Ordering::Relaxed),
            freed_bytes: metrics
                .freed
                .bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        });
        let state = state_of(rec, cameras, &errors, retention);
        *feed.state.lock().expect("feed") = Some(state.clone());
        try_publish(
            client,
            &state_topic,
            true,
            serde_json::to_string(&state).unwrap_or_default(),
        );
        state.cameras
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = driver.next() => match event {
                None => {
                    tracing::error!("the MQTT event loop stopped");
                    break;
                }
                Some(MqttEvent::Connected) => {
                    // One SUBSCRIBE for everything, so one SUBACK says the
                    // viewer hears commands; only then is it `online`.
                    // The session is persistent: QoS 1 commands sent while
                    // the viewer is away wait for it at the broker. Sensor
                    // rows are QoS 0 so none are kept: a row delivered
                    // late would carry the wrong received_at.
                    let mut filters = vec![topics.all_node_info(), topics.all_node_status()];
                    if config.relay.is_some() {
                        filters.push(topics.all_relay_plans());
                        announced = None;
                    }
                    let mut fixed = vec![GETIP_RESPONSE.to_owned()];
                    fixed.extend(home.subscriptions());
                    if config.record {
                        fixed.push(REC_COMMAND.to_owned());
                    }
                    let kept = filters.iter().chain(&fixed).map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    let sensor_filters = if config.record { &config.sensor_topics[..] } else { &[] };
                    let sensors_live = sensor_filters.iter().map(|f| SubscribeFilter::new(f.clone(), QoS::AtMostOnce));
                    let subscriptions = kept.chain(sensors_live);
                    if let Err(e) = client.try_subscribe_many(subscriptions) {
                        tracing::warn!("MQTT subscribe not queued: {e}");
                    }
                    published_cameras = publish_state(&client, &rec, &mut cameras);
                }
                Some(MqttEvent::Subscribed) => {
                    try_publish(&client, &status_topic, true, ONLINE.into());
                    home.sync(&client, &feed.infos.lock().expect("feed"));
                    getip.reset_immediately();
                    announce(&client, &relay_topic, &cameras, &rec, &mut announced);
                }
                Some(MqttEvent::Message(p)) => {
                    if home.on_message(&client, &p.topic, &p.payload) {
                        continue;
                    }
                    if p.topic == REC_COMMAND {
                        on_record_command(&p, &mut rec, &session_tx, &mut sensors, &config.recordings);
                        published_cameras = publish_state(&client, &rec, &mut cameras);
                    } else if config.sensor_topics.iter().any(|f| topic_matches(f, &p.topic)) {
                        feed.sensor(&p.topic, &p.payload);
                        if let Err(e) = sensors.record(Utc::now(), &p.topic, &p.payload) {
                            tracing::error!(topic = %p.topic, "cannot write the sensor row: {e}");
                        }
                    } else if let Some((node, camera)) = topics.relay_plan_of(&p.topic).filter(|_| config.relay.is_some()) {
                        match crate::relay::parse_plan(&p.payload) {
                            Ok(plan) if plan.node_id == node && plan.camera == camera => cameras.plan(&plan),
                            Ok(_) => {
                                tracing::warn!(topic = %p.topic, "ignoring the relay plan: it names another camera; taking that camera from its node");
                                cameras.drop_plan(node, camera);
                            }
                            Err(why) => {
                                tracing::warn!(topic = %p.topic, "ignoring the relay plan: {why}; taking that camera from its node");
                                cameras.drop_plan(node, camera);
                            }
                        }
                    } else {
                        let events = discovery.on_message(&p.topic, &p.payload);
                        let changed = !events.is_empty();
                        for event in events {
                            feed.node_event(&event);
                            cameras.apply(event);
                        }
                        if changed {
                            home.sync(&client, &feed.infos.lock().expect("feed"));
                        }
                        announce(&client, &relay_topic, &cameras, &rec, &mut announced);
                    }
                }
            },
            _ = getip.tick() => try_publish(&client, GETIP_REQUEST, false, "?".into()),
            _ = snapshot_tick.tick(), if home.is_on() => {
                if let Some(screens) = &snapshots_from {
                    home.snapshots(&client, screens);
                }
            }
            _ = retention_tick.tick() => retention.run(false),
            _ = state_tick.tick() => {
                published_cameras = publish_state(&client, &rec, &mut cameras);
                announce(&client, &relay_topic, &cameras, &rec, &mut announced);
                if let Some(relays) = &cameras.relays {
                    let stats = relays.figures(&config.viewer_id);
                    let topic = topics.viewer_relay_stats(&config.viewer_id);
                    try_publish(&client, &topic, false, serde_json::to_string(&stats).unwrap_or_default());
                }
                ticks += 1;
                if ticks % LOG_FIGURES_EVERY == 0 {
                    cameras.log_figures();
                }
            }
            _ = flush_tick.tick() => {
                sensors.flush();
                // A segment closed: the budget may be exceeded now.
                let segments = metrics.segments_written();
                if segments != segments_seen {
                    segments_seen = segments;
                    retention.run(false);
                }
                // Cameras join a session with their next frame, and write
                // errors come and go: say so soon.
                let error = errors.lock().expect("error slot").clone();
                if cameras.recording() != published_cameras || error != published_error {
                    if error.is_some() && error != published_error {
                        retention.run(true); // a full disk: make room now
                    }
                    published_error = error;
                    published_cameras = publish_state(&client, &rec, &mut cameras);
                }
            }
        }
    }
    dashboard_stop.cancel();
    tracing::info!("shutdown 1/3: closing open segments");
    cameras.shutdown().await;
    if let Some(ui) = ui {
        ui.stop();
    }
    tracing::info!("shutdown 2/3: flushing sensor rows");
    sensors.flush();
    tracing::info!("shutdown 3/3: publishing idle and offline");
    let idle = RecordingState {
        state: "idle".into(),
        session: None,
        since: None,
        cameras: 0,
        error: None,
        note: Some("viewer stopped".into()),
        links: vec![],
        retention: None,
    };
    try_publish(
        &client,
        &state_topic,
        true,
        serde_json::to_string(&idle).unwrap_or_default(),
    );
    if config.relay.is_some() {
        let left =
            serde_json::to_string(&crate::relay::left(&config.viewer_id)).unwrap_or_default();
        try_publish(&client, &relay_topic, true, left);
    }
    try_publish(&client, &status_topic, true, OFFLINE.into());
    let _ = client.try_disconnect();
    driver.close(CLOSE_LIMIT).await;
    tracing::info!("shutdown complete");
    Ok(())
}

fn on_record_command(
    p: &Publish,
    rec: &mut Recording,
    session_tx: &watch::Sender<Option<Session>>,
    sensors: &mut SensorLog,
    recordings: &std::path::Path,
) {
    let text = String::from_utf8_lossy(&p.payload);
    if p.retain {
        tracing::info!("ignoring a retained {REC_COMMAND} {text:?}: only a live command starts or stops recording");
        return;
    }
    match (RecCommand::parse(&p.payload), &rec.session) {
        (None, _) => {
            tracing::warn!(
                topic = REC_COMMAND,
                "ignoring {text:?}: the command is start or stop"
            );
            rec.note = Some(format!("ignored {text:?}: not start or stop"));
        }
        (Some(RecCommand::Start), Some((session, _))) => {
            tracing::info!("start: already recording session {}", session.name);
            rec.note = Some(format!("start ignored: already recording {}", session.name));
        }
        (Some(RecCommand::Stop), None) => {
            tracing::info!("stop: not recording");
            rec.note = Some("stop ignored: not recording".into());
        }
        (Some(RecCommand::Start), None) => {
            let now = Utc::now();
            let name = now.format("%Y%m%dT%H%M%SZ").to_string();
            if let Some(desired) = &rec.desired {
                desired.save(Some(&Wanted {
                    session: name.clone(),
                    since: now,
                }));
            }
            let session = open_session(recordings, &name, sensors);
            session_tx.send_replace(Some(session.clone()));
            rec.session = Some((session, now));
            rec.note = None;
            rec.resumed = false;
        }
        (Some(RecCommand::Stop), Some((session, _))) => {
            tracing::info!("stopping session {}", session.name);
            if let Some(desired) = &rec.desired {
                desired.save(None);
            }
            session_tx.send_replace(None);
            sensors.set_session(None);
            rec.note = rec
                .resumed
                .then(|| format!("stopped session {} (resumed after a restart)", session.name));
            rec.session = None;
            rec.resumed = false;
        }
    }
}

/// The folder of session `name`, made if need be; sensor rows go there.
fn open_session(recordings: &std::path::Path, name: &str, sensors: &mut SensorLog) -> Session {
    let session = Session {
        dir: recordings.join(name),
        name: name.to_owned(),
    };
    if let Err(e) = std::fs::create_dir_all(&session.dir) {
        tracing::error!("cannot create {}: {e}", session.dir.display());
    }
    tracing::info!(
        "recording session {} into {}",
        session.name,
        session.dir.display()
    );
    sensors.set_session(Some(&session.dir));
    session
}

fn state_of(
    rec: &Recording,
    cameras: &mut Supervisor,
    errors: &Mutex<Option<String>>,
    retention: Option<RetentionFigures>,
) -> RecordingState {
    let (state, session, since) = match &rec.session {
        Some((s, at)) => (
            "recording",
            Some(s.name.clone()),
            Some(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ),
        None => ("idle", None, None),
    };
    RecordingState {
        state: state.into(),
        session,
        since,
        // Idle means none, even while the last segments are being closed.
        cameras: if rec.session.is_some() {
            cameras.recording()
        } else {
            0
        },
        error: errors.lock().expect("error slot").clone(),
        note: rec.note.clone(),
        links: cameras.figures(),
        retention,
    }
}

/// Publishes this viewer's relay announcement (retained) when it changed.
fn announce(
    client: &AsyncClient,
    topic: &str,
    cameras: &Supervisor,
    rec: &Recording,
    announced: &mut Option<String>,
) {
    let Some(relays) = &cameras.relays else {
        return;
    };
    let announcement =
        relays.announcement(&cameras.viewer_id, rec.session.is_some(), cameras.degraded);
    let json = serde_json::to_string(&announcement).unwrap_or_default();
    if announced.as_deref() != Some(json.as_str()) {
        try_publish(client, topic, true, json.clone());
        *announced = Some(json);
    }
}

fn try_publish(client: &AsyncClient, topic: &str, retain: bool, payload: String) {
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
        tracing::warn!(topic, "MQTT publish not queued: {e}");
    }
}

/// The display thread, when there is one.
struct Ui {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ui {
    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(feature = "display")]
fn start_ui(screens: Arc<Screens>, layout: crate::config::Layout) -> Ui {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("display".into())
        .spawn(move || {
            // Without windows the viewer still records: say so, go on.
            if let Err(e) = crate::display::run(screens, layout, flag) {
                tracing::error!("display stopped: {e:#}; recording continues without it");
            }
        })
        .map_err(|e| tracing::error!("cannot start the display thread: {e}"))
        .ok();
    Ui { stop, thread }
}

#[cfg(not(feature = "display"))]
fn start_ui(_screens: Arc<Screens>, _layout: crate::config::Layout) -> Ui {
    Ui {
        stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        thread: None,
    }
}

/// A dashboard reachable from the network without users (or with users
/// but passwords in the clear) is said so at start.
fn warn_if_exposed(local: std::net::SocketAddr, config: &ViewerConfig) {
    if local.ip().is_loopback() {
        return;
    }
    if config.users.is_empty() {
        tracing::warn!(
            "the dashboard on {local} has no users: anyone on the network can watch the cameras, start and stop \
             recordings and download them. Add [[user]] entries to the config file (viewer hash-password NAME) \
             or listen on 127.0.0.1 (docs/security.md)"
        );
    } else if config.tls.is_none() {
        tracing::warn!(
            "the dashboard on {local} takes passwords over plain HTTP: give it --tls-cert and --tls-key (docs/security.md)"
        );
    }
}
