//! The Pi from the viewer's dashboard, in headless Chromium: a camera's
//! settings panel on the Sources page changes its rpicam-vid flags (a
//! stand-in that records them) and shows a refusal; each tile's badge
//! follows its node's health (a fake /proc and /sys), and so do its Home
//! Assistant sensors (their templates rendered by Jinja2, the engine Home
//! Assistant uses); a recorded session keeps the health figures as rows
//! the player plots under the cameras.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::browser::Browser;
use testkit::pi::FakePi;
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// What Home Assistant would show for one of viewer `ws`'s entities: its
/// discovery config's `value_template` rendered by Jinja2 on the retained
/// payload of its `state_topic`.
fn home_assistant_shows(broker: &Broker, component: &str, object: &str) -> Option<String> {
    let topic = format!("homeassistant/{component}/camfleet_ws/{object}/config");
    let config: Value = serde_json::from_str(&broker.retained(&topic)?).ok()?;
    let payload = broker.retained(config["state_topic"].as_str()?)?;
    let out = output_with_input(
        Command::new("python3").args([
            "-c",
            "import json, sys, jinja2\n\
             print(jinja2.Environment().from_string(sys.argv[1]).render(value_json=json.load(sys.stdin)))",
            config["value_template"].as_str()?,
        ]),
        payload.as_bytes(),
    );
    assert!(
        out.status.success(),
        "Jinja2 on {topic}'s template (sudo apt-get install python3-jinja2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Waits until Home Assistant would show `want` for each `(component,
/// object)`.
fn wait_home_assistant(broker: &Broker, want: &[(&str, &str, &str)]) {
    for (component, object, value) in want {
        wait_for(
            &format!("Home Assistant's {object} to show {value}"),
            SECS(20),
            || {
                (home_assistant_shows(broker, component, object).as_deref() == Some(*value))
                    .then_some(())
            },
        );
    }
}

#[test]
fn the_settings_panel_sets_a_pi_cameras_controls_and_shows_a_refusal() {
    let broker = Broker::start();
    let (_node, bin) = start_on_fake_camera(&broker.url(), "pi-set", "rpicam-vid");
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    viewer.wait_log("camera{camera=pi-set/cam0}: connected", SECS(20));
    let browser = Browser::start();
    browser.go(&format!("http://{}/sources", viewer.dashboard()));
    let card = "[data-card='pi-set/cam0']";
    wait_for("the camera's card", SECS(20), || {
        let found = browser.run(&format!(
            "return !!document.querySelector(\"{card} .settings-button\")"
        ));
        (found == json!(true)).then_some(())
    });
    browser.click(&format!("{card} .settings-button"));
    let shutter = format!("{card} [data-control='shutter']");
    wait_for("the settings form", SECS(20), || {
        let found = browser.run(&format!("return !!document.querySelector(\"{shutter}\")"));
        (found == json!(true)).then_some(())
    });
    let runs = invocations(&bin).len();
    browser.type_into(&shutter, "20000");
    browser.run(&format!(
        "document.querySelector(\"{card} [data-control='hflip']\").value = 'true'; \
         document.querySelector(\"{card} [data-control='awb']\").value = 'daylight'"
    ));
    browser.click(&format!("{card} .apply"));
    let flags = wait_for(
        "rpicam-vid started with the panel's controls",
        SECS(20),
        || {
            invocations(&bin)
                .last()
                .filter(|l| l.contains("--shutter 20000 --awb daylight --hflip"))
                .cloned()
        },
    );
    assert!(invocations(&bin).len() > runs, "{flags}");
    let message = || browser.run("return document.getElementById('message').textContent");
    wait_for("the panel saying it applied", SECS(10), || {
        message()
            .as_str()
            .is_some_and(|m| m.contains("controls applied"))
            .then_some(())
    });

    // A value out of range: the node's reason on the page, no restart.
    wait_for("the form again, filled", SECS(20), || {
        let value = browser.run(&format!(
            "const i = document.querySelector(\"{shutter}\"); return i && i.value"
        ));
        (value == json!("20000")).then_some(())
    });
    let runs = invocations(&bin).len();
    browser.type_into(&format!("{card} [data-control='gain']"), "100");
    browser.click(&format!("{card} .apply"));
    wait_for("the refusal on the page", SECS(10), || {
        message()
            .as_str()
            .is_some_and(|m| m.contains("gain: 100 is not a number from 1 to 64"))
            .then_some(())
    });
    assert_eq!(
        invocations(&bin).len(),
        runs,
        "a refused change restarted the camera"
    );
}

#[test]
fn a_tiles_badge_follows_its_pis_health_and_the_player_plots_the_health_rows() {
    let broker = Broker::start();
    let pi = FakePi::new();
    let _node = test_node_with(
        &broker,
        "pi-hb",
        "160x120",
        &[&pi.flag()[..], &["--stats-seconds", "1"]].concat(),
    );
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(
        &broker,
        &recordings.0,
        &["--segment-seconds", "2", "--homeassistant"],
    );
    viewer.wait_log("camera{camera=pi-hb/cam0}: connected", SECS(20));
    let browser = Browser::start();
    let dashboard = viewer.dashboard();
    browser.go(&format!("http://{dashboard}/"));
    let badge = || -> Value {
        browser.run(
            "const b = document.querySelector(\"[data-camera='pi-hb/cam0'] .health\"); \
             return b && [b.dataset.warnings, b.title, b.textContent]",
        )
    };
    let fine = wait_for("the tile's health badge", SECS(20), || {
        let b = badge();
        (b[0] == json!("0")).then_some(b)
    });
    assert!(fine[2].as_str().unwrap().contains("52 °C"), "{fine}");
    assert!(fine[2].as_str().unwrap().contains("-61 dBm"), "{fine}");
    wait_home_assistant(
        &broker,
        &[
            ("sensor", "pi-hb_soc_temp", "52.3"),
            ("sensor", "pi-hb_wifi_signal", "-61.0"),
            ("sensor", "pi-hb_frames_dropped", "0"),
            ("binary_sensor", "pi-hb_throttled", "OFF"),
            ("binary_sensor", "pi-hb_under_voltage", "OFF"),
        ],
    );

    broker.publish("command/rec", "start");
    let csv = wait_for("health rows in the session", SECS(20), || {
        let csv = files(&recordings.0, "sensors.csv").into_iter().next()?;
        std::fs::read_to_string(&csv)
            .ok()?
            .contains("health/pi-hb/wifi_signal_dbm,-61")
            .then_some(csv)
    });
    // Hot, and the Wi-Fi fading: the badge warns with both reasons.
    pi.temperature_milli(85000);
    pi.signal(-80);
    let warned = wait_for("the badge warning", SECS(20), || {
        let b = badge();
        (b[0] == json!("2")).then_some(b)
    });
    let reasons = warned[1].as_str().unwrap();
    assert!(
        reasons.contains("SoC temperature 85.0 C is over 80 C"),
        "{warned}"
    );
    assert!(
        reasons.contains("Wi-Fi signal -80 dBm on wlan0"),
        "{warned}"
    );
    wait_for("the fall in the session's rows", SECS(20), || {
        std::fs::read_to_string(&csv)
            .ok()?
            .contains("health/pi-hb/wifi_signal_dbm,-80")
            .then_some(())
    });
    pi.put(testkit::pi::THROTTLED, "0x50005\n");
    wait_home_assistant(
        &broker,
        &[
            ("sensor", "pi-hb_soc_temp", "85.0"),
            ("sensor", "pi-hb_wifi_signal", "-80.0"),
            ("binary_sensor", "pi-hb_throttled", "ON"),
            ("binary_sensor", "pi-hb_under_voltage", "ON"),
            ("sensor", "pi-hb_warnings", "4"),
        ],
    );
    broker.publish("command/rec", "stop");
    wait_for("the recorder to close", SECS(20), || {
        viewer.log().contains("recording closed").then_some(())
    });
    let session = csv
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    browser.go(&format!("http://{dashboard}/sessions/{session}"));
    let signal = wait_for("the player's Wi-Fi signal line", SECS(20), || {
        let series = browser.run(
            "return (player.series || []).filter(s => s.topic === 'health/pi-hb/wifi_signal_dbm').map(s => s.points.map(p => p[1]))",
        );
        series.as_array()?.first().cloned()
    });
    let values: Vec<f64> = signal
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(
        values.contains(&-61.0) && values.contains(&-80.0),
        "{values:?}"
    );
    let legend = browser.run("return document.getElementById('legend').textContent");
    assert!(
        legend.as_str().unwrap().contains("health/pi-hb/soc_temp_c"),
        "{legend}"
    );
}
