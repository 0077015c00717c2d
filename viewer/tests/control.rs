//! The viewer's inputs: record commands (live, retained, repeated, wrong),
//! sensor messages as CSV rows, and peers that send nonsense.

use std::io::Write;
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn a_retained_start_is_ignored_and_a_repeated_start_keeps_one_session() {
    let broker = Broker::start();
    let _node = test_node(&broker, "pi-c", "160x120");
    // A start left retained on the broker must not start a fresh viewer.
    broker.publish_retained("command/rec", "start");
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "2"]);
    viewer.wait_log("ignoring a retained command/rec", SECS(20));
    viewer.wait_log("camera{camera=pi-c/cam0}: connected", SECS(20));
    assert_eq!(recording_state(&broker).unwrap().state, "idle");
    broker.publish_retained("command/rec", ""); // clear it

    broker.publish("command/rec", " START\n");
    let first = wait_state(&broker, "recording", |s| {
        s.state == "recording" && s.cameras == 1
    });
    broker.publish("command/rec", "start");
    let again = wait_state(&broker, "a note on the second start", |s| {
        s.note.as_deref().is_some_and(|n| n.contains("already"))
    });
    assert_eq!(
        again.session, first.session,
        "a repeated start keeps the session"
    );
    broker.publish("command/rec", "record please");
    viewer.wait_log(
        "ignoring \"record please\": the command is start or stop",
        SECS(10),
    );
    broker.publish("command/rec", "Stop");
    wait_state(&broker, "idle", |s| s.state == "idle");
    broker.publish("command/rec", "stop");
    wait_state(&broker, "a note on the second stop", |s| {
        s.note.as_deref() == Some("stop ignored: not recording")
    });
    let sessions = std::fs::read_dir(&recordings.0)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name() != "sensors")
        .count();
    assert_eq!(sessions, 1);
}

#[test]
fn sensor_messages_become_csv_rows_in_the_session_and_the_daily_file() {
    let broker = Broker::start();
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    wait_state(&broker, "the viewer to be up", |s| s.state == "idle");
    broker.publish("sensor/garden/temp", "idle-1");
    broker.publish("command/rec", "start");
    let state = wait_state(&broker, "recording", |s| s.state == "recording");
    broker.publish("sensor/garden/temp", "21.5");
    broker.publish("sensor/door/text", "open, then\nclosed");
    let binary = recordings.0.join("payload.bin");
    std::fs::File::create(&binary)
        .unwrap()
        .write_all(b"raw\xff\xfe")
        .unwrap();
    broker.publish_file("sensor/door/raw", &binary);
    let csv_path = recordings
        .0
        .join(state.session.unwrap())
        .join("sensors.csv");
    let rows = wait_for("three rows in the session CSV", SECS(10), || {
        let text = std::fs::read_to_string(&csv_path).ok()?;
        let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect();
        (rows.len() >= 3).then_some(rows)
    });
    assert_eq!((&rows[0][1], &rows[0][2]), ("sensor/garden/temp", "21.5"));
    assert_eq!(&rows[1][2], "open, then\nclosed");
    assert_eq!(&rows[2][2], "raw\u{FFFD}\u{FFFD}");
    assert!(
        rows[0][0].ends_with('Z') && rows[0][0].len() == "2026-11-21T10:00:00.123Z".len(),
        "{}",
        &rows[0][0]
    );
    viewer.wait_log("not UTF-8", SECS(5));
    let daily = files(&recordings.0.join("sensors"), ".csv");
    assert_eq!(daily.len(), 1);
    assert!(std::fs::read_to_string(&daily[0])
        .unwrap()
        .contains("sensor/garden/temp,idle-1"));
}

#[test]
fn garbage_from_a_node_a_huge_length_and_bad_info_are_survived() {
    use std::io::Read;
    let broker = Broker::start();
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &[]);
    wait_state(&broker, "the viewer to be up", |s| s.state == "idle");
    // A "node" that answers with garbage, and one that claims a 1 GiB frame.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let huge = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let info = |id: &str, port: u16| {
        format!(
            r#"{{"v":1,"node_id":"{id}","hostname":"h","version":"0","addresses":["127.0.0.1"],"started_at":"2026-11-21T10:00:00Z","cameras":[{{"id":"cam0","width":16,"height":16,"fps":1,"codec":"mjpeg","tcp":"127.0.0.1:{port}"}}]}}"#
        )
    };
    for (id, listener) in [("bad-a", &garbage), ("bad-b", &huge)] {
        broker.publish_retained(&format!("camfleet/node/{id}/status"), "online");
        broker.publish_retained(
            &format!("camfleet/node/{id}/info"),
            &info(id, listener.local_addr().unwrap().port()),
        );
    }
    let (mut a, _) = garbage.accept().unwrap();
    a.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
    let (mut b, _) = huge.accept().unwrap();
    b.write_all(b"CAMFLEET/1\n").unwrap();
    b.write_all(&[0x40, 0, 0, 0]).unwrap(); // 1 GiB
    b.write_all(&[0; 16]).unwrap();
    viewer.wait_log("did not greet with CAMFLEET/1", SECS(10));
    viewer.wait_log("over the 16777216 byte cap", SECS(10));
    let mut rest = Vec::new();
    let _ = b.read_to_end(&mut rest); // the viewer hangs up
                                      // Nonsense on the node topics is logged, not fatal.
    broker.publish_retained("camfleet/node/bad-c/status", "online");
    broker.publish_retained("camfleet/node/bad-c/info", "{not json");
    viewer.wait_log("ignoring NodeInfo that does not parse", SECS(10));
    broker.publish("command/rec", "start");
    wait_state(&broker, "still answering", |s| s.state == "recording");
    for id in ["bad-a", "bad-b", "bad-c"] {
        broker.publish_retained(&format!("camfleet/node/{id}/status"), "");
        broker.publish_retained(&format!("camfleet/node/{id}/info"), "");
    }
}

#[test]
fn a_bad_config_file_or_flag_names_the_problem() {
    let dir = TempDir::new("viewer-conf");
    let config = dir.path("viewer.toml");
    write(&config, "recordings = '/tmp/x'\nsegment_secs = 5\n");
    let cases: [(Vec<&str>, &str); 3] = [
        (vec!["--config", config.to_str().unwrap()], "segment_secs"),
        (vec!["--segment-seconds", "0"], "segment_seconds"),
        (vec!["--broker", "tcp://h"], "mqtt://"),
    ];
    for (args, needle) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_viewer"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?} should name {needle}: {stderr}"
        );
    }
}
