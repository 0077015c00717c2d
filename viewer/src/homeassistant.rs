//! Home Assistant MQTT discovery (`--homeassistant [PREFIX]`, off by
//! default): the viewer announces the fleet it sees, so every camera, the
//! record switch and each node's health appear in Home Assistant by
//! themselves. Retained configs under `<prefix>/<component>/camfleet_<viewer>/<object>/config`:
//!
//! - per camera a `camera` fed by a JPEG the viewer publishes on
//!   `camfleet/viewer/<viewer>/snapshot/<node>/<camera>` every few seconds,
//!   and a `sensor` with its frames per second (from the node's stats);
//! - per node a `binary_sensor` online and a `sensor` CPU temperature;
//!   from the node's retained health (`camfleet/node/<node>/health`),
//!   binary sensors throttled and under-voltage (`problem`) and sensors
//!   for the SoC temperature, Wi-Fi signal and bit rate, free space,
//!   frames dropped and health warnings;
//! - a `switch` for recording: `command/rec` start/stop, its state from the
//!   viewer's recording state.
//!
//! Each node is a device (with availability on its status topic and the
//! viewer's); the switch belongs to the viewer's device. With the flag off,
//! the viewer empties any retained config of its own it finds under the
//! default prefix, so the entities go away.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};
use shared::messages::{NodeInfo, RecordingStatus};
use shared::topics::{Topics, REC_COMMAND};

use crate::link::live::Live;
use crate::record::sensors::topic_matches;

/// A node's health sensors: object id, name, unit, device class and the
/// template reading the retained health JSON (docs/mqtt.md, "Health").
const HEALTH_SENSORS: [(&str, &str, &str, &str, &str); 6] = [
    (
        "soc_temp",
        "SoC temperature",
        "°C",
        "temperature",
        "{{ value_json.soc_temp_c }}",
    ),
    (
        "wifi_signal",
        "Wi-Fi signal",
        "dBm",
        "signal_strength",
        "{{ value_json.wifi.signal_dbm if value_json.wifi is defined else none }}",
    ),
    (
        "wifi_bitrate",
        "Wi-Fi bit rate",
        "Mbit/s",
        "data_rate",
        "{{ value_json.wifi.bitrate_mbit_s if value_json.wifi is defined else none }}",
    ),
    (
        "state_free",
        "Free space",
        "%",
        "",
        "{{ value_json.state_free_percent }}",
    ),
    (
        "frames_dropped",
        "Frames dropped",
        "",
        "",
        "{{ value_json.frames_dropped }}",
    ),
    (
        "warnings",
        "Health warnings",
        "",
        "",
        "{{ value_json.warnings | count }}",
    ),
];

/// The discovery prefix Home Assistant listens on unless told otherwise.
pub const DEFAULT_PREFIX: &str = "homeassistant";
/// How often each camera's snapshot is published by default: 10 cameras
/// make one message a second.
pub const DEFAULT_SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// A snapshot older than this is not sent (the camera is not live).
const STALE_FRAME: Duration = Duration::from_secs(10);

/// The viewer's Home Assistant side: what it announced, and the flag.
#[derive(Debug)]
pub struct HomeAssistant {
    /// `None`: off (and cleaning up under the default prefix).
    prefix: Option<String>,
    viewer_id: String,
    topics: Topics,
    /// Config topics published and not emptied since.
    announced: BTreeSet<String>,
}

impl HomeAssistant {
    pub fn new(prefix: Option<String>, viewer_id: &str, topics: Topics) -> Self {
        HomeAssistant {
            prefix,
            viewer_id: viewer_id.to_owned(),
            topics,
            announced: BTreeSet::new(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.prefix.is_some()
    }

    /// This viewer's config topics under `prefix`, as an MQTT filter.
    fn own_configs(&self, prefix: &str) -> String {
        format!("{prefix}/+/camfleet_{}/+/config", self.viewer_id)
    }

    /// What to subscribe to: with the flag off, the retained configs left
    /// from a run with it on (to empty them).
    pub fn subscriptions(&self) -> Vec<String> {
        match &self.prefix {
            Some(_) => Vec::new(),
            None => vec![self.own_configs(DEFAULT_PREFIX)],
        }
    }

    /// A message on a subscription of ours: a leftover config (flag off)
    /// is emptied. Whether the message was ours.
    pub fn on_message(&self, client: &AsyncClient, topic: &str, payload: &[u8]) -> bool {
        if self.prefix.is_some() || !topic_matches(&self.own_configs(DEFAULT_PREFIX), topic) {
            return false;
        }
        if !payload.is_empty() {
            tracing::info!("Home Assistant is off: removing {topic}");
            publish(client, topic, true, Vec::new());
        }
        true
    }

    /// Publishes the configs for the nodes known now, and empties those of
    /// cameras and nodes that are gone from them.
    pub fn sync(&mut self, client: &AsyncClient, infos: &BTreeMap<String, NodeInfo>) {
        let Some(prefix) = &self.prefix else {
            return;
        };
        let configs = self.configs(prefix, infos);
        let now: BTreeSet<String> = configs.keys().cloned().collect();
        for gone in self.announced.difference(&now) {
            publish(client, gone, true, Vec::new());
        }
        for (topic, config) in &configs {
            publish(client, topic, true, config.to_string().into_bytes());
        }
        self.announced = now;
    }

    /// Every retained config, by topic.
    pub fn configs(
        &self,
        prefix: &str,
        infos: &BTreeMap<String, NodeInfo>,
    ) -> BTreeMap<String, Value> {
        let vid = &self.viewer_id;
        let viewer_status = self.topics.viewer_status(vid);
        let topic = |component: &str, object: &str| {
            format!("{prefix}/{component}/camfleet_{vid}/{object}/config")
        };
        let online = |status: &str| json!({"topic": status, "payload_available": "online", "payload_not_available": "offline"});
        let viewer_device = json!({
            "identifiers": [format!("camfleet_viewer_{vid}")],
            "name": format!("camfleet viewer {vid}"),
            "manufacturer": "camfleet",
            "model": "viewer",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        let mut out = BTreeMap::new();
        out.insert(
            topic("switch", "recording"),
            json!({
                "name": "Recording",
                "unique_id": format!("camfleet_{vid}_recording"),
                "icon": "mdi:record-rec",
                "command_topic": REC_COMMAND,
                "payload_on": "start",
                "payload_off": "stop",
                "retain": false,
                "state_topic": self.topics.viewer_recording(vid),
                "value_template": "{{ value_json.state }}",
                "state_on": RecordingStatus::Recording.as_str(),
                "state_off": RecordingStatus::Idle.as_str(),
                "availability": [online(&viewer_status)],
                "device": viewer_device,
            }),
        );
        for (node, info) in infos {
            let node_status = self.topics.node_status(node);
            let both = json!([online(&node_status), online(&viewer_status)]);
            let device = json!({
                "identifiers": [format!("camfleet_{node}")],
                "name": node,
                "manufacturer": "camfleet",
                "model": "camera-node",
                "sw_version": info.version,
                "via_device": format!("camfleet_viewer_{vid}"),
            });
            out.insert(
                topic("binary_sensor", &format!("{node}_online")),
                json!({
                    "name": "Online",
                    "unique_id": format!("camfleet_{node}_online"),
                    "device_class": "connectivity",
                    "state_topic": node_status,
                    "payload_on": "online",
                    "payload_off": "offline",
                    "availability": [online(&viewer_status)],
                    "device": device,
                }),
            );
            out.insert(
                topic("sensor", &format!("{node}_cpu_temp")),
                json!({
                    "name": "CPU temperature",
                    "unique_id": format!("camfleet_{node}_cpu_temp"),
                    "device_class": "temperature",
                    "state_class": "measurement",
                    "unit_of_measurement": "°C",
                    "state_topic": shared::topics::cpu_temp(node),
                    "availability": both,
                    "availability_mode": "all",
                    "device": device,
                }),
            );
            let health = self.topics.node_health(node);
            for (object, name, field) in [
                ("throttled", "Throttled", "throttled"),
                ("under_voltage", "Under-voltage", "under_voltage"),
            ] {
                out.insert(
                    topic("binary_sensor", &format!("{node}_{object}")),
                    json!({
                        "name": name,
                        "unique_id": format!("camfleet_{node}_{object}"),
                        "device_class": "problem",
                        "state_topic": health,
                        "value_template": format!("{{{{ 'ON' if value_json.{field} else 'OFF' }}}}"),
                        "availability": both,
                        "availability_mode": "all",
                        "device": device,
                    }),
                );
            }
            for (object, name, unit, class, template) in HEALTH_SENSORS {
                let mut config = json!({
                    "name": name,
                    "unique_id": format!("camfleet_{node}_{object}"),
                    "state_class": "measurement",
                    "state_topic": health,
                    "value_template": template,
                    "availability": both,
                    "availability_mode": "all",
                    "device": device,
                });
                if !unit.is_empty() {
                    config["unit_of_measurement"] = json!(unit);
                }
                if !class.is_empty() {
                    config["device_class"] = json!(class);
                }
                out.insert(topic("sensor", &format!("{node}_{object}")), config);
            }
            for camera in &info.cameras {
                let id = &camera.id;
                out.insert(
                    topic("camera", &format!("{node}_{id}")),
                    json!({
                        "name": id,
                        "unique_id": format!("camfleet_{node}_{id}"),
                        "topic": self.topics.viewer_snapshot(vid, node, id),
                        "availability": both,
                        "availability_mode": "all",
                        "device": device,
                    }),
                );
                out.insert(
                    topic("sensor", &format!("{node}_{id}_fps")),
                    json!({
                        "name": format!("{id} frame rate"),
                        "unique_id": format!("camfleet_{node}_{id}_fps"),
                        "state_class": "measurement",
                        "unit_of_measurement": "fps",
                        "icon": "mdi:filmstrip",
                        "state_topic": self.topics.node_stats(node),
                        "value_template": format!(
                            "{{{{ (value_json.cameras | selectattr('id', 'eq', '{id}') | map(attribute='fps') | first) | round(1) }}}}"
                        ),
                        "availability": both,
                        "availability_mode": "all",
                        "device": device,
                    }),
                );
            }
        }
        out
    }

    /// Publishes each live camera's newest picture on its snapshot topic:
    /// an MJPEG camera's newest frame, an H.264 camera's decoded from its
    /// newest keyframe group (in a task of its own; skipped while the
    /// last decode runs).
    pub fn snapshots(&self, client: &AsyncClient, live: &Live) {
        if self.prefix.is_none() {
            return;
        }
        for (key, camera) in live.list() {
            let Some(tile) = camera.tile().filter(|t| t.at.elapsed() < STALE_FRAME) else {
                continue;
            };
            let Some((node, id)) = key.split_once('/') else {
                continue;
            };
            let topic = self.topics.viewer_snapshot(&self.viewer_id, node, id);
            if tile.codec == fanout::Codec::Mjpeg {
                publish_snapshot(client, &key, topic, tile.data);
                continue;
            }
            if camera.is_decoding() {
                continue;
            }
            let client = client.clone();
            tokio::spawn(async move {
                match camera.picture().await {
                    Ok(jpeg) => publish_snapshot(&client, &key, topic, jpeg),
                    Err(e) => {
                        tracing::warn!(camera = %key, "no snapshot for Home Assistant: {e:#}")
                    }
                }
            });
        }
    }
}

fn publish_snapshot(client: &AsyncClient, key: &str, topic: String, jpeg: bytes::Bytes) {
    if jpeg.len() > shared::mqtt::MAX_PACKET_LEN - 1024 {
        tracing::warn!(
            camera = %key,
            "snapshot of {} KiB is over the MQTT packet limit; not sent to Home Assistant",
            jpeg.len() / 1024
        );
        return;
    }
    if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, false, jpeg.to_vec()) {
        tracing::debug!(camera = %key, "snapshot not queued: {e}");
    }
}

fn publish(client: &AsyncClient, topic: &str, retain: bool, payload: Vec<u8>) {
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
        tracing::warn!(topic, "MQTT publish not queued: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node: &str, cameras: &[&str]) -> NodeInfo {
        let cams: Vec<Value> = cameras
            .iter()
            .map(|c| {
                json!({"id": c, "width": 160, "height": 120, "fps": 10, "codec": "mjpeg",
                       "tcp": "127.0.0.1:8000", "rtsp": "rtsp://127.0.0.1:8554/x", "http": "http://127.0.0.1:8080/"})
            })
            .collect();
        serde_json::from_value(
            json!({"v": 1, "node_id": node, "hostname": node, "version": "0.1.0",
            "addresses": ["127.0.0.1"], "started_at": "2026-11-27T10:00:00Z", "cameras": cams}),
        )
        .unwrap()
    }

    #[test]
    fn a_node_with_two_cameras_gives_fifteen_entities_with_the_documented_keys() {
        let ha = HomeAssistant::new(Some("homeassistant".into()), "ws", Topics::default());
        let infos = BTreeMap::from([("pi-door".to_owned(), info("pi-door", &["cam0", "cam1"]))]);
        let configs = ha.configs("homeassistant", &infos);
        let topics: Vec<&str> = configs.keys().map(String::as_str).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/binary_sensor/camfleet_ws/pi-door_online/config",
                "homeassistant/binary_sensor/camfleet_ws/pi-door_throttled/config",
                "homeassistant/binary_sensor/camfleet_ws/pi-door_under_voltage/config",
                "homeassistant/camera/camfleet_ws/pi-door_cam0/config",
                "homeassistant/camera/camfleet_ws/pi-door_cam1/config",
                "homeassistant/sensor/camfleet_ws/pi-door_cam0_fps/config",
                "homeassistant/sensor/camfleet_ws/pi-door_cam1_fps/config",
                "homeassistant/sensor/camfleet_ws/pi-door_cpu_temp/config",
                "homeassistant/sensor/camfleet_ws/pi-door_frames_dropped/config",
                "homeassistant/sensor/camfleet_ws/pi-door_soc_temp/config",
                "homeassistant/sensor/camfleet_ws/pi-door_state_free/config",
                "homeassistant/sensor/camfleet_ws/pi-door_warnings/config",
                "homeassistant/sensor/camfleet_ws/pi-door_wifi_bitrate/config",
                "homeassistant/sensor/camfleet_ws/pi-door_wifi_signal/config",
                "homeassistant/switch/camfleet_ws/recording/config",
            ]
        );
        let throttled =
            &configs["homeassistant/binary_sensor/camfleet_ws/pi-door_throttled/config"];
        assert_eq!(throttled["state_topic"], "camfleet/node/pi-door/health");
        assert_eq!(throttled["device_class"], "problem");
        let signal = &configs["homeassistant/sensor/camfleet_ws/pi-door_wifi_signal/config"];
        assert_eq!(signal["unit_of_measurement"], "dBm");
        let camera = &configs["homeassistant/camera/camfleet_ws/pi-door_cam1/config"];
        assert_eq!(camera["topic"], "camfleet/viewer/ws/snapshot/pi-door/cam1");
        assert_eq!(camera["device"]["identifiers"][0], "camfleet_pi-door");
        let fps = &configs["homeassistant/sensor/camfleet_ws/pi-door_cam1_fps/config"];
        assert!(fps["value_template"].as_str().unwrap().contains("'cam1'"));
        assert!(fps["value_template"].as_str().unwrap().starts_with("{{ ("));
        let switch = &configs["homeassistant/switch/camfleet_ws/recording/config"];
        assert_eq!(switch["command_topic"], "command/rec");
        assert_eq!(switch["state_topic"], "camfleet/viewer/ws/recording");
    }

    #[test]
    fn leftover_configs_are_only_ours_under_the_default_prefix() {
        let ha = HomeAssistant::new(None, "ws", Topics::default());
        assert_eq!(ha.subscriptions(), ["homeassistant/+/camfleet_ws/+/config"]);
        let on = HomeAssistant::new(Some("ha".into()), "ws", Topics::default());
        assert!(on.subscriptions().is_empty());
    }
}
