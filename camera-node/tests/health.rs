//! The Pi's health as the node reads it: from a directory standing in for
//! /proc and /sys (`--health-root`), filled and changed by the test, to the
//! stats message, the retained health topic with its warnings, the WARN
//! log lines and /metrics (checked by promtool).

use std::time::Duration;

use serde_json::Value;
use testkit::pi::{FakePi, THROTTLED, WIRELESS};
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The retained health, once `want` holds for it.
fn health(broker: &Broker, want: &dyn Fn(&Value) -> bool) -> Value {
    let topic = "camfleet/node/pi-health/health";
    wait_for(&format!("{topic} as wanted"), SECS(20), || {
        let v: Value = serde_json::from_str(&broker.retained(topic)?).ok()?;
        want(&v).then_some(v)
    })
}

#[test]
fn health_follows_a_fake_proc_and_sys_to_stats_metrics_and_warnings() {
    let broker = Broker::start();
    let pi = FakePi::new();
    let state = TempDir::new("state");
    let url = broker.url();
    let args = [
        camera_args(&url, "pi-health", "test", "160x120"),
        pi.flag().to_vec(),
        vec!["--stats-seconds", "1"],
        vec!["--state-dir", state.0.to_str().unwrap()],
    ]
    .concat();
    let node = Node::start(&args);

    // Within the lines: figures, no warnings; the stats carry the same
    // object. The CPU share needs two samples of /proc/stat.
    health(&broker, &|h| h["soc_temp_c"] == 52.3);
    pi.put("proc/stat", "cpu  150 0 150 900 0 0 0 0 0 0\n");
    let fine = health(&broker, &|h| h["cpu_percent"] == 50.0);
    assert_eq!(fine["soc_temp_c"], 52.3, "{fine}");
    assert_eq!(fine["under_voltage"], false, "{fine}");
    assert_eq!(fine["throttled_since_boot"], false, "{fine}");
    assert_eq!(fine["wifi"]["interface"], "wlan0", "{fine}");
    assert_eq!(fine["wifi"]["signal_dbm"], -61.0, "{fine}");
    assert_eq!(fine["wifi"]["retries"], 7, "{fine}");
    assert_eq!(fine["mem_total_mb"], 3793, "{fine}");
    assert_eq!(fine["mem_available_mb"], 2048, "{fine}");
    assert_eq!(fine["load_1m"], 0.52, "{fine}");
    assert!(fine["state_free_percent"].as_f64().is_some(), "{fine}");
    assert_eq!(fine["warnings"], serde_json::json!([]), "{fine}");
    let stats = broker.sub("camfleet/node/pi-health/stats", 1, 10);
    let stats: Value = serde_json::from_str(&stats[0].1).unwrap();
    assert_eq!(stats["health"]["soc_temp_c"], 52.3, "{stats}");
    let text = curl(&[&format!("{}/metrics", node.http_base())]).text();
    promtool_accepts(&text);
    assert_eq!(
        metric_value(&text, "camfleet_node_soc_temperature_celsius"),
        52.3
    );
    assert_eq!(metric_value(&text, "camfleet_node_wifi_signal_dbm"), -61.0);
    assert_eq!(metric_value(&text, "camfleet_node_under_voltage"), 0.0);
    assert_eq!(metric_value(&text, "camfleet_node_warnings"), 0.0);

    // Hot, under-volted, throttled (now and since boot) and far from the
    // access point: four warnings, each a WARN line naming its figure.
    pi.temperature_milli(85000);
    pi.put(THROTTLED, "0x50005\n");
    pi.signal(-80);
    let bad = health(&broker, &|h| {
        h["warnings"].as_array().is_some_and(|w| w.len() == 4)
    });
    assert_eq!(bad["under_voltage"], true, "{bad}");
    assert_eq!(bad["throttled"], true, "{bad}");
    assert_eq!(bad["under_voltage_since_boot"], true, "{bad}");
    assert_eq!(bad["freq_capped"], false, "{bad}");
    let warnings = bad["warnings"].to_string();
    for says in [
        "under-voltage now",
        "throttled now",
        "SoC temperature 85.0 C is over 80 C",
        "Wi-Fi signal -80 dBm on wlan0 is below -75 dBm",
    ] {
        assert!(warnings.contains(says), "{says}: {warnings}");
        node.wait_log(says, SECS(10));
    }
    assert!(
        node.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("SoC temperature 85.0 C")),
        "{}",
        node.log()
    );
    let text = curl(&[&format!("{}/metrics", node.http_base())]).text();
    promtool_accepts(&text);
    assert_eq!(metric_value(&text, "camfleet_node_under_voltage"), 1.0);
    assert_eq!(
        metric_value(&text, "camfleet_node_throttled_since_boot"),
        1.0
    );
    assert_eq!(metric_value(&text, "camfleet_node_warnings"), 4.0);

    // A file gone leaves its figure out, without an error; cooled down,
    // the temperature's warning clears.
    pi.remove(WIRELESS);
    pi.temperature_milli(60000);
    let later = health(&broker, &|h| h["wifi"].is_null() && h["soc_temp_c"] == 60.0);
    assert_eq!(later["warnings"].as_array().unwrap().len(), 2, "{later}");
    node.wait_log("soc_temp_c is back within its line", SECS(10));
    assert!(!node.log().contains("ERROR"), "{}", node.log());
    let text = curl(&[&format!("{}/metrics", node.http_base())]).text();
    assert!(!text.contains("camfleet_node_wifi_signal_dbm"), "{text}");
}
