//! A Pi camera's controls as a user sets them: over the camera API, over
//! MQTT, kept across a node restart, refused with a reason when out of
//! range; and a two-camera Pi. The camera is a stand-in rpicam-vid that
//! records the flags it was started with (testkit's fake camera).

use std::time::Duration;

use serde_json::{json, Value};
use testkit::api::{api, view, wait_state};
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A node on a stand-in rpicam-vid, its state in `state`.
fn start(broker: &Broker, node_id: &str, bin: &TempDir, state: &TempDir) -> Node {
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let url = broker.url();
    let args = [
        node_args(&url, node_id, "rpicam"),
        words("--width 320 --height 240 --fps 10 --quality 70"),
        vec!["--state-dir", state.0.to_str().unwrap()],
    ]
    .concat();
    Node::start_with_env(&args, &[("PATH", &path)])
}

/// `node` stopped and started again on the same state: the new node, and
/// the flags its camera was started with.
fn restarted(
    mut node: Node,
    broker: &Broker,
    node_id: &str,
    bin: &TempDir,
    state: &TempDir,
) -> (Node, String) {
    node.signal("TERM");
    node.wait_exit(SECS(20));
    let runs = invocations(bin).len();
    let node = start(broker, node_id, bin, state);
    let flags = wait_for("the camera started again", SECS(20), || {
        let now = invocations(bin);
        (now.len() > runs).then(|| now.last().unwrap().clone())
    });
    (node, flags)
}

/// The newest rpicam-vid start's flags, once it has `want` in them.
fn wait_flags(bin: &TempDir, want: &str) -> String {
    wait_for(
        &format!("rpicam-vid started with {want:?}"),
        SECS(20),
        || {
            invocations(bin)
                .last()
                .filter(|l| l.contains(want))
                .cloned()
        },
    )
}

/// Reads frames until `enough` have come after the camera restarted (a
/// new run's first frame): the longest wait between two frames, in ms.
fn longest_gap_ms(client: &mut FrameClient, bin: &TempDir, runs_before: usize) -> f64 {
    let mut last = client.next().captured_at_us;
    let mut longest = 0u64;
    let mut after = 0;
    while after < 10 {
        let frame = client.next();
        longest = longest.max(frame.captured_at_us.saturating_sub(last));
        last = frame.captured_at_us;
        if invocations(bin).len() > runs_before {
            after += 1;
        }
    }
    longest as f64 / 1000.0
}

#[test]
fn controls_set_over_the_api_reach_rpicam_vid_and_survive_a_node_restart() {
    let broker = Broker::start();
    let bin = TempDir::new("fakecam");
    fake_camera_script(&bin, "rpicam-vid");
    let state = TempDir::new("state");
    let node = start(&broker, "pi-ctl", &bin, &state);
    let mut client = FrameClient::connect(node.tcp_port("cam0")).patient(SECS(20));
    client.next();
    let runs = invocations(&bin).len();

    let asked =
        json!({"controls": {"shutter": 10000, "gain": 2.0, "hflip": true, "awb": "indoor"}});
    let reply = api(&node, "PATCH", "/api/v1/cameras/cam0", Some(asked), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let flags = wait_flags(&bin, "--shutter 10000 --gain 2.0 --awb indoor --hflip");
    assert!(flags.contains("--width 320"), "{flags}");
    let gap = longest_gap_ms(&mut client, &bin, runs);
    eprintln!(
        "a control change: at most {gap:.0} ms between frames ({:.0} frames at 10 fps)",
        (gap / 100.0 - 1.0).max(0.0)
    );
    let shown = view(&node, "cam0");
    assert_eq!(shown["controls"]["shutter"], 10000, "{shown}");
    assert_eq!(shown["controls"]["awb"], "indoor", "{shown}");

    // One bad value among good ones: a 400 naming it and its range, and
    // nothing changes or restarts.
    let runs = invocations(&bin).len();
    let restarts = view(&node, "cam0")["restarts"].clone();
    for (bad, says) in [
        (
            json!({"shutter": 0, "gain": 3.0}),
            "shutter: 0 is not a whole number from 1 to 60000000",
        ),
        (json!({"rotation": 90}), "rotation: 90 is not one of 0, 180"),
        (json!({"iso": 100}), "\"iso\" is not a camera control"),
    ] {
        let reply = api(
            &node,
            "PATCH",
            "/api/v1/cameras/cam0",
            Some(json!({ "controls": bad })),
            None,
        );
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        let why = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(why.contains(says), "{bad}: {why}");
    }
    let shown = view(&node, "cam0");
    assert_eq!(shown["controls"]["gain"], 2.0, "{shown}");
    assert_eq!(shown["restarts"], restarts);
    assert_eq!(
        invocations(&bin).len(),
        runs,
        "a refused change restarted the camera"
    );
    // Removing one (null) restarts without it.
    let reply = api(
        &node,
        "PATCH",
        "/api/v1/cameras/cam0",
        Some(json!({"controls": {"gain": null}})),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    wait_for("a start without --gain", SECS(20), || {
        let runs_now = invocations(&bin);
        (runs_now.len() > runs && !runs_now.last()?.contains("--gain")).then_some(())
    });

    // A restarted node starts the camera with what it was left with.
    drop(client);
    let (node, flags) = restarted(node, &broker, "pi-ctl", &bin, &state);
    assert!(
        flags.contains("--shutter 10000 --awb indoor --hflip") && !flags.contains("--gain"),
        "{flags}"
    );
    assert_eq!(view(&node, "cam0")["controls"]["hflip"], true);
}

/// A value each control takes, from the node's own list of them.
fn a_good_value(control: &Value) -> Value {
    let name = control["name"].as_str().unwrap();
    match control["kind"].as_str().unwrap() {
        "int" | "number" => control["max"].clone(),
        "flag" => json!(true),
        "choice" => control["choices"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone(),
        _ => match name {
            "awbgains" => json!("1.5,1.2"),
            "roi" => json!("0.1,0.1,0.8,0.8"),
            "tuning-file" => json!("/usr/share/libcamera/ipa/rpi/vc4/imx708.json"),
            "mode" => json!("2304:1296:10:P"),
            other => panic!("no sample value for the text control {other}"),
        },
    }
}

#[test]
fn every_control_the_node_lists_reaches_rpicam_vid_as_its_option() {
    let broker = Broker::start();
    let bin = TempDir::new("fakecam");
    fake_camera_script(&bin, "rpicam-vid");
    let state = TempDir::new("state");
    let node = start(&broker, "pi-all", &bin, &state);
    wait_state(&node, "cam0", &["running"], SECS(20));
    let listed = api(&node, "GET", "/api/v1/controls", None, None).json();
    let listed = listed["controls"].as_array().unwrap().clone();
    assert!(listed.len() >= 20, "{listed:?}");
    // `camera` must name a camera the stand-in lists (it has one).
    let all: serde_json::Map<String, Value> = listed
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_owned();
            let value = if name == "camera" {
                json!(0)
            } else {
                a_good_value(c)
            };
            (name, value)
        })
        .collect();
    let reply = api(
        &node,
        "PATCH",
        "/api/v1/cameras/cam0",
        Some(json!({ "controls": all })),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let flags = wait_flags(&bin, "--saturation");
    for (name, value) in &all {
        let want = match value {
            Value::Bool(true) => format!(" --{name} "),
            Value::String(s) => format!(" --{name} {s} "),
            other => format!(" --{name} {other} "),
        };
        assert!(format!("{flags} ").contains(&want), "{want:?} in {flags}");
    }
    // And one past its range, for each that has one.
    for c in listed.iter().filter(|c| c["max"].is_number()) {
        let name = c["name"].as_str().unwrap();
        let past = c["max"].as_f64().unwrap() + 1.0;
        let reply = api(
            &node,
            "PATCH",
            "/api/v1/cameras/cam0",
            Some(json!({"controls": { name: past }})),
            None,
        );
        assert_eq!(reply.status, 400, "{name}: {}", reply.text());
        let why = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(why.starts_with(&format!("{name}: ")), "{why}");
    }
}

#[test]
fn controls_set_over_mqtt_reach_rpicam_vid_and_a_bad_one_is_refused_on_the_state_topic() {
    require("mosquitto_sub", "mosquitto-clients");
    let broker = Broker::start();
    let bin = TempDir::new("fakecam");
    fake_camera_script(&bin, "rpicam-vid");
    let state = TempDir::new("state");
    let node = start(&broker, "pi-mq", &bin, &state);
    wait_state(&node, "cam0", &["running"], SECS(20));
    let set = "camfleet/node/pi-mq/camera/cam0/set";
    let state_topic = "camfleet/node/pi-mq/camera/cam0/state";
    broker.publish_qos1(
        set,
        r#"{"controls":{"vflip":true,"roi":"0.25,0.25,0.5,0.5","denoise":"cdn_off"}}"#,
    );
    wait_flags(&bin, "--vflip --roi 0.25,0.25,0.5,0.5 --denoise cdn_off");
    let retained = |want: &dyn Fn(&Value) -> bool| -> Value {
        wait_for(&format!("{state_topic} as wanted"), SECS(20), || {
            let v: Value = serde_json::from_str(&broker.retained(state_topic)?).ok()?;
            want(&v).then_some(v)
        })
    };
    retained(&|v| v["controls"]["vflip"] == true && v["control_error"].is_null());

    let runs = invocations(&bin).len();
    broker.publish_qos1(set, r#"{"controls":{"gain":100}}"#);
    let refused = retained(&|v| v["control_error"].is_string());
    let why = refused["control_error"].as_str().unwrap();
    assert!(
        why.contains("gain: 100 is not a number from 1 to 64"),
        "{why}"
    );
    node.wait_log("refused a change from MQTT: gain: 100", SECS(10));
    assert!(node.log().contains("WARN"), "{}", node.log());
    broker.publish_qos1(set, "not json");
    retained(&|v| {
        v["control_error"]
            .as_str()
            .is_some_and(|e| e.contains("not a set message"))
    });
    assert_eq!(
        invocations(&bin).len(),
        runs,
        "a refused change restarted the camera"
    );
    assert_eq!(view(&node, "cam0")["controls"]["vflip"], true);
    // The next good one clears the error.
    broker.publish_qos1(set, r#"{"controls":{"sharpness":1.5}}"#);
    wait_flags(&bin, "--sharpness 1.5");
    retained(&|v| v["control_error"].is_null() && v["controls"]["sharpness"] == 1.5);

    // Kept across a node restart like the API's.
    let (_node, flags) = restarted(node, &broker, "pi-mq", &bin, &state);
    assert!(
        flags.contains("--vflip --roi 0.25,0.25,0.5,0.5 --denoise cdn_off --sharpness 1.5"),
        "{flags}"
    );
}

#[test]
fn a_two_camera_pi_lists_and_runs_both_and_a_missing_camera_gets_one_clear_error() {
    let broker = Broker::start();
    let bin = TempDir::new("fakecam");
    fake_camera_script(&bin, "rpicam-vid");
    let config = TempDir::new("config");
    let file = config.path("node.toml");
    write(
        &file,
        r#"source = "rpicam"
width = 320
height = 240
fps = 10
quality = 70
[[camera]]
id = "front"
camera = 0
[[camera]]
id = "back"
camera = 1
controls = { hflip = true }
[[camera]]
id = "third"
camera = 2
"#,
    );
    let path = format!("{}:{}", bin.0.display(), std::env::var("PATH").unwrap());
    let url = broker.url();
    let args = [
        node_base_args(&url, "pi5"),
        vec!["--config", file.to_str().unwrap()],
    ]
    .concat();
    let node = Node::start_with_env(&args, &[("PATH", &path), ("FAKE_CAMERAS", "2")]);
    let info = broker.node_info("pi5");
    let listed: Vec<(u32, &str)> = info
        .pi_cameras
        .iter()
        .map(|c| (c.index, c.model.as_str()))
        .collect();
    assert_eq!(listed, [(0, "imx708"), (1, "imx219")]);
    assert_eq!(info.pi_cameras[0].modes[0].width, 1536);
    for id in ["front", "back"] {
        let mut client = FrameClient::connect(node.tcp_port(id)).patient(SECS(20));
        assert_eq!(jpeg_size(&client.next().jpeg), (320, 240), "{id}");
    }
    let runs = invocations(&bin);
    assert!(runs.iter().any(|l| l.contains("--camera 0")), "{runs:?}");
    assert!(
        runs.iter().any(|l| l.contains("--camera 1 --hflip")),
        "{runs:?}"
    );
    assert!(!runs.iter().any(|l| l.contains("--camera 2")), "{runs:?}");
    let third = wait_state(&node, "third", &["failed", "backoff"], SECS(20));
    let error = third["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(
            "there is no camera 2 on this Pi; rpicam-vid --list-cameras found \
             0: imx708 4608x2592, 1: imx219 3280x2464"
        ),
        "{third}"
    );
    // Config cameras take controls too, but not a new source.
    let reply = api(
        &node,
        "PATCH",
        "/api/v1/cameras/front",
        Some(json!({"controls": {"brightness": 0.2}})),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    wait_flags(&bin, "--camera 0 --brightness 0.2");
    // `"controls": null`: back to the file's (only `camera = 0`).
    let runs = invocations(&bin).len();
    let reply = api(
        &node,
        "PATCH",
        "/api/v1/cameras/front",
        Some(json!({ "controls": null })),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let flags = wait_for("front started with the file's controls", SECS(20), || {
        let now = invocations(&bin);
        now[runs..]
            .iter()
            .find(|l| l.contains("--camera 0"))
            .cloned()
    });
    assert!(!flags.contains("--brightness"), "{flags}");
    assert_eq!(view(&node, "front")["controls"], json!({"camera": 0}));
    let reply = api(
        &node,
        "PATCH",
        "/api/v1/cameras/front",
        Some(json!({"source": "test"})),
        None,
    );
    assert_eq!(reply.status, 409, "{}", reply.text());
}
