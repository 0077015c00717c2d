//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver's WebDriver API (plain HTTP and JSON, here with curl).
//! Three live tiles whose pictures change; Record publishes the command on
//! MQTT, the state turns to recording, segments show on disk and in the
//! list; Stop ends it. A screenshot is kept as an artifact.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use testkit::browser::Browser;
use testkit::demo::{Demo, USER};
use testkit::viewers::files;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
#[test]
fn the_dashboard_in_chromium_shows_the_fleet_and_records_with_its_buttons() {
    let demo = Demo::start("3");
    demo.wait_fleet(3);
    let browser = Browser::start();
    browser.go(&format!("{}/", demo.dashboard));
    shows_the_fleet_and_records(&demo, &browser, "dashboard.png");
}

/// The same over HTTPS (a test certificate) with a user: the browser is
/// sent to the login page, logs in, and everything else is unchanged.
#[test]
fn the_dashboard_over_https_with_a_login_in_chromium() {
    let demo = Demo::start_secure("3");
    demo.wait_fleet(3);
    let browser = Browser::start_with(&["--ignore-certificate-errors"]);
    browser.go(&format!("{}/", demo.dashboard));
    wait_for("the login page", SECS(10), || {
        let url = browser.run("return location.pathname + location.search");
        (url.as_str()? == "/login?next=/").then_some(())
    });
    browser.type_into("#name", USER.0);
    browser.type_into("#password", USER.1);
    browser.click("#login");
    wait_for("the dashboard after logging in", SECS(10), || {
        let url = browser.run("return location.href");
        (url.as_str()? == format!("{}/", demo.dashboard)).then_some(())
    });
    shows_the_fleet_and_records(&demo, &browser, "dashboard-https.png");
}

fn shows_the_fleet_and_records(demo: &Demo, browser: &Browser, screenshot: &str) {
    wait_for("three tiles showing pictures", SECS(30), || {
        let drawn = browser.tile_frames();
        (drawn.len() == 3 && drawn.values().all(|&n| n > 0)).then_some(())
    });
    let first = browser.element_png(".tile canvas");
    wait_for("the first tile's picture to change", SECS(10), || {
        (browser.element_png(".tile canvas") != first).then_some(())
    });
    let names =
        browser.run("return [...document.querySelectorAll('.tile .name')].map(e => e.textContent)");
    assert_eq!(names, json!(["demo-1/cam0", "demo-2/cam0", "demo-3/cam0"]));

    let (mut watcher, mut lines) = demo.watch("command/rec");
    browser.click("#start");
    assert!(
        lines.any(|l| l == "start"),
        "Record publishes start on command/rec"
    );
    let _ = watcher.wait();
    let state_text = || browser.run("return document.getElementById('state').textContent");
    wait_for("the page to say recording", SECS(10), || {
        state_text()
            .as_str()
            .is_some_and(|t| t.contains("recording"))
            .then_some(())
    });
    let recordings = demo.dir.path("recordings");
    let listed = wait_for("segments on disk and in the page's list", SECS(20), || {
        let on_disk = files(&recordings, ".mp4");
        let links = browser.run(
            "return [...document.querySelectorAll('#sessions a')].map(a => a.getAttribute('href'))",
        );
        let listed: Vec<String> = links
            .as_array()?
            .iter()
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect();
        let shown = on_disk.iter().any(|f| {
            let relative = f
                .strip_prefix(&recordings)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            listed.contains(&format!("/recordings/{relative}"))
        });
        shown.then_some(listed)
    });
    // A download link works for the browser (its session) and, locked or
    // not, for curl (with the user, when there is one).
    let link = listed
        .iter()
        .find(|l| l.ends_with(".mp4"))
        .expect("a closed segment listed");
    let status = browser.run(&format!(
        "return fetch({link:?}).then(r => r.arrayBuffer().then(b => [r.status, b.byteLength]))"
    ));
    assert_eq!(status[0], json!(200), "the browser's download of {link}");
    assert!(status[1].as_u64().unwrap() > 1000, "{status}");
    let by_curl = demo.curl(link);
    assert_eq!(by_curl.status, 200, "curl's download of {link}");
    assert_eq!(by_curl.body.len() as u64, status[1].as_u64().unwrap());
    // The latest value of each sensor topic.
    require("mosquitto_pub", "mosquitto-clients");
    let port = demo.broker_port.to_string();
    for value in ["21.0", "21.5"] {
        run_ok(Command::new("mosquitto_pub").args([
            "-p",
            &port,
            "-t",
            "sensor/garden/temp",
            "-m",
            value,
        ]));
    }
    wait_for("the sensor's latest value on the page", SECS(10), || {
        let rows = browser
            .run("return [...document.querySelectorAll('#sensors tr')].map(r => r.textContent)");
        rows.as_array()?
            .iter()
            .any(|r| {
                r.as_str()
                    .is_some_and(|t| t.starts_with("sensor/garden/temp21.5"))
            })
            .then_some(())
    });
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(screenshot);
    std::fs::write(&shot, browser.page_png()).unwrap();
    eprintln!("dashboard screenshot: {}", shot.display());

    browser.click("#stop");
    wait_for("the page to say idle", SECS(10), || {
        (state_text().as_str() == Some("idle")).then_some(())
    });
    assert_eq!(
        browser.run("return document.getElementById('start').disabled"),
        json!(false)
    );
}
