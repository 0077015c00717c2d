//! The live side of every camera the viewer receives: one
//! [`fanout::Hub`] per camera, fed by the camera's link, read by the
//! dashboard's streams, the relay server, the OpenCV display and the Home
//! Assistant snapshots, with the node's fan-out rules (each reader has its
//! own cursor; a slow one skips to the newest frame; nothing else waits).
//! The recorder is not a reader: it has a lossless path of its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fanout::snapshot::Snapshot;
use fanout::{Codec, Frame, Hub};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Weight of the newest frame interval in the smoothed frame rate.
const FPS_SMOOTHING: f64 = 0.1;

/// One camera's hub and what its tile shows beside the picture.
#[derive(Debug)]
pub struct LiveCamera {
    pub hub: Arc<Hub>,
    recording: AtomicBool,
    /// The last frame's arrival and the smoothed frames per second.
    rate: Mutex<Option<(Instant, f64)>>,
    /// Cancelled when the camera goes (its node left) or the viewer stops:
    /// its readers end.
    pub gone: CancellationToken,
    /// An H.264 camera's newest picture, decoded for snapshots.
    snapshot: Snapshot,
}

/// A camera's newest frame as a tile shows it.
#[derive(Debug, Clone)]
pub struct Tile {
    pub seq: u64,
    pub codec: Codec,
    /// The JPEG, or the H.264 access unit.
    pub data: Bytes,
    /// When the frame arrived.
    pub at: Instant,
    /// Smoothed frames per second.
    pub fps: f64,
    pub recording: bool,
}

impl LiveCamera {
    /// Hands a frame (already let through the link's repeat filter) to
    /// every reader. Never waits.
    pub fn publish(&self, frame: Frame) {
        {
            let mut rate = self.rate.lock().expect("rate lock");
            let fps = match *rate {
                Some((at, fps)) => {
                    let now = frame.read_at.saturating_duration_since(at);
                    let instant = 1.0 / now.as_secs_f64().max(1e-3);
                    // Smoothed, starting from the first interval rather than 0.
                    if fps == 0.0 {
                        instant
                    } else {
                        fps * (1.0 - FPS_SMOOTHING) + instant * FPS_SMOOTHING
                    }
                }
                None => 0.0,
            };
            *rate = Some((frame.read_at, fps));
        }
        self.hub.forward(frame);
    }

    /// Whether the camera's segments are being written (the REC badge).
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    pub fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// The smoothed frame rate (0 before the second frame).
    pub fn fps(&self) -> f64 {
        self.rate.lock().expect("rate lock").map_or(0.0, |(_, f)| f)
    }

    /// The newest picture as a JPEG: an MJPEG camera's newest frame, an
    /// H.264 camera's decoded from its newest keyframe group (one decode at
    /// a time, kept for a moment: `fanout::snapshot`).
    pub async fn picture(&self) -> anyhow::Result<Bytes> {
        let Some(latest) = self.hub.latest() else {
            anyhow::bail!("no frame yet");
        };
        match latest.codec {
            Codec::Mjpeg => Ok(latest.data),
            Codec::H264 => self.snapshot.jpeg(&self.hub).await,
        }
    }

    /// Whether a picture is being decoded now (a snapshot asked for then
    /// would wait for it).
    pub fn is_decoding(&self) -> bool {
        self.snapshot.is_busy()
    }

    /// The newest frame, or `None` before the first.
    pub fn tile(&self) -> Option<Tile> {
        let frame = self.hub.latest()?;
        Some(Tile {
            seq: frame.seq,
            codec: frame.codec,
            data: frame.data,
            at: frame.read_at,
            fps: self.fps(),
            recording: self.is_recording(),
        })
    }
}

/// Every camera received, by `node/camera`.
#[derive(Debug)]
pub struct Live {
    cameras: Mutex<BTreeMap<String, Arc<LiveCamera>>>,
    /// The viewer's stop: every camera's readers end with it.
    closing: CancellationToken,
}

impl Live {
    pub fn new(closing: CancellationToken) -> Self {
        Live {
            cameras: Mutex::default(),
            closing,
        }
    }

    /// Camera `label`'s hub, made the first time (a restarted task keeps
    /// its camera's readers).
    pub fn open(&self, label: &str) -> Arc<LiveCamera> {
        let mut cameras = self.cameras.lock().expect("live lock");
        let camera = cameras.entry(label.to_owned()).or_insert_with(|| {
            Arc::new(LiveCamera {
                hub: Hub::new(label),
                recording: AtomicBool::new(false),
                rate: Mutex::new(None),
                gone: self.closing.child_token(),
                snapshot: Snapshot::default(),
            })
        });
        Arc::clone(camera)
    }

    /// Camera `label` is gone: its readers end.
    pub fn close(&self, label: &str) {
        if let Some(camera) = self.cameras.lock().expect("live lock").remove(label) {
            camera.gone.cancel();
        }
    }

    pub fn get(&self, label: &str) -> Option<Arc<LiveCamera>> {
        self.cameras.lock().expect("live lock").get(label).cloned()
    }

    /// Every camera, in a stable order.
    pub fn list(&self) -> Vec<(String, Arc<LiveCamera>)> {
        self.cameras
            .lock()
            .expect("live lock")
            .iter()
            .map(|(k, c)| (k.clone(), Arc::clone(c)))
            .collect()
    }
}

/// The dashboard's live WebSocket shows any camera by `node/camera`; its
/// readers take no viewer slot (like the dashboard's MJPEG tiles).
impl fanout::live::Cameras for Live {
    fn hub(&self, key: &str) -> Option<Arc<Hub>> {
        self.get(key).map(|camera| Arc::clone(&camera.hub))
    }

    fn reader(&self, hub: &Arc<Hub>) -> Result<fanout::Reader, String> {
        Ok(hub.add_local_reader(fanout::Protocol::Http))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(seq: u64, read_at: Instant) -> Frame {
        Frame {
            seq,
            captured_at_us: 1_000 + seq,
            read_at,
            codec: fanout::Codec::Mjpeg,
            key: true,
            data: Bytes::from_static(b"\xFF\xD8\xFF\xD9"),
        }
    }

    #[test]
    fn a_camera_keeps_its_hub_across_tasks_and_its_readers_end_when_it_goes() {
        let closing = CancellationToken::new();
        let live = Live::new(closing.clone());
        let cam = live.open("pi/cam0");
        assert!(cam.tile().is_none());
        let t = Instant::now();
        for seq in 0..3 {
            cam.publish(frame(seq, t + Duration::from_millis(100) * seq as u32));
        }
        let tile = cam.tile().unwrap();
        assert_eq!(tile.seq, 2);
        assert!((tile.fps - 10.0).abs() < 0.01, "{}", tile.fps);
        assert!(Arc::ptr_eq(&cam.hub, &live.open("pi/cam0").hub));
        live.close("pi/cam0");
        assert!(cam.gone.is_cancelled());
        assert!(live.get("pi/cam0").is_none());
        let other = live.open("pi/cam1");
        closing.cancel();
        assert!(other.gone.is_cancelled());
    }
}
