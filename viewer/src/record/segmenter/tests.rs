use super::*;

fn plan(dir: &Path) -> SegmentPlan {
    SegmentPlan {
        dir: dir.to_owned(),
        segment_us: 2_000_000,
        codec: Codec::Mjpeg,
        size: (16, 16),
    }
}

fn frame(us: u64) -> RecFrame {
    RecFrame {
        captured_at_us: us,
        node_us: us,
        key: true,
        data: Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]),
    }
}

#[test]
fn segments_are_cut_on_boundaries_and_named_for_their_start() {
    let dir = std::env::temp_dir().join(format!("camfleet-seg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = Segmenter::new(plan(&dir));
    // 2026-11-21T10:00:01.5Z, then 10 fps for 4 s.
    let start = 1_795_255_201_500_000u64;
    for i in 0..40 {
        s.push(frame(start + i * 100_000)).unwrap();
    }
    assert_eq!(
        s.current().unwrap().file_name().unwrap(),
        "20261121T100004Z.mp4.part"
    );
    s.finish().unwrap();
    let names: Vec<_> = s
        .closed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "20261121T100001Z.mp4",
            "20261121T100002Z.mp4",
            "20261121T100004Z.mp4"
        ]
    );
    assert!(s.closed.iter().all(|p| p.exists()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_segment_begun_again_within_its_second_is_appended_to_not_overwritten() {
    let dir = std::env::temp_dir().join(format!("camfleet-seg-again-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = 1_795_255_201_100_000u64; // 10:00:01.1
                                          // A camera that reconnects half a second into its segment: the
                                          // segment is closed, and the next one has the same name.
    let mut first = Segmenter::new(plan(&dir));
    for i in 0..5 {
        first.push(frame(start + i * 100_000)).unwrap();
    }
    first.finish().unwrap();
    let done = dir.join("20261121T100001Z.mp4");
    assert_eq!(first.closed, std::slice::from_ref(&done));
    let whole = std::fs::metadata(&done).unwrap().len();
    // A torn fragment after it (a crash in the middle of a write).
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&done)
        .unwrap();
    torn.write_all(&[0, 0, 1, 0, b'm', b'o', b'o', b'f', 1, 2])
        .unwrap();
    drop(torn);
    let mut again = Segmenter::new(plan(&dir));
    again.push(frame(start + 700_000)).unwrap();
    again.push(frame(start + 800_000)).unwrap();
    again.finish().unwrap();
    assert_eq!(again.closed, std::slice::from_ref(&done));
    let len = std::fs::metadata(&done).unwrap().len();
    assert!(len > whole, "the earlier fragment is kept");
    let init = fmp4::init_segment(&SampleEntry::Jpeg {
        width: 16,
        height: 16,
    });
    assert_eq!(
        whole_fragments(&done, &init).unwrap(),
        Some((len, 2)),
        "the torn fragment is gone and numbering goes on"
    );
    // Another picture size cannot be appended to: moved aside.
    let mut other = Segmenter::new(SegmentPlan {
        size: (32, 16),
        ..plan(&dir)
    });
    other.push(frame(start + 850_000)).unwrap();
    other.finish().unwrap();
    let aside = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".aside"))
        .count();
    assert_eq!(aside, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An H.264 access unit in AVCC: a keyframe with an SPS (whose level
/// byte is `level`: another level is another stream) and a PPS, or a
/// P picture.
fn h264(us: u64, key: bool, level: u8) -> RecFrame {
    let sps: &[u8] = &[
        0x67, 0x64, 0x00, level, 0xAC, 0xD9, 0x40, 0x50, 0x05, 0xBB, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xC0, 0xF1, 0x83, 0x19, 0x60,
    ];
    let mut data = Vec::new();
    let nals: Vec<&[u8]> = if key {
        vec![sps, &[0x68, 0xEE, 0x3C, 0x80], &[0x65, 0x88, 0x84]]
    } else {
        vec![&[0x41, 0x9A, 0x02]]
    };
    for nal in nals {
        data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        data.extend_from_slice(nal);
    }
    RecFrame {
        captured_at_us: us,
        node_us: us,
        key,
        data: Bytes::from(data),
    }
}

#[test]
fn h264_segments_start_at_keyframes_after_each_boundary_and_at_new_parameters() {
    let dir = std::env::temp_dir().join(format!("camfleet-seg-h264-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = Segmenter::new(SegmentPlan {
        codec: Codec::H264,
        ..plan(&dir)
    });
    // 10:00:01.55 at 10 fps, a keyframe at .85 of every second; the one
    // at 03.85 has another SPS.
    let start = 1_795_255_201_550_000u64;
    for i in 0..45u64 {
        let key = i % 10 == 3;
        let level = if (23..33).contains(&i) { 0x20 } else { 0x1F };
        s.push(h264(start + i * 100_000, key, level)).unwrap();
    }
    s.finish().unwrap();
    assert_eq!(
        s.before_key, 3,
        "the three frames before the first keyframe"
    );
    let names: Vec<_> = s
        .closed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "20261121T100001Z.mp4", // its first keyframe, 01.85
            "20261121T100002Z.mp4", // the first keyframe after 02.00
            "20261121T100003Z.mp4", // new parameters at 03.85
            "20261121T100004Z.mp4", // the first keyframe after 04.00
        ]
    );
    let mut count = 0;
    let mut end_of_previous = None;
    for (path, frames) in s.closed.iter().zip([10, 10, 10, 12]) {
        let origin = (name_us(path)) as i64;
        let index = crate::playback::index::read(path, origin).unwrap();
        assert!(matches!(index.entry, Some(SampleEntry::Avc(_))));
        assert_eq!(index.samples.len(), frames, "{}", path.display());
        assert!(
            index.samples[0].key,
            "{} starts at a keyframe",
            path.display()
        );
        let keys: Vec<bool> = index.samples.iter().map(|s| s.key).collect();
        let want: Vec<bool> = (0..frames).map(|i| i % 10 == 0).collect();
        assert_eq!(keys, want, "sync samples flagged");
        let first = start + (3 + count) * 100_000;
        assert_eq!(index.samples[0].at_us, first as i64, "named by its second");
        if let Some(end) = end_of_previous {
            assert_eq!(index.samples[0].at_us, end, "gapless");
        }
        let last = index.samples[frames - 1];
        end_of_previous = Some(last.at_us + last.duration_us);
        count += frames as u64;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn name_us(path: &Path) -> u64 {
    let stem = path.file_name().unwrap().to_string_lossy();
    let t = chrono::NaiveDateTime::parse_from_str(&stem[..16], "%Y%m%dT%H%M%SZ").unwrap();
    t.and_utc().timestamp_micros() as u64
}

#[test]
fn a_run_after_a_crash_closes_what_it_left_open_and_writes_no_frame_twice() {
    let dir = std::env::temp_dir().join(format!("camfleet-seg-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = 1_795_255_201_100_000u64; // 10:00:01.1
    let mut crashed = Segmenter::new(plan(&dir));
    for i in 0..25 {
        crashed.push(frame(start + i * 100_000)).unwrap();
    }
    // Killed: its segment stays a .part, with a torn fragment at the end.
    let part = crashed.current().unwrap().to_owned();
    std::mem::forget(crashed);
    let whole = std::fs::metadata(&part).unwrap().len();
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&part)
        .unwrap();
    torn.write_all(&[0, 0, 1, 0, b'm', b'o', b'o', b'f'])
        .unwrap();
    drop(torn);
    // Its last whole fragment ends at 2.9 s; the next run is sent the
    // frames from 2.6 s on.
    let mut next = Segmenter::new(plan(&dir));
    for i in 15..40 {
        next.push(frame(start + i * 100_000)).unwrap();
    }
    next.finish().unwrap();
    let closed = part.with_extension("");
    assert!(
        !part.exists() && closed.exists(),
        "the crash's .part is closed"
    );
    assert_eq!(
        std::fs::metadata(&closed).unwrap().len(),
        whole,
        "cut after its last whole fragment"
    );
    let on_disk: Vec<i64> = samples_on_disk(&dir)
        .into_iter()
        .flat_map(|(_, s)| s)
        .collect();
    let mut unique = on_disk.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), on_disk.len(), "no frame twice: {on_disk:?}");
    assert_eq!(next.repeats, 4, "2.6 to 2.9 s were not written again");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durations_do_not_drift_and_survive_a_clock_step_back() {
    // 30 fps in µs is not a whole number of ticks apart; the sum of
    // durations must still equal the span.
    let origin = 0;
    let times: Vec<u64> = (0..31).map(|i| i * 1_000_000 / 30).collect();
    let total: u64 = times
        .windows(2)
        .map(|w| u64::from(duration_between(w[0], w[1], origin)))
        .sum();
    assert_eq!(total, fmp4::ticks(1_000_000));
    assert_eq!(duration_between(5_000, 4_000, 0), 1);
}

/// Every sample time in `dir`'s segments, per segment.
fn samples_on_disk(dir: &Path) -> Vec<(String, Vec<i64>)> {
    let mut segments: Vec<(String, Vec<i64>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            let origin = name_us(&e.path()) as i64;
            let samples = crate::playback::index::read(&e.path(), origin)
                .unwrap()
                .samples;
            (name, samples.iter().map(|s| s.at_us).collect())
        })
        .collect();
    segments.sort();
    segments
}

#[test]
fn a_segment_killed_before_its_first_fragment_is_removed_and_hides_no_frame() {
    let dir = std::env::temp_dir().join(format!("camfleet-seg-empty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = 1_795_255_201_100_000u64; // 10:00:01.1
    let mut crashed = Segmenter::new(plan(&dir));
    for i in 0..11 {
        crashed.push(frame(start + i * 100_000)).unwrap();
    }
    // Killed 0.1 s into the segment of 10:00:02: it holds its header only.
    let empty = crashed.current().unwrap().to_owned();
    std::mem::forget(crashed);
    assert_eq!(empty.file_name().unwrap(), "20261121T100002Z.mp4.part");

    // The next run is sent the frames from 1.8 s on.
    let mut next = Segmenter::new(plan(&dir));
    for i in 7..30 {
        next.push(frame(start + i * 100_000)).unwrap();
    }
    next.finish().unwrap();
    let segments = samples_on_disk(&dir);
    assert!(
        segments.iter().all(|(_, s)| !s.is_empty()),
        "a segment without a frame: {segments:?}"
    );
    let all: Vec<i64> = segments.iter().flat_map(|(_, s)| s.clone()).collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "no frame twice: {segments:?}");
    assert_eq!(all.len(), 30, "every frame from 1.1 s to 4.0 s once");
    assert_eq!(next.repeats, 2, "1.8 and 1.9 s were not written again");
    std::fs::remove_dir_all(&dir).unwrap();
}
