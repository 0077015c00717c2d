//! H.264 cameras recorded end to end: real mosquitto, a real camera-node
//! encoding its test pattern as H.264 (a keyframe a second), the real
//! viewer recording 5 s segments; every segment checked with ffprobe and
//! decoded by ffmpeg, and the burned-in frame numbers of all segments read.

mod h264_common;

use std::time::Duration;

use h264_common::*;
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
fn h264_node(broker: &Broker, id: &str) -> Node {
    test_node_with(broker, id, "320x240", &["--codec", "h264"])
}

#[test]
fn an_h264_camera_is_recorded_in_keyframe_cut_gapless_segments_every_frame_once() {
    let broker = Broker::start();
    let _node = h264_node(&broker, "pi-h");
    let recordings = TempDir::new("recordings");
    let mut viewer = Viewer::start(&broker, &recordings.0, &["--segment-seconds", "5"]);
    viewer.wait_log("camera{camera=pi-h/cam0}: connected", SECS(20));
    broker.publish("command/rec", "start");
    wait_for("three closed segments", SECS(40), || {
        (segments_of(&recordings.0, "pi-h").len() >= 3).then_some(())
    });
    broker.publish("command/rec", "stop");
    wait_for("the recorder to close", SECS(20), || {
        viewer.log().contains("recording closed").then_some(())
    });
    assert!(files(&recordings.0, ".part").is_empty(), "no .part left");
    let segments = segments_of(&recordings.0, "pi-h");
    let mut all_numbers = Vec::new();
    let mut previous: Option<Packet> = None;
    for (i, segment) in segments.iter().enumerate() {
        let name = segment.display();
        assert_eq!(codec_name(segment), "h264", "{name}");
        let packets = packets(segment);
        // The last may have begun just before the stop.
        let fewest = if i + 1 < segments.len() { 5 } else { 0 };
        assert!(packets.len() > fewest, "{name}: {} packets", packets.len());
        assert!(packets[0].key, "{name} starts at a keyframe");
        let first = packets[0];
        let last = packets[packets.len() - 1];
        let length = last.at_us + last.duration_us - first.at_us;
        // The first and last segments hold what the session held of theirs.
        if i > 0 && i + 1 < segments.len() {
            assert!(
                (4_000_000..=6_000_000).contains(&length),
                "{name}: {length} µs long"
            );
        }
        // Cut at the first keyframe at or after the 5 s boundary.
        if i > 0 {
            let boundary = first.at_us - first.at_us.rem_euclid(5_000_000);
            assert!(
                first.at_us - boundary < 1_100_000,
                "{name} starts {} µs after its boundary",
                first.at_us - boundary
            );
        }
        // ffprobe gives an H.264 packet the duration its SPS's timing says
        // (100 ms at 10 fps), not the sample's: within one frame. (The
        // recorder's own durations meet exactly: the segmenter's tests.)
        if let Some(prev) = previous {
            let gap = first.at_us - (prev.at_us + prev.duration_us);
            assert!(
                gap.abs() < 100_000,
                "{name}: {gap} µs from the segment before (its last packet {prev:?}, this one's first {:?})",
                &packets[..3.min(packets.len())]
            );
        }
        previous = Some(last);
        let (numbers, errors) = decoded_numbers(segment);
        assert!(errors.trim().is_empty(), "ffmpeg on {name}: {errors}");
        assert_eq!(numbers.len(), packets.len(), "{name}: every packet decodes");
        all_numbers.extend(numbers);
    }
    for pair in all_numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "frame numbers across the segments: {all_numbers:?}"
        );
    }
    let log = viewer.log();
    assert!(!log.contains("ERROR"), "the viewer logged an error:\n{log}");
    viewer.stop();
}
