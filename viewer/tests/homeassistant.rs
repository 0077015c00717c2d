//! Home Assistant sees the fleet: with `--homeassistant` the viewer
//! publishes retained MQTT discovery configs (HA's documented keys per
//! component), a snapshot JPEG per camera on the camera entity's topic,
//! and the record switch records; started again without the flag it
//! empties the configs.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The retained discovery configs under `homeassistant/`, by topic.
fn configs(broker: &Broker) -> BTreeMap<String, Value> {
    let out = Command::new("mosquitto_sub")
        .args([
            "-p",
            &broker.port.to_string(),
            "-t",
            "homeassistant/#",
            "-v",
        ])
        .args(["-W", "2", "--retained-only"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(topic, json)| {
            let value = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("{topic}: not JSON ({e}): {json}"));
            (topic.to_owned(), value)
        })
        .collect()
}

#[test]
fn home_assistant_gets_every_entity_a_snapshot_and_a_working_switch_until_turned_off() {
    require("mosquitto_sub", "mosquitto-clients");
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-ha", "160x120");
    let recordings = TempDir::new("recordings");
    let mut viewer = Viewer::start(
        &broker,
        &recordings.0,
        &["--homeassistant", "--homeassistant-snapshot-seconds", "1"],
    );
    viewer.wait_log("camera{camera=pi-ha/cam0}: connected", SECS(20));
    // Per node: online, throttled, under-voltage, CPU temperature and six
    // health sensors; per camera a camera and its frame rate; the switch.
    let found = wait_for("thirteen discovery configs", SECS(20), || {
        let found = configs(&broker);
        (found.len() == 13).then_some(found)
    });
    let at = |component: &str, object: &str| -> &Value {
        let topic = format!("homeassistant/{component}/camfleet_ws/{object}/config");
        found
            .get(&topic)
            .unwrap_or_else(|| panic!("no {topic} in {:?}", found.keys()))
    };
    // The keys HA documents for each component (MQTT camera, switch,
    // binary_sensor, sensor), availability and a device on every one.
    let wanted: [(&str, &str, &[&str]); 8] = [
        (
            "binary_sensor",
            "pi-ha_throttled",
            &["state_topic", "value_template", "device_class"],
        ),
        (
            "binary_sensor",
            "pi-ha_under_voltage",
            &["state_topic", "value_template", "device_class"],
        ),
        (
            "sensor",
            "pi-ha_wifi_signal",
            &["state_topic", "unit_of_measurement", "value_template"],
        ),
        ("camera", "pi-ha_cam0", &["topic"]),
        (
            "switch",
            "recording",
            &[
                "command_topic",
                "state_topic",
                "payload_on",
                "payload_off",
                "state_on",
                "state_off",
                "value_template",
            ],
        ),
        (
            "binary_sensor",
            "pi-ha_online",
            &["state_topic", "payload_on", "payload_off", "device_class"],
        ),
        (
            "sensor",
            "pi-ha_cpu_temp",
            &["state_topic", "unit_of_measurement", "device_class"],
        ),
        (
            "sensor",
            "pi-ha_cam0_fps",
            &["state_topic", "unit_of_measurement", "value_template"],
        ),
    ];
    for (component, object, keys) in wanted {
        let config = at(component, object);
        for key in ["name", "unique_id", "availability", "device"]
            .iter()
            .chain(keys)
        {
            assert!(
                !config[key].is_null(),
                "{component}/{object} lacks {key}: {config}"
            );
        }
        assert!(
            config["device"]["identifiers"][0].as_str().is_some(),
            "{component}/{object}: {config}"
        );
        for a in config["availability"].as_array().unwrap() {
            let topic = a["topic"].as_str().unwrap();
            assert!(
                topic == "camfleet/node/pi-ha/status" || topic == "camfleet/viewer/ws/status",
                "{topic}"
            );
        }
    }
    assert_eq!(
        at("camera", "pi-ha_cam0")["device"]["identifiers"][0],
        "camfleet_pi-ha"
    );

    // The camera entity's image: a JPEG that decodes, at the camera's size.
    let image_topic = at("camera", "pi-ha_cam0")["topic"]
        .as_str()
        .unwrap()
        .to_owned();
    let image = Command::new("mosquitto_sub")
        .args(["-p", &broker.port.to_string(), "-t", &image_topic])
        .args(["-C", "1", "-W", "10", "-N"])
        .output()
        .unwrap();
    assert!(image.status.success(), "no snapshot on {image_topic}");
    assert_eq!(jpeg_size(&image.stdout), (160, 120));

    // The switch: its command topic and "on" payload record; its state
    // topic's value (through the template's key) says so.
    let switch = at("switch", "recording");
    broker.publish(
        switch["command_topic"].as_str().unwrap(),
        switch["payload_on"].as_str().unwrap(),
    );
    wait_for("a segment being written", SECS(20), || {
        (!files(&recordings.0, ".mp4.part").is_empty()).then_some(())
    });
    let state = recording_state(&broker).expect("a recording state");
    assert_eq!(state.state, switch["state_on"].as_str().unwrap());
    broker.publish(
        switch["command_topic"].as_str().unwrap(),
        switch["payload_off"].as_str().unwrap(),
    );
    wait_for("the recording to stop", SECS(20), || {
        viewer.log().contains("recording closed").then_some(())
    });

    // The flag off: the viewer empties every config of its own.
    viewer.stop();
    let _again = Viewer::start(&broker, &recordings.0, &[]);
    wait_for("the configs gone", SECS(20), || {
        configs(&broker).is_empty().then_some(())
    });
}
