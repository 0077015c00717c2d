//! The node on MQTT: retained `online` (with an `offline` last will) and
//! NodeInfo, answers to `command/getIP`, stats and the CPU temperature
//! every `--stats-seconds` with the machine's health, and camera controls
//! asked on each camera's `set` topic. One task owns the event loop; on
//! every ConnAck it resubscribes and republishes the retained state.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use rumqttc::{AsyncClient, QoS, SubscribeFilter};
use shared::messages::{
    CameraState, CameraStats, NodeInfo, NodeStats, PushState, OFFLINE, ONLINE, PAYLOAD_VERSION,
};
use shared::mqtt::{self, MqttEvent, Will};
use shared::topics::{self, Topics};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cameras::Cameras;
use crate::config::NodeConfig;
use crate::health::Health;
use crate::relay::{Planner, PublishedPlans};

/// How long shutdown waits for `offline` to reach the broker.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);
/// How long the node's own test message may take to come back.
const ECHO_LIMIT: Duration = Duration::from_secs(5);

/// Whether the broker passes on what this node publishes. A broker whose
/// ACL refuses a publish drops it without a word (MQTT 3.1.1 has none), so
/// after each connection the node sends itself a message on its own
/// `echo` topic and warns when it does not come back.
#[derive(Debug)]
struct Echo {
    topic: String,
    /// The test message out, and until when it may come back.
    waiting: Option<(String, tokio::time::Instant)>,
}

impl Echo {
    fn new(topic: String) -> Self {
        Echo {
            topic,
            waiting: None,
        }
    }

    /// Sent once a connection's one SUBSCRIBE is acknowledged; a new
    /// connection forgets the last one's.
    fn send(&mut self, client: &AsyncClient) {
        let nonce = format!("{}", Utc::now().timestamp_micros());
        try_publish(client, &self.topic, false, nonce.clone());
        self.waiting = Some((nonce, tokio::time::Instant::now() + ECHO_LIMIT));
    }

    /// A message on the echo topic: whether it is ours back.
    fn heard(&mut self, payload: &[u8]) {
        if self
            .waiting
            .as_ref()
            .is_some_and(|(nonce, _)| nonce.as_bytes() == payload)
        {
            tracing::info!("the broker passes on this node's messages");
            self.waiting = None;
        }
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.waiting.as_ref().map(|(_, at)| *at)
    }
}

pub struct Presence {
    pub config: Arc<NodeConfig>,
    pub info: watch::Receiver<NodeInfo>,
    pub cameras: Arc<Cameras>,
    /// Mirrors the connection, for the systemd notifier.
    pub connected: Arc<AtomicBool>,
    /// Where the plans published are kept for the node's HTTP server.
    pub relay_plans: Arc<PublishedPlans>,
    /// Where the latest health sample is kept for `/metrics`.
    pub machine: Arc<crate::health::Latest>,
}

impl Presence {
    /// Runs until `cancel`, then publishes `offline` and disconnects.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        let c = &self.config;
        let topics = Topics::new(&c.topic_prefix);
        let status_topic = topics.node_status(&c.node_id);
        let will = Will {
            topic: status_topic.clone(),
            payload: OFFLINE.into(),
        };
        let (client, mut driver) = mqtt::connect(&c.mqtt, Some(will))?;
        tracing::info!(broker = %c.mqtt.broker, node = %c.node_id, "connecting to MQTT broker");
        let mut stats = StatsSampler::new(Arc::clone(&self.cameras));
        let mut camera_changes = self.cameras.watch();
        let mut states = StatePublisher::default();
        let mut ticker = tokio::time::interval(c.stats_interval);
        let mut health = Health::new(&c.health_root, c.state_dir.as_deref());
        let sets = topics.camera_sets(&c.node_id);
        let mut connected = false;
        let mut cpu_temp_missing_logged = false;
        let mut planner = (c.relay_max_member > 0)
            .then(|| Planner::new(&c.node_id, c.relay_max_member, c.relay_topology));
        let (relay_filter, status_filter) = (topics.all_viewer_relay(), topics.all_viewer_status());
        let mut echo = Echo::new(topics.node_echo(&c.node_id));
        let user = c
            .mqtt
            .broker
            .username
            .clone()
            .unwrap_or_else(|| "(none)".into());
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = driver.next() => match event {
                    None => {
                        tracing::error!("the MQTT event loop stopped");
                        break;
                    }
                    Some(MqttEvent::Connected) => {
                        connected = true;
                        echo.waiting = None;
                        // One SUBSCRIBE, so one SUBACK: `online` goes out once.
                        let mut filters = vec![echo.topic.clone(), topics::GETIP_REQUEST.to_owned(), sets.clone()];
                        if planner.is_some() {
                            filters.extend([relay_filter.clone(), status_filter.clone()]);
                        }
                        let filters = filters.into_iter().map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
                        if let Err(e) = client.try_subscribe_many(filters) {
                            tracing::warn!("MQTT subscribe not queued: {e}");
                        }
                    }
                    // Announced once the broker has the subscription, so an
                    // `online` node always hears discovery requests.
                    Some(MqttEvent::Subscribed) => {
                        try_publish(&client, &status_topic, true, ONLINE.into());
                        echo.send(&client);
                        self.publish_info(&client, &topics);
                        states.publish(&client, &topics, &c.node_id, &self.cameras, true);
                        // A broker restarted without persistence lost them.
                        for plan in planner.iter().flat_map(|p| p.plans()) {
                            publish_plan(&client, &topics, plan);
                        }
                        // Stats and temperature right away, then every interval.
                        ticker.reset_immediately();
                    }
                    Some(MqttEvent::Message(p)) if p.topic == echo.topic => echo.heard(&p.payload),
                    Some(MqttEvent::Message(p)) if p.topic == topics::GETIP_REQUEST => {
                        tracing::debug!("answering a discovery request");
                        try_publish(&client, topics::GETIP_RESPONSE, false, info_json(&self.info.borrow()));
                    }
                    Some(MqttEvent::Message(p)) if topics.camera_of_set(&c.node_id, &p.topic).is_some() => {
                        let camera = topics.camera_of_set(&c.node_id, &p.topic).expect("checked").to_owned();
                        let cameras = Arc::clone(&self.cameras);
                        // A change waits for the camera process to stop: not in this loop.
                        tokio::spawn(async move { cameras.set_from_mqtt(&camera, &p.payload).await });
                    }
                    Some(MqttEvent::Message(p)) if planner.is_some() => {
                        let planner = planner.as_mut().expect("checked");
                        if let Some(viewer) = topics.viewer_id_of(&p.topic, "relay") {
                            if let Err(why) = planner.announce(viewer, &p.payload) {
                                tracing::warn!(topic = %p.topic, "ignoring a relay announcement: {why}");
                            }
                        } else if let Some(viewer) = topics.viewer_id_of(&p.topic, "status") {
                            planner.status(viewer, &p.payload);
                        }
                        for plan in planner.replan(&self.info.borrow()) {
                            publish_plan(&client, &topics, &plan);
                        }
                        self.relay_plans.keep(planner);
                    }
                    Some(MqttEvent::Message(p)) => tracing::debug!(topic = %p.topic, "ignoring message"),
                },
                _ = sleep_until_or_never(echo.deadline()) => {
                    echo.waiting = None;
                    tracing::warn!(
                        "the broker did not pass on this node's own test message on {} within {} s: \
                         it drops what this node publishes, so viewers will not see it. Does the broker's ACL let \
                         user {user} write {}/node/{}/#? (node_id and the user must match; docs/security.md)",
                        echo.topic,
                        ECHO_LIMIT.as_secs(),
                        c.topic_prefix,
                        c.node_id
                    );
                }
                changed = self.info.changed() => {
                    if changed.is_ok() && connected {
                        self.publish_info(&client, &topics);
                        for plan in planner.as_mut().map(|p| p.replan(&self.info.borrow())).unwrap_or_default() {
                            publish_plan(&client, &topics, &plan);
                        }
                        if let Some(p) = &planner {
                            self.relay_plans.keep(p);
                        }
                    }
                }
                changed = camera_changes.changed() => {
                    if changed.is_ok() && connected {
                        states.publish(&client, &topics, &c.node_id, &self.cameras, false);
                    }
                }
                _ = ticker.tick() => {
                    let mut figures = stats.sample(&c.node_id);
                    figures.health = health.sample(&figures.cameras).await;
                    self.machine.lock().expect("health lock").clone_from(&figures.health);
                    if connected {
                        publish_figures(&client, &topics, c, &figures, &mut cpu_temp_missing_logged);
                    }
                }
            }
            // A failed poll means the connection is gone until the next ConnAck.
            connected &= driver.is_connected();
            self.connected.store(connected, Ordering::Relaxed);
        }
        tracing::info!("publishing offline and disconnecting from the broker");
        try_publish(&client, &status_topic, true, OFFLINE.into());
        let _ = client.try_disconnect();
        driver.close(CLOSE_LIMIT).await;
        Ok(())
    }

    fn publish_info(&self, client: &AsyncClient, topics: &Topics) {
        let json = info_json(&self.info.borrow());
        try_publish(client, &topics.node_info(&self.config.node_id), true, json);
    }
}

fn info_json(info: &NodeInfo) -> String {
    serde_json::to_string(info).unwrap_or_default()
}

/// Stats (with the machine's health), the retained health and the CPU
/// temperature sensor, every stats interval.
fn publish_figures(
    client: &AsyncClient,
    topics: &Topics,
    c: &NodeConfig,
    figures: &NodeStats,
    cpu_temp_missing_logged: &mut bool,
) {
    let json = serde_json::to_string(figures).unwrap_or_default();
    try_publish(client, &topics.node_stats(&c.node_id), false, json);
    if let Some(machine) = &figures.health {
        let json = serde_json::to_string(machine).unwrap_or_default();
        try_publish(client, &topics.node_health(&c.node_id), true, json);
    }
    let Some(path) = &c.cpu_temp_path else {
        return;
    };
    match read_cpu_temp(path) {
        Some(celsius) => try_publish(
            client,
            &topics::cpu_temp(&c.node_id),
            false,
            format!("{celsius:.1}"),
        ),
        None if !*cpu_temp_missing_logged => {
            *cpu_temp_missing_logged = true;
            tracing::info!(
                "no CPU temperature at {} (turn off with --no-cpu-temp)",
                path.display()
            );
        }
        None => {}
    }
}

fn try_publish(client: &AsyncClient, topic: &str, retain: bool, payload: String) {
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
        tracing::warn!(topic, "MQTT publish not queued: {e}");
    }
}

fn publish_plan(client: &AsyncClient, topics: &Topics, plan: &shared::relay::RelayPlan) {
    let json = serde_json::to_string(plan).unwrap_or_default();
    try_publish(
        client,
        &topics.relay_plan(&plan.node_id, &plan.camera),
        true,
        json,
    );
}

/// Sleeps until `at`; never returns without one.
async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Degrees Celsius from a thermal zone file (millidegrees as text).
pub fn read_cpu_temp(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim()
        .parse::<i64>()
        .ok()
        .map(|milli| milli as f64 / 1000.0)
}

/// Publishes each camera's retained state topic when it changed, and an
/// empty retained message for a camera that was removed.
#[derive(Default)]
struct StatePublisher {
    published: std::collections::BTreeMap<String, String>,
}

impl StatePublisher {
    fn publish(
        &mut self,
        client: &AsyncClient,
        topics: &Topics,
        node_id: &str,
        cameras: &Cameras,
        all: bool,
    ) {
        let mut now = std::collections::BTreeMap::new();
        for entry in cameras.list() {
            let view = entry.view();
            let state = CameraState {
                v: PAYLOAD_VERSION,
                node_id: node_id.to_owned(),
                camera: view.id.clone(),
                origin: view.origin,
                source: view.source,
                enabled: view.enabled,
                state: view.status.state,
                restarts: view.status.restarts,
                last_error: view.status.last_error,
                pushes: view
                    .pushes
                    .into_iter()
                    .map(|p| PushState {
                        id: p.id,
                        url: p.url,
                        state: p.state,
                        last_error: p.last_error,
                    })
                    .collect(),
                controls: view.controls,
                control_error: view.control_error,
            };
            now.insert(view.id, serde_json::to_string(&state).unwrap_or_default());
        }
        for (camera, json) in &now {
            if all || self.published.get(camera) != Some(json) {
                try_publish(
                    client,
                    &topics.camera_state(node_id, camera),
                    true,
                    json.clone(),
                );
            }
        }
        for camera in self.published.keys().filter(|c| !now.contains_key(*c)) {
            try_publish(
                client,
                &topics.camera_state(node_id, camera),
                true,
                String::new(),
            );
        }
        self.published = now;
    }
}

/// Turns the hubs' counters into per-interval figures.
struct StatsSampler {
    cameras: Arc<Cameras>,
    /// Frames counted per camera at the last sample.
    last: Option<(Instant, std::collections::HashMap<String, u64>)>,
}

impl StatsSampler {
    fn new(cameras: Arc<Cameras>) -> Self {
        StatsSampler {
            cameras,
            last: None,
        }
    }

    fn sample(&mut self, node_id: &str) -> NodeStats {
        let now = Instant::now();
        let hubs = self.cameras.hubs();
        let figures: Vec<_> = hubs.iter().map(|h| h.snapshot()).collect();
        let frames = hubs
            .iter()
            .zip(&figures)
            .map(|(h, f)| (h.camera_id().to_owned(), f.frames))
            .collect();
        let cameras = hubs
            .iter()
            .zip(&figures)
            .map(|(hub, f)| {
                let fps = match &self.last {
                    Some((at, before)) if now > *at => {
                        let before = before.get(hub.camera_id()).copied().unwrap_or(f.frames);
                        f.frames.saturating_sub(before) as f64
                            / now.duration_since(*at).as_secs_f64()
                    }
                    _ => 0.0,
                };
                let latency = hub.send_latency.take();
                CameraStats {
                    id: hub.camera_id().to_owned(),
                    fps: (fps * 10.0).round() / 10.0,
                    viewers: f.viewers,
                    frames: f.frames,
                    frames_dropped: f.dropped,
                    camera_restarts: f.restarts,
                    last_frame_age_s: f.last_frame_at.map(|t| t.elapsed().as_secs_f64()),
                    send_latency_p50_ms: latency.quantile_ms(0.5),
                    send_latency_p99_ms: latency.quantile_ms(0.99),
                }
            })
            .collect();
        self.last = Some((now, frames));
        NodeStats {
            v: PAYLOAD_VERSION,
            node_id: node_id.to_owned(),
            at: Utc::now(),
            cameras,
            health: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_temperature_is_read_in_celsius() {
        let dir = std::env::temp_dir().join(format!("camfleet-temp-{}", std::process::id()));
        std::fs::write(&dir, "48250\n").unwrap();
        assert_eq!(read_cpu_temp(&dir), Some(48.25));
        std::fs::write(&dir, "warm").unwrap();
        assert_eq!(read_cpu_temp(&dir), None);
        let _ = std::fs::remove_file(&dir);
        assert_eq!(read_cpu_temp(Path::new("/nonexistent")), None);
    }
}
