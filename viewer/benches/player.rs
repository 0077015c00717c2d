//! The player, measured in a browser: a session of CAMERAS test cameras
//! at WIDTHxHEIGHT and FPS is recorded by the real viewer from real test
//! nodes, then played at 1x in headless Chromium for SECONDS; the figure
//! is the frames the page put on screen per second against the cameras'
//! rate (every camera's every frame: CAMERAS x FPS), and how far the
//! player's clock moved against the wall clock.
//!
//! cargo bench -p viewer --bench player -- [CAMERAS] [WIDTHxHEIGHT] [FPS] [SECONDS]
//!
//! Needs mosquitto, ffmpeg, chromium and chromium-driver (scripts/install-deps.sh).

use std::time::{Duration, Instant};

use testkit::browser::Browser;
use testkit::viewers::*;
use testkit::*;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cameras: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(4);
    let size = args.get(1).cloned().unwrap_or_else(|| "1920x1080".into());
    let fps: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(15);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(30);
    let (width, height) = size.split_once('x').expect("a size like 1920x1080");

    let broker = Broker::start();
    let url = broker.url();
    let ids: Vec<String> = (0..cameras).map(|i| format!("pi-bench{i}")).collect();
    let fps_text = fps.to_string();
    let nodes: Vec<Node> = ids
        .iter()
        .map(|id| {
            Node::start(
                &[
                    node_args(&url, id, "test"),
                    vec!["--width", width, "--height", height, "--fps", &fps_text],
                ]
                .concat(),
            )
        })
        .collect();
    let recordings = TempDir::new("player-bench");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    for id in &ids {
        viewer.wait_log(
            &format!("camera{{camera={id}/cam0}}: connected"),
            Duration::from_secs(30),
        );
    }
    let length = Duration::from_secs(seconds + 10);
    eprintln!("recording {cameras} cameras at {size} {fps} fps for {length:?}");
    broker.publish("command/rec", "start");
    let started = Instant::now();
    wait_for(
        "the session's length",
        length + Duration::from_secs(5),
        || (started.elapsed() >= length).then_some(()),
    );
    broker.publish("command/rec", "stop");
    wait_for("the recorders to close", Duration::from_secs(30), || {
        (viewer.log().matches("recording closed").count() == cameras).then_some(())
    });
    // The cameras go: the browser and the viewer have the machine to
    // themselves while playing.
    drop(nodes);
    let session = std::fs::read_dir(&recordings.0)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("a session folder")
        .file_name()
        .into_string()
        .unwrap();

    let browser = Browser::start();
    browser.go(&format!("http://{}/sessions/{session}", viewer.dashboard()));
    wait_for("the session to load", Duration::from_secs(30), || {
        let loaded = browser.run("return player.cameras.length");
        (loaded.as_u64()? == cameras as u64).then_some(())
    });
    // One second in, where every camera has begun.
    browser.run("seek(player.start + 1e6)");
    wait_for(
        "every camera's first picture",
        Duration::from_secs(30),
        || {
            let shown = browser.run("return player.cameras.filter(c => c.shownAt !== null).length");
            (shown.as_u64()? == cameras as u64).then_some(())
        },
    );
    let state = || {
        let v = browser.run("return [player.t, player.shown]");
        (v[0].as_f64().unwrap(), v[1].as_u64().unwrap())
    };
    browser.click("#play");
    let (t0, shown0) = state();
    let wall = Instant::now();
    let measure = Duration::from_secs(seconds);
    wait_for(
        "the measured playback",
        measure + Duration::from_secs(5),
        || (wall.elapsed() >= measure).then_some(()),
    );
    let (t1, shown1) = state();
    let elapsed = wall.elapsed().as_secs_f64();
    let rate = (shown1 - shown0) as f64 / elapsed;
    let want = cameras as f64 * f64::from(fps);
    // The frames recorded in the span played (a loaded machine records a
    // little under the cameras' rate): what the player could have shown.
    let recorded = files(&recordings.0, ".mp4")
        .iter()
        .flat_map(|segment| samples(segment))
        .filter(|(at, _)| (*at as f64) >= t0 && (*at as f64) < t1)
        .count();
    let shown = shown1 - shown0;
    println!(
        "player: {cameras} cameras {size} at {fps} fps, 1x for {elapsed:.1} s: {rate:.1} frames shown/s \
         against the cameras' {want:.0} ({:.1}%); {shown} of the {recorded} frames recorded in the span \
         ({:.1}%); player clock {:.3}x wall",
        rate * 100.0 / want,
        shown as f64 * 100.0 / recorded.max(1) as f64,
        (t1 - t0) / 1e6 / elapsed
    );
    assert!(shown1 > shown0, "the player showed no frame");
}
