//! What a camera link does with each frame it reads, whichever connection
//! brought it: count it (and the frames no parent sent), hand it once to the
//! camera's live hub, follow the recording session (start, switch, stop
//! before this frame), and record it once, placed on the fleet's timeline.
//! An H.264 frame is recorded only where a decoder can reach it: after the
//! frame before it, or as a keyframe (after a connect or a gap, the frames
//! before the next keyframe are counted, not written).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use shared::frame::{Codec, Frame};
use shared::messages::CameraInfo;
use tokio::sync::watch;

use crate::record::recorder::{Events, RecordEvent, Recorder};
use crate::record::segmenter::{RecFrame, SegmentPlan};
use crate::record::session::Session;

use super::live::LiveCamera;
use super::stats::{CameraCounters, Counters, RepeatFilter};
use super::timeline::Timeline;

/// A sequence number this far below the newest one is a restarted node.
const MISSED_RESET: u64 = 1000;

/// A recorder, and this camera's turn to write.
type Writing = (Recorder, tokio::sync::OwnedMutexGuard<()>);

/// Where one camera's recordings go.
#[derive(Debug, Clone)]
pub struct RecordTo {
    /// `node/camera`, for logs and the writer thread's name.
    pub label: String,
    pub node_id: String,
    pub camera: CameraInfo,
    pub segment: Duration,
    pub session: watch::Receiver<Option<Session>>,
    pub events: Events,
}

/// The per-frame work of one camera, kept across its connections.
pub struct Delivery {
    to: RecordTo,
    counters: Arc<CameraCounters>,
    all: Arc<Counters>,
    live: Arc<LiveCamera>,
    /// Frames handed to the live hub: each once, across parent switches.
    passed: RepeatFilter,
    timeline: Timeline,
    /// The newest sequence number received over any connection.
    newest_seq: Option<u64>,
    recorder: Option<(Session, Writing)>,
    /// Frames in a row not recorded again because they already were.
    repeats: u64,
    /// The sequence number of the last frame the recorder was given, since
    /// it started: an H.264 frame that does not follow it must be a keyframe.
    last_recorded: Option<u64>,
    /// H.264 frames in a row not recorded for want of a keyframe.
    before_key: u64,
    /// No frame yet on the current connection.
    first: bool,
}

impl Delivery {
    pub fn new(
        to: RecordTo,
        counters: Arc<CameraCounters>,
        all: Arc<Counters>,
        live: Arc<LiveCamera>,
        timeline: Timeline,
    ) -> Self {
        Delivery {
            to,
            counters,
            all,
            live,
            passed: RepeatFilter::default(),
            timeline,
            newest_seq: None,
            recorder: None,
            repeats: 0,
            last_recorded: None,
            before_key: 0,
            first: true,
        }
    }

    /// A new connection: its first frame is logged.
    pub fn connected(&mut self) {
        self.first = true;
    }

    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// One frame read: counted, passed on, recorded while a session is on.
    pub async fn on_frame(&mut self, frame: Frame) -> Result<()> {
        let stats = &self.counters.link;
        stats.frames.fetch_add(1, Ordering::Relaxed);
        if std::mem::take(&mut self.first) {
            tracing::info!(seq = frame.seq, bytes = frame.data.len(), "first frame");
        }
        // Gaps count across reconnects and relay switches too: a frame
        // not received from any parent is missed.
        if let Some(last) = self.newest_seq {
            stats
                .missed
                .fetch_add(frame.seq.saturating_sub(last + 1), Ordering::Relaxed);
        }
        // A restarted node counts from 0 again.
        if self
            .newest_seq
            .is_none_or(|n| frame.seq > n || n - frame.seq > MISSED_RESET)
        {
            self.newest_seq = Some(frame.seq);
        }
        if self.passed.admit(frame.seq, frame.captured_at_us) {
            self.live.publish(frame.clone());
        }
        self.follow_session(&frame).await?;
        self.record(frame).await;
        Ok(())
    }

    /// Starts, switches or stops the recorder before a frame, as the
    /// session says.
    async fn follow_session(&mut self, frame: &Frame) -> Result<()> {
        let wanted = self.to.session.borrow_and_update().clone();
        if self.recorder.as_ref().map(|(s, _)| s) == wanted.as_ref() {
            return Ok(());
        }
        self.stop_recorder().await;
        if let Some(session) = wanted {
            match self.start_recorder(&session, frame).await {
                Ok(r) => {
                    self.recorder = Some((session, r));
                    self.last_recorded = None;
                }
                Err(e) => bail!("cannot start recording: {e}"),
            }
        }
        self.live.set_recording(self.recorder.is_some());
        Ok(())
    }

    /// Writes a frame once, while recording.
    async fn record(&mut self, frame: Frame) {
        let Some((_, (recorder, _))) = &self.recorder else {
            return;
        };
        if !self
            .counters
            .recorded
            .admit(frame.seq, frame.captured_at_us)
        {
            if self.repeats == 0 {
                tracing::info!(
                    seq = frame.seq,
                    captured_at_us = frame.captured_at_us,
                    "frame already recorded (sent again after a reconnect): not writing it twice"
                );
            }
            self.repeats += 1;
            return;
        }
        if self.repeats > 1 {
            tracing::info!(
                "{} frames already recorded were not written twice",
                self.repeats
            );
        }
        self.repeats = 0;
        let follows = self.last_recorded.is_some_and(|l| frame.seq == l + 1);
        if frame.codec == Codec::H264 && !frame.key && !follows {
            self.counters.before_key.fetch_add(1, Ordering::Relaxed);
            self.last_recorded = None;
            if self.before_key == 0 {
                tracing::info!(
                    seq = frame.seq,
                    "H.264: not recording up to the next keyframe (the frames before this one were not received, so these cannot be decoded)"
                );
            }
            self.before_key += 1;
            return;
        }
        if std::mem::take(&mut self.before_key) > 0 {
            tracing::info!(seq = frame.seq, "H.264: recording again from this keyframe");
        }
        self.last_recorded = Some(frame.seq);
        recorder
            .record(RecFrame {
                captured_at_us: self.timeline.place(frame.captured_at_us).await,
                node_us: frame.captured_at_us,
                key: frame.key,
                data: frame.data,
            })
            .await;
    }

    /// Starts recording once no other task of this camera writes (one that
    /// the supervisor replaced may still be closing its segment, which the
    /// new one may append to).
    async fn start_recorder(&self, session: &Session, frame: &Frame) -> std::io::Result<Writing> {
        let turn = Arc::clone(&self.counters.writer).lock_owned().await;
        let camera = &self.to.camera;
        let size = match frame.codec {
            Codec::Mjpeg => shared::jpeg::dimensions(&frame.data),
            Codec::H264 => None,
        };
        let plan = SegmentPlan {
            dir: session.dir.join(&self.to.node_id).join(&camera.id),
            segment_us: self.to.segment.as_micros() as u64,
            codec: frame.codec,
            size: size.unwrap_or((camera.width as u16, camera.height as u16)),
        };
        let recorder = Recorder::start(
            plan,
            self.to.label.clone(),
            self.to.events.clone(),
            Arc::clone(&self.counters.written),
        )?;
        self.all.recording.fetch_add(1, Ordering::Relaxed);
        self.to.events.send(RecordEvent::Started {
            camera: self.to.label.clone(),
        });
        Ok((recorder, turn))
    }

    /// Closes the open segment, if any, and waits for it.
    pub async fn stop_recorder(&mut self) {
        if let Some((_, (recorder, turn))) = self.recorder.take() {
            recorder.stop().await;
            drop(turn);
            self.all.recording.fetch_sub(1, Ordering::Relaxed);
            self.live.set_recording(false);
            self.to.events.send(RecordEvent::Stopped {
                camera: self.to.label.clone(),
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::link::clock::NodeClock;
    use crate::link::live::Live;
    use bytes::Bytes;
    use fanout::Protocol;
    use tokio_util::sync::CancellationToken;

    fn camera() -> CameraInfo {
        serde_json::from_value(serde_json::json!({
            "id": "cam0", "width": 160, "height": 120, "fps": 10, "codec": "mjpeg",
            "tcp": "127.0.0.1:1", "rtsp": null, "http": null
        }))
        .unwrap()
    }

    fn frame(seq: u64, captured_at_us: u64) -> Frame {
        Frame {
            seq,
            captured_at_us,
            read_at: tokio::time::Instant::now(),
            codec: fanout::Codec::Mjpeg,
            key: true,
            data: Bytes::from_static(b"\xFF\xD8 a frame \xFF\xD9"),
        }
    }

    pub(crate) struct Rig {
        pub(crate) delivery: Delivery,
        live: Arc<LiveCamera>,
        pub(crate) counters: Arc<CameraCounters>,
        session: watch::Sender<Option<Session>>,
        events: tokio::sync::mpsc::Receiver<RecordEvent>,
        dir: std::path::PathBuf,
    }

    /// A delivery of camera `pi/cam0` that records nowhere until a session
    /// is set (for the link's tests too).
    pub(crate) fn rig(name: &str) -> Rig {
        let dir =
            std::env::temp_dir().join(format!("camfleet-delivery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (session, session_rx) = watch::channel(None);
        let (events_tx, events) = Events::channel();
        let all = Arc::new(Counters::default());
        let counters = all.camera("pi/cam0");
        let live = Live::new(CancellationToken::new()).open("pi/cam0");
        let to = RecordTo {
            label: "pi/cam0".into(),
            node_id: "pi".into(),
            camera: camera(),
            segment: Duration::from_secs(60),
            session: session_rx,
            events: events_tx,
        };
        let timeline = Timeline::new(NodeClock::new("pi", None));
        let delivery = Delivery::new(to, Arc::clone(&counters), all, Arc::clone(&live), timeline);
        Rig {
            delivery,
            live,
            counters,
            session,
            events,
            dir,
        }
    }

    #[tokio::test]
    async fn frames_are_counted_passed_on_once_and_gaps_missed() {
        let mut r = rig("pass");
        let mut reader = r.live.hub.add_local_reader(Protocol::Tcp);
        let t = 1_800_000_000_000_000u64;
        for (seq, at) in [(10, t), (11, t + 100), (11, t + 100), (14, t + 400)] {
            r.delivery.on_frame(frame(seq, at)).await.unwrap();
        }
        let stats = &r.counters.link;
        assert_eq!(stats.frames.load(Ordering::Relaxed), 4);
        assert_eq!(stats.missed.load(Ordering::Relaxed), 2, "12 and 13");
        let mut got = Vec::new();
        while let Some(f) = reader.try_next() {
            got.push(f.seq);
        }
        assert_eq!(got, [10, 11, 14], "the repeat of 11 is passed on once");
        assert!(!r.delivery.is_recording());
        assert!(r.events.try_recv().is_err(), "nothing recorded while idle");
    }

    #[tokio::test]
    async fn a_session_records_each_frame_once_in_timeline_order() {
        let mut r = rig("record");
        let t = 1_800_000_000_000_000u64;
        r.delivery.on_frame(frame(1, t)).await.unwrap();
        r.session
            .send_replace(Some(Session::named(&r.dir, "20261201T000000Z")));
        for (seq, at) in [(2, t + 100_000), (3, t + 200_000), (3, t + 200_000)] {
            r.delivery.on_frame(frame(seq, at)).await.unwrap();
        }
        assert!(r.delivery.is_recording());
        assert!(r.live.is_recording(), "the REC badge follows");
        r.session.send_replace(None);
        r.delivery.on_frame(frame(4, t + 300_000)).await.unwrap();
        assert!(!r.delivery.is_recording());
        assert!(!r.live.is_recording());
        assert_eq!(r.counters.recorded.duplicates.load(Ordering::Relaxed), 1);
        let mut events = Vec::new();
        while let Ok(e) = r.events.try_recv() {
            events.push(e);
        }
        let camera = "pi/cam0".to_string();
        assert_eq!(
            events.first(),
            Some(&RecordEvent::Started {
                camera: camera.clone()
            })
        );
        assert_eq!(events.last(), Some(&RecordEvent::Stopped { camera }));
        let segments: Vec<_> = std::fs::read_dir(r.dir.join("20261201T000000Z/pi/cam0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(segments.len(), 1, "{segments:?}");
        let file = r.dir.join("20261201T000000Z/pi/cam0").join(&segments[0]);
        let index = crate::playback::index::read(&file, 0).unwrap();
        assert_eq!(index.samples.len(), 2, "frames 2 and 3, once each");
        let _ = std::fs::remove_dir_all(&r.dir);
    }
}
