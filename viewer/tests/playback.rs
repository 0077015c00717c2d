//! Looking back at a session: the dashboard serves the JPEG a camera showed
//! at an instant straight from the recorded segments. Checked against
//! ffprobe's own reading of the files: for instants just before, at and
//! after a segment boundary the served bytes are the sample whose interval
//! holds the instant; a `.part` being written is served up to its last
//! fragment; bad names and times are refused. The session player in
//! Chromium plays, steps and seeks with the sensors beneath. (Exports:
//! export.rs.)

use std::path::Path;
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

mod playback_common;

use playback_common::*;

#[test]
fn frames_at_instants_are_the_recorded_samples_across_a_segment_boundary_and_in_a_part() {
    require("curl", "curl");
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-play", "320x240");
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "3"]);
    let dashboard = viewer.dashboard();
    viewer.wait_log("camera{camera=pi-play/cam0}: connected", SECS(20));
    broker.publish("command/rec", "start");
    let closed = wait_for("two closed segments", SECS(30), || {
        let closed = camera_segments(&recordings.0, ".mp4");
        (closed.len() >= 2).then_some(closed)
    });
    let camera_path = camera_path(&recordings.0, &closed[0]);

    // The open segment, served while it is written. ffprobe may read a
    // fragment being appended (its last packets torn); one second behind
    // the newest sample lies in a whole fragment (written every second).
    let (part, part_samples) = wait_for("an open segment with 1.3 s in it", SECS(20), || {
        let part = camera_segments(&recordings.0, ".mp4.part")
            .into_iter()
            .next()?;
        let samples: Vec<Probed> = probe(&part)
            .into_iter()
            .filter(|s| s.md5 != "N/A")
            .collect();
        let span = samples.last()?.at_us - samples.first()?.at_us;
        (span >= 1_300_000).then_some((part, samples))
    });
    let at_us = part_samples.last().unwrap().at_us - 1_200_000;
    let want = expected(&part_samples, at_us);
    let (status, body, time) = frame_at(&dashboard, &camera_path, at_us);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        md5(&body),
        want.md5,
        "a sample of the open {}",
        part.display()
    );
    assert_eq!(time.as_deref(), Some(rfc3339(want.at_us).as_str()));

    broker.publish("command/rec", "stop");
    wait_for("the recorder to close", SECS(20), || {
        viewer.log().contains("recording closed").then_some(())
    });
    let (a, b) = (&closed[0], &closed[1]);
    let mut samples = probe(a);
    let first_of_b = probe(b);
    let boundary = first_of_b[0].at_us;
    samples.extend(first_of_b);
    let before = boundary - 1_000;
    let mut numbers = Vec::new();
    for (what, at_us) in [
        ("just before the boundary", before),
        ("at the boundary", boundary),
        ("just after the boundary", boundary + 1_000),
        ("at the second segment's named start", origin_us(b)),
        (
            "in the first segment",
            (samples[1].at_us + samples[2].at_us) / 2,
        ),
    ] {
        let want = expected(&samples, at_us);
        let (status, body, time) = frame_at(&dashboard, &camera_path, at_us);
        assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
        assert_eq!(md5(&body), want.md5, "{what} ({at_us})");
        assert_eq!(
            time.as_deref(),
            Some(rfc3339(want.at_us).as_str()),
            "{what}"
        );
        // The frame number the test pattern burned in: the same in the
        // served JPEG as in the frame ffmpeg decodes when asked for that
        // sample's time in its segment (`-ss`, a tenth of a millisecond
        // early: ffmpeg starts at the first frame at or after it).
        let served = frame_number(&body);
        // ffmpeg's -ss counts from the file's first timestamp.
        let segment = if want.at_us < boundary { a } else { b };
        let start = probe(segment)[0].at_us;
        let by_ffmpeg = frame_number_by_ffmpeg(segment, want.at_us - start - 100);
        assert_eq!(served, by_ffmpeg, "{what}: frame numbers");
        numbers.push(served);
    }
    assert_eq!(
        numbers[0] + 1,
        numbers[1],
        "the frames either side of the boundary follow each other (none lost, none twice)"
    );
    let last_sample_of_a = &probe(a)[probe(a).len() - 1];
    assert_eq!(
        expected(&samples, before).md5,
        last_sample_of_a.md5,
        "just before the boundary is the first segment's last sample"
    );

    // Before the first frame: nothing covers it, and the reply says where
    // the camera's first frame begins (a player goes on from there).
    let (status, _, head) = frame_reply(&dashboard, &camera_path, samples[0].at_us - 5_000_000);
    assert_eq!(status, 404);
    assert_eq!(
        header_of(&head, "x-next-frame").as_deref(),
        Some(rfc3339(samples[0].at_us).as_str()),
        "{head}"
    );
    // Bad names and times.
    let session = camera_path.split('/').next().unwrap();
    let base = format!("http://{dashboard}/api/sessions");
    for (path, want) in [
        (
            format!("{session}/pi-play/cam0/frame.jpg?at=yesterday"),
            400,
        ),
        (format!("{session}/pi-play/cam0/frame.jpg"), 400),
        (
            format!("{session}/%2e%2e/cam0/frame.jpg?at=2026-01-01T00:00:00Z"),
            400,
        ),
        (
            format!("{session}/pi-play/nocam/frame.jpg?at=2026-01-01T00:00:00Z"),
            404,
        ),
        (
            "19990101T000000Z/pi-play/cam0/frame.jpg?at=2026-01-01T00:00:00Z".to_owned(),
            404,
        ),
    ] {
        let reply = curl(&["--path-as-is", &format!("{base}/{path}")]);
        assert_eq!(reply.status, want, "{path}: {}", reply.text());
    }
}

#[test]
fn the_player_in_chromium_plays_steps_and_seeks_with_the_sensors_beneath() {
    use serde_json::json;
    use testkit::browser::Browser;
    let TwoNodes {
        broker,
        a: _a,
        b: _b,
        recordings,
        viewer,
    } = TwoNodes::start();
    let dashboard = viewer.dashboard();
    broker.publish("command/rec", "start");
    wait_for("recording", SECS(10), || {
        (!files(&recordings.0, ".mp4.part").is_empty()).then_some(())
    });
    for (i, value) in ["21.0", "21.5", "door open", "22.5"].iter().enumerate() {
        broker.publish("sensor/garden/temp", value);
        wait_for("the sensor row in the session", SECS(10), || {
            let csv = files(&recordings.0, "sensors.csv").into_iter().next()?;
            let text = std::fs::read_to_string(csv).ok()?;
            (text.matches("sensor/garden/temp").count() > i).then_some(())
        });
        wait_for("a segment more", SECS(10), || {
            (files(&recordings.0, ".mp4").len() >= 2 * (i + 1)).then_some(())
        });
    }
    broker.publish("command/rec", "stop");
    wait_for("the recorders to close", SECS(20), || {
        (viewer.log().matches("recording closed").count() == 2).then_some(())
    });
    let session = std::fs::read_dir(&recordings.0)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();

    let browser = Browser::start();
    browser.go(&format!("http://{dashboard}/sessions/{session}"));
    // At the session's first instant only the camera that began first has
    // a frame (the other began a few ms later: the player shows that as no
    // recording, not a wrong picture).
    let sizes = || {
        browser.run(
            "return [...document.querySelectorAll('figure img')].map(i => i.complete ? [i.naturalWidth, i.naturalHeight] : null)",
        )
    };
    wait_for("the first camera's picture", SECS(20), || {
        let now = sizes();
        (now[0] == json!([320, 240]) || now[1] == json!([160, 120])).then_some(())
    });
    let names =
        browser.run("return [...document.querySelectorAll('figure')].map(f => f.dataset.camera)");
    assert_eq!(names, json!(["pi-a/cam0", "pi-b/cam0"]));
    let state = || browser.run("return [player.t, player.shown, player.playing]");
    let before = state();
    let picture = browser.element_png("figure img");
    browser.click("#play");
    wait_for("the pictures to play", SECS(15), || {
        let now = state();
        let moved = now[0].as_f64()? - before[0].as_f64()? > 1.0e6;
        let shown = now[1].as_u64()? >= before[1].as_u64()? + 10;
        (moved && shown).then_some(())
    });
    assert_ne!(
        browser.element_png("figure img"),
        picture,
        "the picture changed"
    );
    browser.click("#play");
    assert_eq!(state()[2], json!(false), "paused");

    // The sensor beneath: three numbers as a line, the text as an event.
    // (The nodes' health rows are series of their own: `health/<node>/...`.)
    let series = browser.run(
        "return player.series.filter(s => s.topic.startsWith('sensor/')).map(s => [s.topic, s.points.map(p => p[1])])",
    );
    assert_eq!(series, json!([["sensor/garden/temp", [21, 21.5, 22.5]]]));
    let events = browser.run("return player.events.map(e => e.text)");
    assert_eq!(events, json!(["door open"]));

    // A click on the plot, a quarter of the way along: the pictures go there.
    let target = browser
        .run("return player.start + (player.end - player.start) * 0.25")
        .as_f64()
        .unwrap();
    let width = browser
        .run("return document.getElementById('plot').clientWidth")
        .as_i64()
        .unwrap();
    browser.click_at("#plot", -width / 4);
    wait_for("both pictures at the clicked time", SECS(10), || {
        let at = browser.run("return [player.t, ...player.cameras.map(c => c.shownAt)]");
        let t = at[0].as_f64()?;
        let near = (t - target).abs() < 20_000.0;
        let frames = at.as_array()?[1..]
            .iter()
            .all(|s| s.as_f64().is_some_and(|f| f <= t && t - f < 200_000.0));
        (near && frames).then_some(())
    });
    // The time is in the URL, to share: opened again, it starts there.
    // (Paused, the time stands still; the page writes it into the URL.)
    let (url, at_url) = wait_for("the time in the URL", SECS(5), || {
        let got = browser.run(
            "return location.hash === '#t=' + iso(player.t) ? [location.href, player.t] : null",
        );
        Some((got[0].as_str()?.to_owned(), got[1].as_f64()?))
    });
    browser.go("about:blank");
    browser.go(&url);
    wait_for("the player back at the URL's time", SECS(10), || {
        let t = browser
            .run("return player.end ? player.t : null")
            .as_f64()?;
        ((t - at_url).abs() < 600_000.0).then_some(())
    });
    // A frame forward (→): to the next frame of whichever camera has one
    // first; that camera's picture moves on, none goes back.
    let shown = || {
        let v = browser.run("return [player.t, ...player.cameras.map(c => c.shownAt)]");
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap_or(0.0))
            .collect::<Vec<f64>>()
    };
    let before = wait_for("both pictures shown after the reload", SECS(10), || {
        let now = shown();
        now[1..].iter().all(|s| *s > 0.0).then_some(now)
    });
    browser.click("#step");
    wait_for("the next frame", SECS(10), || {
        let now = shown();
        let stepped = now[0] > before[0] && now[0] - before[0] < 200_000.0;
        let moved = now[1..].iter().zip(&before[1..]).any(|(n, b)| n > b);
        let none_back = now[1..].iter().zip(&before[1..]).all(|(n, b)| n >= b);
        (stepped && moved && none_back).then_some(())
    });
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("player.png");
    std::fs::write(&shot, browser.page_png()).unwrap();
    eprintln!("player screenshot: {}", shot.display());
}
