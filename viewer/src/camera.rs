//! One camera of one node: connect, read frames (protocol v1), reconnect
//! with backoff, restart on a silent stream; record while a session is on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_lite::StreamExt;
use shared::backoff::Backoff;
use shared::frame::FrameDecoder;
use shared::messages::CameraInfo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::clock::{NodeClock, Timeline};
use crate::metrics::WriteStats;
use crate::record::recorder::{ErrorSlot, Recorder};
use crate::record::segmenter::{RecFrame, SegmentPlan};
use crate::relay::{Forward, Route};
use crate::screens::Screens;

/// A stream that stays open but sends nothing for this long is reconnected.
pub const STREAM_WATCHDOG: Duration = Duration::from_secs(5);
/// A sequence number this far below the newest one is a restarted node.
const MISSED_RESET: u64 = 1000;
/// A relay parent that sends nothing for this long is left for the backup.
pub const RELAY_STALL: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A recording session as every camera task sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `YYYYmmddTHHMMSSZ`
    pub name: String,
    /// `<recordings>/<name>`
    pub dir: PathBuf,
}

/// Counters of one camera link, read by the state publisher.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub frames: AtomicU64,
    /// Frames the node skipped for us (gaps in sequence numbers).
    pub missed: AtomicU64,
    pub reconnects: AtomicU64,
    /// The relay the camera arrives through now (`None`: its node).
    pub via: Mutex<Option<String>>,
}

/// A frame at most this much older than the newest recorded one of its
/// camera, with a sequence number no newer, is one already recorded: a
/// reconnect starts with the node's newest frame, which the connection
/// before may have had. A frame older than that by more is from a node
/// that restarted with its clock set back, and is recorded.
pub const REPEAT_WINDOW_US: u64 = 10_000_000;

/// The newest frame of one camera handed to a recorder. The supervisor
/// keeps it while the viewer runs, across reconnects and node restarts, so
/// no frame is recorded twice (DESIGN.md: nothing lost or doubled).
#[derive(Debug, Default)]
pub struct RecordedUpTo {
    /// Sequence number and capture time of that frame.
    last: Mutex<Option<(u64, u64)>>,
    /// Frames not written because they already were.
    pub duplicates: AtomicU64,
}

impl RecordedUpTo {
    /// Whether a frame is new to the recording; if so it becomes the newest.
    pub fn admit(&self, seq: u64, captured_at_us: u64) -> bool {
        let mut last = self.last.lock().expect("recorded-up-to lock");
        if let Some((last_seq, last_us)) = *last {
            let repeat = seq <= last_seq
                && captured_at_us <= last_us
                && last_us - captured_at_us <= REPEAT_WINDOW_US;
            if repeat {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        *last = Some((seq, captured_at_us));
        true
    }
}

/// A planned move to another parent: its connection, made before the old
/// one is left, and the recorder, which goes on across the move.
struct Move {
    to: String,
    stream: TcpStream,
    recorder: Option<(Session, Writing)>,
}

/// A recorder, and this camera's turn to write.
type Writing = (Recorder, tokio::sync::OwnedMutexGuard<()>);

pub struct CameraLink {
    /// `node/camera`, for the display and the recorder thread's name.
    pub label: String,
    pub node_id: String,
    pub camera: CameraInfo,
    pub session: watch::Receiver<Option<Session>>,
    pub segment: Duration,
    pub stats: Arc<LinkStats>,
    pub recorded: Arc<RecordedUpTo>,
    pub written: Arc<WriteStats>,
    pub recording: Arc<AtomicUsize>,
    pub errors: ErrorSlot,
    /// Where the display takes frames from, when there is one.
    pub screens: Option<Arc<Screens>>,
    /// Held while this camera's segments are written: one writer at a time.
    pub writer: Arc<tokio::sync::Mutex<()>>,
    /// Where the relay plan says to take the camera from (`None`: the node).
    pub route: watch::Receiver<Option<Route>>,
    /// Passes the camera on to other viewers, with `--relay`.
    pub relay: Option<Forward>,
    /// The camera's node's clock, as measured.
    pub clock: Arc<NodeClock>,
}

/// What a camera's successive connections share: where its frames go on
/// the fleet's timeline, and the newest sequence number received over any
/// of them (a frame received from no parent is missed).
struct Continuity {
    timeline: Timeline,
    newest_seq: Option<u64>,
}

impl CameraLink {
    /// Connects and reads until `cancel`: to the parent the relay plan
    /// names (the node when there is no plan), to the backup at once when a
    /// relay parent closes or goes quiet, to the node after that; the node
    /// itself is retried with backoff.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::standard();
        // Relay parents that failed under the current plan.
        let mut failed: Vec<String> = Vec::new();
        let mut epoch = None;
        let mut carried: Option<Move> = None;
        let mut shared = Continuity {
            timeline: Timeline::new(Arc::clone(&self.clock)),
            newest_seq: None,
        };
        loop {
            let route = self.route.borrow().clone();
            if route.as_ref().map(|r| r.epoch) != epoch {
                epoch = route.as_ref().map(|r| r.epoch);
                failed.clear();
            }
            let (addr, via) = pick(route.as_ref(), &failed, &self.camera.tcp);
            // A planned move made its connection before leaving the old one.
            let moved = match carried.take() {
                Some(m) if m.to == addr => Some(m),
                Some(m) => {
                    if let Some((_, r)) = m.recorder {
                        self.stop_recorder(r).await;
                    }
                    None
                }
                None => None,
            };
            backoff.attempt_started();
            let result = self
                .run_once(&cancel, &addr, via.as_deref(), moved, &mut shared)
                .await;
            if cancel.is_cancelled() {
                return;
            }
            let error = match result {
                Ok(next) => {
                    carried = next;
                    continue;
                }
                Err(error) => error,
            };
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            if let Some(parent) = via {
                tracing::warn!(
                    "relay {parent} ({addr}): {error:#}; switching to the backup at once"
                );
                failed.push(addr);
                continue;
            }
            failed.clear();
            let delay = backoff.next_delay();
            tracing::warn!("{error:#}; reconnecting in {:.1} s", delay.as_secs_f64());
            if cancel
                .run_until_cancelled(tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// Reads from `tcp` (through relay `via`, if any) until `cancel` (Ok),
    /// a new plan that moves the camera elsewhere (Ok with the connection
    /// to the new parent, made before this one is left, and the recorder,
    /// which goes on), or an error.
    async fn run_once(
        &self,
        cancel: &CancellationToken,
        tcp: &str,
        via: Option<&str>,
        moved: Option<Move>,
        shared: &mut Continuity,
    ) -> Result<Option<Move>> {
        let (stream, mut recorder) = match moved {
            Some(m) => (m.stream, m.recorder),
            None => {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(tcp))
                    .await
                    .map_err(|_| anyhow!("connecting to {tcp} timed out"))?
                    .with_context(|| format!("connecting to {tcp}"))?;
                (stream, None)
            }
        };
        match via {
            Some(parent) => tracing::info!("connected to {tcp} (relay {parent})"),
            None => tracing::info!("connected to {tcp}"),
        }
        let stall = if via.is_some() {
            RELAY_STALL
        } else {
            STREAM_WATCHDOG
        };
        *self.stats.via.lock().expect("via lock") = via.map(str::to_owned);
        let mut route = self.route.clone();
        route.mark_unchanged();
        let mut frames = FramedRead::new(stream, FrameDecoder::new());
        // Read afresh for every frame (this run's own receiver).
        let mut session = self.session.clone();
        let mut first = true;
        // Frames in a row not written again because they already were.
        let mut repeats = 0u64;
        let result = loop {
            let frame = tokio::select! {
                _ = cancel.cancelled() => break Ok(None),
                Ok(()) = route.changed() => {
                    let to = route.borrow_and_update().as_ref().map_or_else(|| self.camera.tcp.clone(), |r| r.parent_addr.clone());
                    if to == tcp {
                        continue;
                    }
                    // Make before break: the new parent first.
                    match tokio::time::timeout(RELAY_STALL, TcpStream::connect(&to)).await {
                        Ok(Ok(stream)) => {
                            tracing::info!("the relay plan moves this camera from {tcp} to {to}");
                            break Ok(Some(Move { to, stream, recorder: recorder.take() }));
                        }
                        Ok(Err(e)) => tracing::warn!("the relay plan names {to}, which refuses ({e}); staying on {tcp}"),
                        Err(_) => tracing::warn!("the relay plan names {to}, which does not answer; staying on {tcp}"),
                    }
                    continue;
                }
                next = tokio::time::timeout(stall, frames.next()) => match next {
                    Err(_) => break Err(anyhow!("no frame from {tcp} for {:.1} s", stall.as_secs_f64())),
                    Ok(None) => break Err(anyhow!("{tcp} closed the stream")),
                    Ok(Some(Err(e))) => break Err(anyhow!("{tcp}: {e}")),
                    Ok(Some(Ok(frame))) => frame,
                },
            };
            if let Some(relay) = &self.relay {
                relay.pass(&frame);
            }
            self.stats.frames.fetch_add(1, Ordering::Relaxed);
            if std::mem::take(&mut first) {
                tracing::info!(seq = frame.seq, bytes = frame.jpeg.len(), "first frame");
            }
            // Gaps count across reconnects and relay switches too: a frame
            // not received from any parent is missed.
            if let Some(last) = shared.newest_seq {
                self.stats
                    .missed
                    .fetch_add(frame.seq.saturating_sub(last + 1), Ordering::Relaxed);
            }
            // A restarted node counts from 0 again.
            if shared
                .newest_seq
                .is_none_or(|n| frame.seq > n || n - frame.seq > MISSED_RESET)
            {
                shared.newest_seq = Some(frame.seq);
            }
            // Follow the session: start, switch or stop before this frame.
            let wanted = session.borrow_and_update().clone();
            if recorder.as_ref().map(|(s, _)| s) != wanted.as_ref() {
                if let Some((_, old)) = recorder.take() {
                    self.stop_recorder(old).await;
                }
                if let Some(session) = wanted {
                    match self.start_recorder(&session, &frame.jpeg).await {
                        Ok(r) => recorder = Some((session, r)),
                        Err(e) => bail!("cannot start recording: {e}"),
                    }
                }
            }
            if let Some(screens) = &self.screens {
                screens.update(
                    &self.label,
                    frame.seq,
                    frame.jpeg.clone(),
                    recorder.is_some(),
                );
            }
            if let Some((_, (r, _))) = &recorder {
                if !self.recorded.admit(frame.seq, frame.captured_at_us) {
                    if repeats == 0 {
                        tracing::info!(
                            seq = frame.seq,
                            captured_at_us = frame.captured_at_us,
                            "frame already recorded (sent again after a reconnect): not writing it twice"
                        );
                    }
                    repeats += 1;
                    continue;
                }
                if repeats > 1 {
                    tracing::info!("{repeats} frames already recorded were not written twice");
                }
                repeats = 0;
                r.record(RecFrame {
                    captured_at_us: shared.timeline.place(frame.captured_at_us).await,
                    node_us: frame.captured_at_us,
                    jpeg: frame.jpeg,
                })
                .await;
            }
        };
        if let Some((_, r)) = recorder.take() {
            self.stop_recorder(r).await;
        }
        result
    }

    /// Starts recording once no other task of this camera writes (one that
    /// the supervisor replaced may still be closing its segment, which the
    /// new one may append to).
    async fn start_recorder(&self, session: &Session, jpeg: &[u8]) -> std::io::Result<Writing> {
        let turn = Arc::clone(&self.writer).lock_owned().await;
        let (width, height) =
            jpeg_size(jpeg).unwrap_or((self.camera.width as u16, self.camera.height as u16));
        let plan = SegmentPlan {
            dir: session.dir.join(&self.node_id).join(&self.camera.id),
            segment_us: self.segment.as_micros() as u64,
            width,
            height,
        };
        let recorder = Recorder::start(
            plan,
            self.label.clone(),
            Arc::clone(&self.errors),
            Arc::clone(&self.written),
        )?;
        self.recording.fetch_add(1, Ordering::Relaxed);
        Ok((recorder, turn))
    }

    async fn stop_recorder(&self, (recorder, turn): Writing) {
        recorder.stop().await;
        drop(turn);
        self.recording.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where to connect: the plan's parent, else its backup, skipping relays
/// that failed under this plan, else the node; with the relay's id when it
/// is one.
fn pick(route: Option<&Route>, failed: &[String], node: &str) -> (String, Option<String>) {
    if let Some(r) = route {
        for (addr, id) in [(&r.parent_addr, &r.parent), (&r.backup_addr, &r.backup)] {
            if !failed.contains(addr) {
                return (addr.clone(), id.clone());
            }
        }
    }
    (node.to_owned(), None)
}

/// Width and height from a JPEG's SOF marker.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    let mut i = 2;
    while i + 9 < jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_recorded_once_across_reconnects_restarts_and_clock_steps() {
        let up_to = RecordedUpTo::default();
        let t = 1_800_000_000_000_000u64;
        assert!(up_to.admit(100, t));
        assert!(up_to.admit(101, t + 33_333));
        // A reconnect re-sends the newest frame, or an older one.
        assert!(!up_to.admit(101, t + 33_333));
        assert!(!up_to.admit(100, t));
        // A restarted node counts from 0 again, later.
        assert!(up_to.admit(0, t + 5_000_000));
        // Its clock stepped back by a second: newer sequence numbers still count.
        assert!(up_to.admit(1, t + 4_000_000));
        // A node restarted with its clock an hour back is recorded too.
        assert!(up_to.admit(0, t - 3_600_000_000));
        assert_eq!(up_to.duplicates.load(Ordering::Relaxed), 2);
    }
}
