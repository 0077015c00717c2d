//! The viewer's MQTT loop: one SUBSCRIBE per connection (then `online`),
//! each message routed to Home Assistant, the record command, the sensor
//! log, the relay plans or discovery; the recorders' events; the retained
//! state republished when it changes and every [`STATE_EVERY`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{AsyncClient, Publish, QoS, SubscribeFilter};
use shared::messages::{RetentionFigures, OFFLINE, ONLINE};
use shared::mqtt::{Driver, MqttEvent};
use shared::topics::{Topics, GETIP_REQUEST, GETIP_RESPONSE, REC_COMMAND};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::ViewerConfig;
use crate::dashboard::metrics::Metrics;
use crate::dashboard::Feed;
use crate::discovery::Discovery;
use crate::homeassistant::HomeAssistant;
use crate::link::live::Live;
use crate::link::supervisor::Supervisor;
use crate::record::recorder::RecordEvent;
use crate::record::retention::{RetentionRunner, RETENTION_EVERY};
use crate::record::sensors::{health_rows, topic_matches, SensorLog};
use crate::record::session::{self, Change, Recording, Session};
use crate::relay;

/// How often discovery requests go out (besides once per connect).
const GETIP_EVERY: Duration = Duration::from_secs(30);
/// How often the state (with per-camera figures) is republished.
const STATE_EVERY: Duration = Duration::from_secs(10);
/// Per-camera figures go to the log every this many state publications (a minute).
const LOG_FIGURES_EVERY: u32 = 6;
/// How often sensor rows are flushed to their CSV files.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Everything the MQTT loop acts on.
pub struct Control {
    pub config: Arc<ViewerConfig>,
    pub topics: Topics,
    pub client: AsyncClient,
    pub driver: Driver,
    pub cameras: Supervisor,
    pub sensors: SensorLog,
    pub feed: Arc<Feed>,
    pub metrics: Arc<Metrics>,
    pub live: Arc<Live>,
    pub session: watch::Sender<Option<Session>>,
    pub rec: Recording,
    pub events: mpsc::Receiver<RecordEvent>,
    pub discovery: Discovery,
    pub home: HomeAssistant,
    pub retention: RetentionRunner,
    /// The last write error, and the camera it is of.
    pub error: Option<(String, String)>,
    /// The relay announcement last published (republished when it changes).
    pub announced: Option<String>,
}

impl Control {
    /// Runs until `shutdown` or the end of the MQTT event loop.
    pub async fn run(&mut self, shutdown: &CancellationToken) {
        let mut getip = tokio::time::interval(GETIP_EVERY);
        let mut state_tick = tokio::time::interval(STATE_EVERY);
        let mut flush_tick = tokio::time::interval(FLUSH_EVERY);
        let mut snapshot_tick = tokio::time::interval(self.config.snapshot_every);
        let mut retention_tick = tokio::time::interval(RETENTION_EVERY);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = self.driver.next() => match event {
                    None => {
                        tracing::error!("the MQTT event loop stopped");
                        break;
                    }
                    Some(MqttEvent::Connected) => self.on_connected(),
                    Some(MqttEvent::Subscribed) => {
                        self.on_subscribed();
                        getip.reset_immediately();
                    }
                    Some(MqttEvent::Message(p)) => self.on_message(&p),
                },
                Some(event) = self.events.recv() => self.on_record_event(event),
                _ = getip.tick() => self.publish(GETIP_REQUEST, false, "?".into()),
                _ = snapshot_tick.tick(), if self.home.is_on() => {
                    self.home.snapshots(&self.client, &self.live);
                }
                _ = retention_tick.tick() => self.retention.run(false),
                _ = state_tick.tick() => {
                    self.publish_state();
                    self.announce();
                    self.publish_relay_figures();
                    ticks += 1;
                    if ticks % LOG_FIGURES_EVERY == 0 {
                        self.cameras.log_figures();
                    }
                }
                _ = flush_tick.tick() => self.sensors.flush(),
            }
        }
    }

    /// One SUBSCRIBE for everything, so one SUBACK says the viewer hears
    /// commands; only then is it `online`. The session is persistent: QoS 1
    /// commands sent while the viewer is away wait for it at the broker.
    /// Sensor rows are QoS 0 so none are kept: a row delivered late would
    /// carry the wrong received_at.
    fn on_connected(&mut self) {
        let topics = &self.topics;
        let config = &self.config;
        let mut filters = vec![
            topics.all_node_info(),
            topics.all_node_status(),
            topics.all_node_health(),
        ];
        if config.relay.is_some() {
            filters.push(topics.all_relay_plans());
            self.announced = None;
        }
        filters.push(GETIP_RESPONSE.to_owned());
        filters.extend(self.home.subscriptions());
        if config.record {
            filters.push(REC_COMMAND.to_owned());
        }
        let kept = filters
            .into_iter()
            .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
        let sensor_filters = if config.record {
            &config.sensor_topics[..]
        } else {
            &[]
        };
        let sensors_live = sensor_filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtMostOnce));
        if let Err(e) = self.client.try_subscribe_many(kept.chain(sensors_live)) {
            tracing::warn!("MQTT subscribe not queued: {e}");
        }
        self.publish_state();
    }

    fn on_subscribed(&mut self) {
        let topic = self.topics.viewer_status(&self.config.viewer_id);
        self.publish(&topic, true, ONLINE.into());
        self.home
            .sync(&self.client, &self.feed.infos.lock().expect("feed"));
        self.announce();
    }

    fn on_message(&mut self, p: &Publish) {
        if self.home.on_message(&self.client, &p.topic, &p.payload) {
            return;
        }
        if p.topic == REC_COMMAND {
            let change = self.rec.on_command(&p.payload, p.retain, Utc::now());
            self.apply(change);
            self.publish_state();
        } else if self
            .config
            .sensor_topics
            .iter()
            .any(|f| topic_matches(f, &p.topic))
        {
            self.feed.sensor(&p.topic, &p.payload);
            if let Err(e) = self.sensors.record(Utc::now(), &p.topic, &p.payload) {
                tracing::error!(topic = %p.topic, "cannot write the sensor row: {e}");
            }
        } else if let Some(node) = self.topics.node_id_of(&p.topic, "health") {
            self.on_health(node, p);
        } else if let Some((node, camera)) = self
            .topics
            .relay_plan_of(&p.topic)
            .filter(|_| self.config.relay.is_some())
        {
            self.on_relay_plan(&p.topic, (node, camera), &p.payload);
        } else {
            let events = self.discovery.on_message(&p.topic, &p.payload);
            let changed = !events.is_empty();
            for event in events {
                self.feed.node_event(&event);
                self.cameras.apply(event);
            }
            if changed {
                self.home
                    .sync(&self.client, &self.feed.infos.lock().expect("feed"));
            }
            self.announce();
        }
    }

    /// A node's health: kept for the dashboard's badge and, heard live (not
    /// a retained copy from before) during a session, written as the
    /// session's sensor rows.
    fn on_health(&mut self, node: &str, p: &Publish) {
        let health: shared::messages::NodeHealth = match serde_json::from_slice(&p.payload) {
            Ok(h) => h,
            Err(e) if !p.payload.is_empty() => {
                tracing::warn!(topic = %p.topic, "ignoring the node's health: {e}");
                return;
            }
            Err(_) => return,
        };
        if self.config.record && !p.retain && self.session.borrow().is_some() {
            let now = Utc::now();
            for (topic, value) in health_rows(node, &health) {
                if let Err(e) = self.sensors.record(now, &topic, value.as_bytes()) {
                    tracing::error!(%topic, "cannot write the health row: {e}");
                }
            }
        }
        let mut known = self.feed.health.lock().expect("feed");
        // Bounded like the nodes themselves: one entry per node heard.
        if known.len() < 1000 || known.contains_key(node) {
            known.insert(node.to_owned(), health);
        }
    }

    fn on_relay_plan(&mut self, topic: &str, (node, camera): (&str, &str), payload: &[u8]) {
        match relay::parse_plan(payload) {
            Ok(plan) if plan.node_id == node && plan.camera == camera => self.cameras.plan(&plan),
            Ok(_) => {
                tracing::warn!(%topic, "ignoring the relay plan: it names another camera; taking that camera from its node");
                self.cameras.drop_plan(node, camera);
            }
            Err(why) => {
                tracing::warn!(%topic, "ignoring the relay plan: {why}; taking that camera from its node");
                self.cameras.drop_plan(node, camera);
            }
        }
    }

    /// Opens or closes a session as the record command decided.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::None => {}
            Change::Start(session) => self.open(session),
            Change::Stop(_) => {
                self.session.send_replace(None);
                self.sensors.set_session(None);
            }
        }
    }

    /// The session's folder, made if need be; sensor rows and cameras go there.
    pub fn open(&mut self, session: Session) {
        if let Err(e) = std::fs::create_dir_all(&session.dir) {
            tracing::error!("cannot create {}: {e}", session.dir.display());
        }
        tracing::info!(
            "recording session {} into {}",
            session.name,
            session.dir.display()
        );
        self.sensors.set_session(Some(&session.dir));
        self.session.send_replace(Some(session));
    }

    /// What a writer said: cameras join and leave a session with their
    /// frames, segments close, writes fail (a full disk: make room now).
    fn on_record_event(&mut self, event: RecordEvent) {
        match event {
            RecordEvent::Started { .. } | RecordEvent::Stopped { .. } => {}
            RecordEvent::SegmentClosed { camera } => {
                // The budget may be exceeded now.
                self.retention.run(false);
                if self.error.as_ref().is_none_or(|(of, _)| *of != camera) {
                    return;
                }
                self.error = None;
            }
            RecordEvent::Failed { camera, message } => {
                self.error = Some((camera, message));
                self.retention.run(true);
            }
        }
        self.publish_state();
    }

    /// The retained state, also kept for the dashboard.
    pub fn publish_state(&mut self) {
        let config = &self.config;
        self.metrics
            .wanted
            .store(self.rec.is_on(), Ordering::Relaxed);
        let freed = &self.metrics.freed;
        let retention = (!config.retention.is_off()).then(|| RetentionFigures {
            budget: config.retention.describe(),
            deleted_segments: freed.segments.load(Ordering::Relaxed),
            freed_bytes: freed.bytes.load(Ordering::Relaxed),
        });
        let error = self.error.as_ref().map(|(_, m)| m.clone());
        let state = self.rec.state(
            self.cameras.recording(),
            error,
            self.cameras.figures(),
            retention,
        );
        let json = serde_json::to_string(&state).unwrap_or_default();
        *self.feed.state.lock().expect("feed") = Some(state);
        let topic = self.topics.viewer_recording(&config.viewer_id);
        self.publish(&topic, true, json);
    }

    /// Publishes this viewer's relay announcement (retained) when it changed.
    fn announce(&mut self) {
        let Some(relays) = &self.cameras.relays else {
            return;
        };
        let announcement = relays.announcement(
            &self.cameras.viewer_id,
            self.rec.is_on(),
            self.cameras.degraded,
        );
        let json = serde_json::to_string(&announcement).unwrap_or_default();
        if self.announced.as_deref() != Some(json.as_str()) {
            let topic = self.topics.viewer_relay(&self.config.viewer_id);
            self.publish(&topic, true, json.clone());
            self.announced = Some(json);
        }
    }

    fn publish_relay_figures(&self) {
        if let Some(relays) = &self.cameras.relays {
            let stats = relays.figures(&self.config.viewer_id);
            let topic = self.topics.viewer_relay_stats(&self.config.viewer_id);
            self.publish(
                &topic,
                false,
                serde_json::to_string(&stats).unwrap_or_default(),
            );
        }
    }

    /// The last words: `idle` on the state topic, `left` on the relay topic
    /// and `offline`, then the connection closed within `limit`.
    pub async fn say_goodbye(self, limit: Duration) {
        let config = &self.config;
        let idle = serde_json::to_string(&session::stopped()).unwrap_or_default();
        self.publish(&self.topics.viewer_recording(&config.viewer_id), true, idle);
        if config.relay.is_some() {
            let left = serde_json::to_string(&relay::left(&config.viewer_id)).unwrap_or_default();
            self.publish(&self.topics.viewer_relay(&config.viewer_id), true, left);
        }
        self.publish(
            &self.topics.viewer_status(&config.viewer_id),
            true,
            OFFLINE.into(),
        );
        let _ = self.client.try_disconnect();
        self.driver.close(limit).await;
    }

    fn publish(&self, topic: &str, retain: bool, payload: String) {
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            tracing::warn!(topic, "MQTT publish not queued: {e}");
        }
    }
}
