//! The fan-out of one camera: the camera (or a relay's upstream) publishes
//! into a [`Ring`] and never waits; each viewer reads through its own
//! [`Reader`], a cursor into the ring.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::figures::{Health, HubFigures, LatencyHistogram, Protocol};
use crate::frame::Codec;
use crate::frame::Frame;
use crate::ring::{Cursor, Ring};

#[derive(Debug)]
pub struct Hub {
    camera_id: String,
    ring: Mutex<Ring>,
    /// The ring's end after each push: wakes the readers.
    pushed: watch::Sender<u64>,
    /// Capture on or off (the HTTP control API); cameras start on.
    enabled: watch::Sender<bool>,
    next_seq: AtomicU64,
    bytes: AtomicU64,
    /// Viewers of every protocol together, for the cap.
    viewers: AtomicUsize,
    viewers_by: [AtomicUsize; 3],
    dropped_by: [AtomicU64; 3],
    restarts: AtomicU64,
    /// From a frame's last byte read to its last byte written to a viewer.
    pub send_latency: LatencyHistogram,
    /// Viewers that gave a name (their peer address), with what they
    /// skipped: a relay reports it per child.
    named: Mutex<std::collections::BTreeMap<u64, (String, Arc<AtomicU64>)>>,
    next_reader: AtomicU64,
}

impl Hub {
    pub fn new(camera_id: &str) -> Arc<Self> {
        Arc::new(Hub {
            camera_id: camera_id.to_owned(),
            ring: Mutex::default(),
            pushed: watch::Sender::new(0),
            enabled: watch::Sender::new(true),
            next_seq: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            viewers: AtomicUsize::new(0),
            viewers_by: Default::default(),
            dropped_by: Default::default(),
            restarts: AtomicU64::new(0),
            send_latency: LatencyHistogram::default(),
            named: Mutex::default(),
            next_reader: AtomicU64::new(0),
        })
    }

    pub fn camera_id(&self) -> &str {
        &self.camera_id
    }

    pub fn is_enabled(&self) -> bool {
        *self.enabled.borrow()
    }

    /// Turns capture on or off; false when it already was.
    pub fn set_enabled(&self, on: bool) -> bool {
        self.enabled
            .send_if_modified(|now| std::mem::replace(now, on) != on)
    }

    /// Changes with every frame pushed: for a task that waits on several
    /// hubs at once (a page's live WebSocket).
    pub fn watch_pushed(&self) -> watch::Receiver<u64> {
        self.pushed.subscribe()
    }

    /// Follows [`Hub::set_enabled`].
    pub fn watch_enabled(&self) -> watch::Receiver<bool> {
        self.enabled.subscribe()
    }

    /// The newest frame, if there was one.
    pub fn latest(&self) -> Option<Frame> {
        self.ring().newest().cloned()
    }

    /// The newest keyframe and every frame after it: what a decoder needs
    /// for the newest picture (for MJPEG the newest frame alone).
    pub fn group(&self) -> Vec<Frame> {
        let ring = self.ring();
        let mut cursor = ring.join();
        let mut group = Vec::new();
        cursor.catch_up_until = u64::MAX;
        while let Some(next) = ring.next(cursor) {
            group.extend(next.frame);
            cursor = next.cursor;
        }
        group
    }

    /// Frames between the camera's last two keyframes.
    pub fn gop_frames(&self) -> Option<u64> {
        self.ring().gop_frames()
    }

    /// The newest keyframe the ring holds (for MJPEG the newest frame):
    /// an H.264 one carries the stream's SPS and PPS.
    pub fn latest_key(&self) -> Option<Frame> {
        self.ring().newest_key().cloned()
    }

    /// The newest keyframe, waiting up to `wait` for one when there is none.
    pub async fn first_frame(&self, wait: Duration) -> Option<Frame> {
        let mut pushed = self.pushed.subscribe();
        let deadline = Instant::now() + wait;
        loop {
            pushed.borrow_and_update();
            if let Some(frame) = self.latest_key() {
                return Some(frame);
            }
            tokio::time::timeout_at(deadline, pushed.changed())
                .await
                .ok()?
                .ok()?;
        }
    }

    /// Stamps a frame that has just been read in full from the camera
    /// (sequence number, capture time) and hands it to every viewer.
    /// Never blocks.
    pub fn publish(&self, codec: Codec, key: bool, data: Bytes) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let captured_at_us = shared::time::now_us();
        self.forward(Frame {
            seq,
            captured_at_us,
            read_at: Instant::now(),
            codec,
            key,
            data,
        });
        seq
    }

    /// Hands on a frame stamped elsewhere (a relay's upstream) as it is.
    pub fn forward(&self, frame: Frame) {
        self.bytes
            .fetch_add(frame.data.len() as u64, Ordering::Relaxed);
        let end = {
            let mut ring = self.ring();
            ring.push(frame);
            ring.end()
        };
        self.pushed.send_replace(end);
    }

    /// Takes a viewer slot with its own cursor at the newest frame, or
    /// `None` when `max` viewers (of every protocol together) are connected.
    pub fn add_viewer(self: &Arc<Self>, max: usize, protocol: Protocol) -> Option<Reader> {
        self.viewers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(self.reader(protocol, true))
    }

    /// A reader of `protocol` that takes no viewer slot: one that passes the
    /// camera on inside this process (a viewer's dashboard beside its relay
    /// server, whose children alone count against the relay's cap). Counted
    /// under its protocol in the figures all the same.
    pub fn add_local_reader(self: &Arc<Self>, protocol: Protocol) -> Reader {
        self.reader(protocol, false)
    }

    fn reader(self: &Arc<Self>, protocol: Protocol, slot: bool) -> Reader {
        self.viewers_by[protocol as usize].fetch_add(1, Ordering::AcqRel);
        let wake = self.pushed.subscribe();
        let cursor = self.ring().join();
        Reader {
            id: self.next_reader.fetch_add(1, Ordering::Relaxed),
            named: None,
            hub: Arc::clone(self),
            protocol,
            slot,
            cursor,
            wake,
            skipped: 0,
            jumped: false,
            skip_pending: false,
            had_frame: false,
            idle: 0,
        }
    }

    /// What each named viewer connected now has skipped.
    pub fn skipped_by_viewer(&self) -> Vec<(String, u64)> {
        self.named
            .lock()
            .expect("hub names")
            .values()
            .map(|(name, n)| (name.clone(), n.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Fresh frames within `watchdog`, stale, or stopped on purpose.
    pub fn health(&self, watchdog: Duration) -> Health {
        if !self.is_enabled() {
            return Health::Stopped;
        }
        match self.last_frame_at() {
            Some(at) if at.elapsed() <= watchdog => Health::Ok(at.elapsed()),
            Some(at) => Health::Stale(Some(at.elapsed())),
            None => Health::Stale(None),
        }
    }

    pub fn snapshot(&self) -> HubFigures {
        let (frames, ring_frames, ring_bytes, last_frame_at) = {
            let ring = self.ring();
            let last = ring.newest().map(|f| f.read_at);
            (ring.end(), ring.len(), ring.bytes(), last)
        };
        HubFigures {
            frames,
            bytes: self.bytes.load(Ordering::Relaxed),
            viewers: self.viewers.load(Ordering::Relaxed),
            viewers_by: self
                .viewers_by
                .each_ref()
                .map(|v| v.load(Ordering::Relaxed)),
            dropped: self
                .dropped_by
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .sum(),
            dropped_by: self
                .dropped_by
                .each_ref()
                .map(|d| d.load(Ordering::Relaxed)),
            restarts: self.restarts.load(Ordering::Relaxed),
            ring_frames,
            ring_bytes,
            last_frame_at,
        }
    }

    fn last_frame_at(&self) -> Option<Instant> {
        self.ring().newest().map(|f| f.read_at)
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().expect("hub ring lock")
    }
}

/// One viewer: its slot under the viewer cap (freed when dropped) and its
/// cursor into the ring.
#[derive(Debug)]
pub struct Reader {
    id: u64,
    /// Its skip count as the hub lists it, once named.
    named: Option<Arc<AtomicU64>>,
    hub: Arc<Hub>,
    protocol: Protocol,
    /// Holds one of the hub's viewer slots (see [`Hub::add_local_reader`]).
    slot: bool,
    /// Where it is in the ring. `behind`: fell behind and has not caught
    /// up since; takes the newest keyframe each time until it has found
    /// none waiting [`CAUGHT_UP_AFTER`] times in a row.
    cursor: Cursor,
    wake: watch::Receiver<u64>,
    skipped: u64,
    /// The last frame came after frames skipped.
    jumped: bool,
    /// Frames were skipped since the last frame returned.
    skip_pending: bool,
    /// Has been given a frame since it joined (or was last seeked).
    had_frame: bool,
    /// Times in a row this reader found no frame waiting.
    idle: u8,
}

/// A reader that fell behind has caught up once it found no frame waiting
/// this many times in a row. Once is not enough: a slow link's socket takes
/// a frame at once and is ready again before the camera's next one, then
/// blocks on it; a reader that keeps up finds none waiting every time.
pub const CAUGHT_UP_AFTER: u8 = 3;

impl Reader {
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The next frame for this viewer, waiting for the camera when it has
    /// them all: in order while it keeps up, else the newest, with the
    /// frames it jumped over counted as drops for its protocol. A viewer
    /// that jumped keeps getting the newest frame until it is ready before
    /// the camera's next frame, so a slow link always gets the freshest
    /// picture rather than drifting back to the staleness limit.
    pub async fn next(&mut self) -> Frame {
        loop {
            self.wake.borrow_and_update();
            if let Some(frame) = self.try_next() {
                return frame;
            }
            if self.wake.changed().await.is_err() {
                // The hub outlives its readers (they hold it); not reached.
                std::future::pending::<()>().await;
            }
        }
    }

    /// [`Reader::next`] without waiting.
    pub fn try_next(&mut self) -> Option<Frame> {
        let Some(next) = self.hub.ring().next(self.cursor) else {
            self.idle = self.idle.saturating_add(1);
            if self.idle >= CAUGHT_UP_AFTER {
                self.cursor.behind = false;
            }
            return None;
        };
        self.take(next)
    }

    fn take(&mut self, next: crate::ring::Next) -> Option<Frame> {
        self.cursor = next.cursor;
        // A reader that joined while no keyframe was held waits for one:
        // what goes by meanwhile was never its to miss.
        if next.skipped > 0 && !self.had_frame {
            let frame = next.frame?;
            self.had_frame = true;
            return Some(frame);
        }
        if next.skipped > 0 {
            self.cursor.behind = true;
            self.idle = 0;
            self.skip_pending = true;
            self.count_skipped(next.skipped);
        }
        let frame = next.frame?;
        self.had_frame = true;
        self.jumped = std::mem::take(&mut self.skip_pending);
        Some(frame)
    }

    /// The newest frame this reader has not had, without waiting; the ones
    /// it jumps over are counted as drops for its protocol. For a reader
    /// that sends a picture only when its client asks for one (a live
    /// WebSocket's tile), for which every older frame is a backlog.
    pub fn try_newest(&mut self) -> Option<Frame> {
        let next = self.hub.ring().next(Cursor {
            behind: true,
            ..self.cursor
        })?;
        let behind = self.cursor.behind;
        let frame = self.take(next);
        self.cursor.behind = behind;
        frame
    }

    fn count_skipped(&mut self, frames: u64) {
        if frames == 0 {
            return;
        }
        self.skipped += frames;
        if let Some(shared) = &self.named {
            shared.store(self.skipped, Ordering::Relaxed);
        }
        self.hub.dropped_by[self.protocol as usize].fetch_add(frames, Ordering::Relaxed);
    }

    /// Starts again as a reader that joins now, without counting what lies
    /// between as drops (an RTSP session that plays after a pause).
    pub fn seek_newest(&mut self) {
        self.cursor = self.hub.ring().join();
        self.had_frame = false;
    }

    /// Whether this viewer fell behind and has not caught up since.
    pub fn is_behind(&self) -> bool {
        self.cursor.behind
    }

    /// Whether frames were skipped right before the last frame returned
    /// (it is a keyframe: a decoder starts again from it).
    pub fn after_skip(&self) -> bool {
        self.jumped
    }

    /// Whether the next frame is part of a joiner's replay of the keyframe
    /// group (older than live; for decoding, not for showing).
    pub fn catching_up(&self) -> bool {
        self.cursor.index < self.cursor.catch_up_until
    }

    /// Lists this viewer under `name` (its peer address) in
    /// [`Hub::skipped_by_viewer`] while it is connected.
    pub fn name(&mut self, name: &str) {
        let shared = Arc::new(AtomicU64::new(self.skipped));
        self.hub
            .named
            .lock()
            .expect("hub names")
            .insert(self.id, (name.to_owned(), Arc::clone(&shared)));
        self.named = Some(shared);
    }

    /// Frames this viewer jumped over because it fell behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Notes that `frame` has been written out in full, for the latency figures.
    pub fn sent(&self, frame: &Frame) {
        self.hub.send_latency.record(frame.read_at.elapsed());
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.named.is_some() {
            self.hub.named.lock().expect("hub names").remove(&self.id);
        }
        if self.slot {
            self.hub.viewers.fetch_sub(1, Ordering::AcqRel);
        }
        self.hub.viewers_by[self.protocol as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
