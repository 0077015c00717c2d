//! One task per camera: started when its node comes up, restarted when the
//! node's info changes (restarted, new port), stopped when it goes down.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shared::messages::LinkFigures;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::discovery::NodeEvent;
use crate::record::recorder::Events;
use crate::record::session::Session;
use crate::relay::{Relays, Route};

use super::camera::CameraLink;
use super::clock::{http_authority, NodeClock};
use super::delivery::{Delivery, RecordTo};
use super::live::Live;
use super::stats::{CameraCounters, Counters};
use super::timeline::Timeline;

/// Window over which a viewer decides whether it keeps up.
const LAG_WINDOW: Duration = Duration::from_secs(5);

struct Running {
    tcp: String,
    started_at: DateTime<Utc>,
    cancel: CancellationToken,
    counters: Arc<CameraCounters>,
    /// Frames at the last figures, for fps.
    last: (Instant, u64),
    /// Frames and missed frames at the start of the current lag window.
    lag: (Instant, u64, u64),
}

/// One node's clock, measured while the node is up.
struct Clock {
    started_at: DateTime<Utc>,
    http: Option<String>,
    clock: Arc<NodeClock>,
    cancel: CancellationToken,
}

pub struct Supervisor {
    tasks: HashMap<(String, String), Running>,
    clocks: HashMap<String, Clock>,
    /// Per camera, where the relay plan says to take it from.
    routes: HashMap<(String, String), watch::Sender<Option<Route>>>,
    /// This viewer's relay servers, with `--relay`.
    pub relays: Option<Arc<Relays>>,
    pub viewer_id: String,
    /// Over 10% of a camera's frames missed in the last window: this viewer
    /// cannot keep up, and says so in its relay announcement (a leaf only).
    pub degraded: bool,
    /// Per camera counters, and the newest frame recorded: kept when a
    /// camera's task ends, so its next one never records a frame again.
    counters: Arc<Counters>,
    /// Every camera's live hub.
    live: Arc<Live>,
    tracker: TaskTracker,
    session: watch::Receiver<Option<Session>>,
    segment: Duration,
    events: Events,
    last_figures: Vec<LinkFigures>,
}

/// What every camera task is given.
#[derive(Debug)]
pub struct Wiring {
    /// The recording session, as the record command sets it.
    pub session: watch::Receiver<Option<Session>>,
    /// Segment length.
    pub segment: Duration,
    /// Where the writers report to.
    pub events: Events,
    pub counters: Arc<Counters>,
    pub live: Arc<Live>,
}

impl Supervisor {
    pub fn new(wiring: Wiring) -> Self {
        Supervisor {
            tasks: HashMap::new(),
            clocks: HashMap::new(),
            routes: HashMap::new(),
            relays: None,
            viewer_id: String::new(),
            degraded: false,
            counters: wiring.counters,
            live: wiring.live,
            tracker: TaskTracker::new(),
            session: wiring.session,
            segment: wiring.segment,
            events: wiring.events,
            last_figures: Vec::new(),
        }
    }

    pub fn apply(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Up(info) => {
                let clock = self.clock_of(&info);
                let wanted: Vec<String> = info.cameras.iter().map(|c| c.id.clone()).collect();
                self.stop_where(
                    |(node, cam)| *node == info.node_id && !wanted.contains(cam),
                    "camera gone from NodeInfo",
                );
                for cam in info.cameras {
                    let key = (info.node_id.clone(), cam.id.clone());
                    if let Some(r) = self.tasks.get(&key) {
                        if r.tcp == cam.tcp && r.started_at == info.started_at {
                            continue;
                        }
                        tracing::info!(camera = %format!("{}/{}", key.0, key.1), "node info changed; reconnecting");
                        self.stop_where(|k| *k == key, "info changed");
                    }
                    let cancel = CancellationToken::new();
                    let counters = self.start(&info.node_id, &cam, &clock, &cancel);
                    let running = Running {
                        tcp: cam.tcp,
                        started_at: info.started_at,
                        cancel,
                        last: (Instant::now(), counters.link.frames.load(Ordering::Relaxed)),
                        lag: (
                            Instant::now(),
                            counters.link.frames.load(Ordering::Relaxed),
                            counters.link.missed.load(Ordering::Relaxed),
                        ),
                        counters,
                    };
                    self.tasks.insert(key, running);
                }
            }
            NodeEvent::Down(node) => {
                tracing::info!(node = %node, "node offline; dropping its cameras");
                self.stop_where(|(n, _)| *n == node, "node offline");
                if let Some(old) = self.clocks.remove(&node) {
                    old.cancel.cancel();
                }
            }
        }
    }

    /// Starts camera `cam`'s task: its link, and what its frames go through.
    fn start(
        &mut self,
        node: &str,
        cam: &shared::messages::CameraInfo,
        clock: &Arc<NodeClock>,
        cancel: &CancellationToken,
    ) -> Arc<CameraCounters> {
        let key = (node.to_owned(), cam.id.clone());
        let label = format!("{node}/{}", cam.id);
        let counters = self.counters.camera(&label);
        *counters.clock.lock().expect("clock slot") = Some(Arc::clone(clock));
        let live = self.live.open(&label);
        if let Some(relays) = &self.relays {
            if let Err(e) = relays.open(node, &cam.id, &live.hub) {
                tracing::warn!("{e:#}; not passing it on");
            }
        }
        let to = RecordTo {
            label: label.clone(),
            node_id: node.to_owned(),
            camera: cam.clone(),
            segment: self.segment,
            session: self.session.clone(),
            events: self.events.clone(),
        };
        let delivery = Delivery::new(
            to,
            Arc::clone(&counters),
            Arc::clone(&self.counters),
            live,
            Timeline::new(Arc::clone(clock)),
        );
        let link = CameraLink {
            tcp: cam.tcp.clone(),
            stats: Arc::clone(&counters.link),
            route: self.route(&key).subscribe(),
        };
        let span = tracing::info_span!("camera", camera = %label);
        self.tracker
            .spawn(link.run(delivery, cancel.clone()).instrument(span));
        counters
    }

    fn route(&mut self, key: &(String, String)) -> &watch::Sender<Option<Route>> {
        self.routes
            .entry(key.clone())
            .or_insert_with(|| watch::Sender::new(None))
    }

    /// A camera's new relay plan: this viewer's place in it, if any.
    pub fn plan(&mut self, plan: &shared::relay::RelayPlan) {
        let key = (plan.node_id.clone(), plan.camera.clone());
        let mine = plan
            .viewers
            .get(&self.viewer_id)
            .map(|entry| Route::from_plan(plan, entry));
        let changed = self.route(&key).send_if_modified(|now| {
            let changed = now.as_ref().map(|r| (&r.parent_addr, &r.backup_addr))
                != mine.as_ref().map(|r| (&r.parent_addr, &r.backup_addr));
            // The epoch is kept fresh either way (it resets failed relays).
            *now = mine.clone();
            changed
        });
        if !changed {
            return;
        }
        if let Some(r) = &mine {
            tracing::info!(
                camera = %format!("{}/{}", key.0, key.1),
                epoch = r.epoch,
                "relay plan: from {} ({}), backup {}",
                r.parent.as_deref().unwrap_or("the node"),
                r.parent_addr,
                r.backup.as_deref().unwrap_or("the node")
            );
        }
    }

    /// A camera's plan could not be read: take it from its node.
    pub fn drop_plan(&mut self, node: &str, camera: &str) {
        let key = (node.to_owned(), camera.to_owned());
        self.route(&key)
            .send_if_modified(|now| now.take().is_some());
    }

    /// The node's clock: the one measured so far while the same run of the
    /// node is up, else a new one (a restarted node may have a new clock).
    fn clock_of(&mut self, info: &shared::messages::NodeInfo) -> Arc<NodeClock> {
        let http = info
            .cameras
            .iter()
            .find_map(|c| c.http.as_deref().and_then(http_authority));
        if let Some(c) = self.clocks.get(&info.node_id) {
            if c.started_at == info.started_at && c.http == http {
                return Arc::clone(&c.clock);
            }
            c.cancel.cancel();
        }
        let clock = NodeClock::new(&info.node_id, http.clone());
        let cancel = CancellationToken::new();
        let span = tracing::info_span!("clock", node = %info.node_id);
        self.tracker
            .spawn(Arc::clone(&clock).refresh(cancel.clone()).instrument(span));
        self.clocks.insert(
            info.node_id.clone(),
            Clock {
                started_at: info.started_at,
                http,
                clock: Arc::clone(&clock),
                cancel,
            },
        );
        clock
    }

    fn stop_where(&mut self, matches: impl Fn(&(String, String)) -> bool, why: &str) {
        self.tasks.retain(|key, running| {
            let stop = matches(key);
            if stop {
                tracing::debug!("stopping {}/{}: {why}", key.0, key.1);
                running.cancel.cancel();
                if let Some(relays) = &self.relays {
                    relays.close(&key.0, &key.1);
                }
                self.live.close(&format!("{}/{}", key.0, key.1));
            }
            !stop
        });
    }

    /// Cameras recording right now.
    pub fn recording(&self) -> usize {
        self.counters.recording()
    }

    /// Figures per camera since the last call. Also decides whether this
    /// viewer cannot keep up (see [`Supervisor::degraded`]).
    pub fn figures(&mut self) -> Vec<LinkFigures> {
        let mut lagging = None;
        let mut out: Vec<LinkFigures> = self
            .tasks
            .iter_mut()
            .map(|((node, camera), r)| {
                let frames = r.counters.link.frames.load(Ordering::Relaxed);
                let missed = r.counters.link.missed.load(Ordering::Relaxed);
                let (since, frames0, missed0) = r.lag;
                if since.elapsed() >= LAG_WINDOW {
                    let (got, lost) = (frames - frames0, missed.saturating_sub(missed0));
                    let lags = lost > 0 && lost * 10 > got + lost;
                    if lags {
                        tracing::info!(camera = %format!("{node}/{camera}"), "{lost} of {} frames missed in {:.0} s: this viewer does not keep up", got + lost, since.elapsed().as_secs_f64());
                    }
                    *lagging.get_or_insert(false) |= lags;
                    r.lag = (Instant::now(), frames, missed);
                }
                let (at, before) = r.last;
                let secs = at.elapsed().as_secs_f64();
                let fps = if secs > 0.0 {
                    (frames - before) as f64 / secs
                } else {
                    0.0
                };
                r.last = (Instant::now(), frames);
                LinkFigures {
                    node: node.clone(),
                    camera: camera.clone(),
                    fps: (fps * 10.0).round() / 10.0,
                    missed: r.counters.link.missed.load(Ordering::Relaxed),
                    reconnects: r.counters.link.reconnects.load(Ordering::Relaxed),
                    duplicates: r.counters.recorded.duplicates.load(Ordering::Relaxed),
                    before_key: r.counters.before_key.load(Ordering::Relaxed),
                    frames,
                    via: r.counters.link.via.lock().expect("via lock").clone(),
                    clock: self.clocks.get(node).and_then(|c| c.clock.figures()),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.node, &a.camera).cmp(&(&b.node, &b.camera)));
        self.last_figures = out.clone();
        if let Some(lagging) = lagging {
            if lagging != self.degraded {
                tracing::info!(
                    "{}",
                    if lagging {
                        "announcing this viewer as degraded: a leaf of relay plans"
                    } else {
                        "keeping up again: no longer degraded"
                    }
                );
            }
            self.degraded = lagging;
        }
        out
    }

    /// The figures last computed, one log line per camera.
    pub fn log_figures(&self) {
        for f in &self.last_figures {
            tracing::info!(
                camera = %format!("{}/{}", f.node, f.camera),
                "{:.1} fps, {} frames, {} missed, {} reconnects, {} repeats not recorded, {} not recorded before a keyframe",
                f.fps,
                f.frames,
                f.missed,
                f.reconnects,
                f.duplicates,
                f.before_key
            );
        }
    }

    /// Stops every camera (each closes its open segment) and waits.
    pub async fn shutdown(&mut self) {
        self.stop_where(|_| true, "shutting down");
        for c in self.clocks.values() {
            c.cancel.cancel();
        }
        if let Some(relays) = &self.relays {
            relays.shutdown().await;
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}
