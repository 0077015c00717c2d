use super::*;
use crate::ring::STALE_AFTER;

fn jpeg(i: u8) -> Bytes {
    Bytes::from(vec![0xFF, 0xD8, i])
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_joins_between_keyframes_waits_for_one_without_counting_drops() {
    let hub = Hub::new("cam0");
    // No keyframe held yet: pictures that refer to one not seen.
    hub.publish(Codec::H264, false, jpeg(0));
    let mut reader = hub.add_viewer(8, Protocol::Tcp).unwrap();
    hub.publish(Codec::H264, false, jpeg(1));
    hub.publish(Codec::H264, false, jpeg(2));
    assert!(reader.try_next().is_none(), "no picture it could decode");
    hub.publish(Codec::H264, true, jpeg(3));
    let first = reader.next().await;
    assert!(first.key && first.seq == 3);
    assert_eq!((reader.skipped(), hub.snapshot().dropped), (0, 0));
    assert!(!reader.after_skip() && !reader.is_behind());
}

#[tokio::test(start_paused = true)]
async fn every_reader_gets_every_frame_of_a_burst() {
    let hub = Hub::new("cam0");
    hub.publish(Codec::Mjpeg, true, jpeg(0));
    let mut readers: Vec<Reader> = (0..8)
        .map(|_| hub.add_viewer(8, Protocol::Tcp).unwrap())
        .collect();
    for i in 1..=3 {
        hub.publish(Codec::Mjpeg, true, jpeg(i));
    }
    for reader in &mut readers {
        let mut seqs = Vec::new();
        for _ in 0..4 {
            seqs.push(reader.next().await.seq);
        }
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert!(reader.try_next().is_none());
    }
    assert_eq!(hub.snapshot().dropped, 0);
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_falls_behind_gets_the_newest_and_the_skip_is_counted() {
    let hub = Hub::new("cam0");
    hub.publish(Codec::Mjpeg, true, jpeg(0));
    let mut slow = hub.add_viewer(8, Protocol::Http).unwrap();
    assert_eq!(slow.next().await.seq, 0);
    for i in 1..=5 {
        hub.publish(Codec::Mjpeg, true, jpeg(i));
        tokio::time::advance(STALE_AFTER / 4).await;
    }
    // Frames 1 and 2 are past the limit now: the reader jumps to 5.
    assert_eq!(slow.next().await.seq, 5);
    assert_eq!(slow.skipped(), 4);
    assert_eq!(hub.snapshot().dropped_by, [0, 0, 4]);
    // Behind, it takes the newest of fresh frames too...
    hub.publish(Codec::Mjpeg, true, jpeg(6));
    hub.publish(Codec::Mjpeg, true, jpeg(7));
    assert_eq!(slow.next().await.seq, 7);
    // ...until it finds nothing waiting, a few times in a row...
    for i in 8..7 + CAUGHT_UP_AFTER {
        assert!(slow.try_next().is_none());
        assert!(slow.is_behind());
        hub.publish(Codec::Mjpeg, true, jpeg(i));
        assert_eq!(slow.next().await.seq, u64::from(i));
    }
    assert!(slow.try_next().is_none());
    assert!(!slow.is_behind());
    // ...then every frame again, in order.
    hub.publish(Codec::Mjpeg, true, jpeg(10));
    hub.publish(Codec::Mjpeg, true, jpeg(11));
    assert_eq!(slow.next().await.seq, 10);
    assert_eq!(slow.next().await.seq, 11);
    assert_eq!(slow.skipped(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_reader_wakes_on_the_next_frame() {
    let hub = Hub::new("cam0");
    let mut reader = hub.add_viewer(1, Protocol::Rtsp).unwrap();
    let waiting = tokio::spawn(async move { reader.next().await.seq });
    tokio::task::yield_now().await;
    hub.publish(Codec::Mjpeg, true, jpeg(0));
    assert_eq!(waiting.await.unwrap(), 0);
}

#[test]
fn viewer_slots_are_capped_and_freed() {
    let hub = Hub::new("cam0");
    let a = hub.add_viewer(2, Protocol::Tcp).unwrap();
    let _b = hub.add_viewer(2, Protocol::Http).unwrap();
    assert!(hub.add_viewer(2, Protocol::Rtsp).is_none());
    drop(a);
    assert!(hub.add_viewer(2, Protocol::Rtsp).is_some());
    let figures = hub.snapshot();
    assert_eq!((figures.viewers, figures.viewers_by), (1, [0, 0, 1]));
}

#[test]
fn local_readers_take_no_viewer_slot() {
    let hub = Hub::new("cam0");
    let local = hub.add_local_reader(Protocol::Http);
    let _tcp = hub.add_viewer(1, Protocol::Tcp).unwrap();
    assert!(hub.add_viewer(1, Protocol::Tcp).is_none());
    assert_eq!(hub.snapshot().viewers_by, [1, 0, 1]);
    drop(local);
    let figures = hub.snapshot();
    assert_eq!((figures.viewers, figures.viewers_by), (1, [1, 0, 0]));
}

#[test]
fn enabling_reports_changes_only() {
    let hub = Hub::new("cam0");
    assert!(hub.is_enabled());
    assert!(!hub.set_enabled(true));
    assert!(hub.set_enabled(false));
    assert!(!hub.is_enabled());
}
