//! RTSP 1.0 server (RFC 2326) for players: `rtsp://<host>:8554/<camera>`
//! with one RTP/JPEG track, over TCP interleaved or UDP unicast.
//!
//! - `conn`: one client connection: requests in, replies and
//!   interleaved RTP out.
//! - [`request`]: the pure reading of requests (fuzzed).
//! - `session`: sessions, their transport and the task that streams
//!   frames while a session plays.
//!
//! Every session takes its frames from the camera's hub, newest first, so a
//! slow client skips whole frames and never holds up the camera or the
//! other clients.

mod conn;
mod reply;
pub mod request;
pub(crate) mod send;
mod session;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::Users;
use fanout::{Frame, Hub};

use crate::rtp::jpeg::{self, JpegScan, Unsupported};
use crate::rtp::Packets;
use fanout::Codec;
use shared::h264::Params;

// A push (push/) announces the same SDP and reports as often.
pub(crate) use self::conn::describe_sdp;
pub use self::session::Session;
pub(crate) use self::session::REPORT_EVERY;

/// The default for UDP sessions without keepalive (RFC 2326 12.37).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// One camera as RTSP serves it.
#[derive(Debug)]
pub struct RtspCamera {
    pub hub: Arc<Hub>,
    pub fps: u32,
    /// Set while the camera's JPEGs cannot go over RTP/JPEG, so the reason
    /// is logged once per change rather than per frame or per client.
    refused: AtomicBool,
    /// The payloads of the last few frames, cut once for every session.
    packets: Mutex<VecDeque<Arc<Packets>>>,
}

/// The stream an SDP describes.
#[derive(Debug, Clone)]
pub enum Media {
    Jpeg { width: u16, height: u16 },
    H264(Params),
}

/// Frames whose payloads are kept: sessions that fall a frame or two
/// behind the others find theirs here instead of cutting them again.
const PACKETS_KEPT: usize = 4;

impl RtspCamera {
    pub fn new(hub: Arc<Hub>, fps: u32) -> Self {
        RtspCamera {
            hub,
            fps,
            refused: AtomicBool::new(false),
            packets: Mutex::default(),
        }
    }

    /// `frame` cut into RTP/JPEG payloads, by the first session that sends
    /// it; an error (logged once) when RTP/JPEG cannot carry it.
    pub fn packets(&self, frame: &Frame) -> Result<Arc<Packets>, Unsupported> {
        let same =
            |p: &&Arc<Packets>| p.seq == frame.seq && p.captured_at_us == frame.captured_at_us;
        if let Some(found) = self.packets.lock().expect("packets lock").iter().find(same) {
            return Ok(Arc::clone(found));
        }
        let packets = Arc::new(match frame.codec {
            Codec::Mjpeg => {
                let scan = self.check(&frame.data)?;
                Packets::build(
                    &scan,
                    frame.data.slice_ref(scan.scan),
                    frame.seq,
                    frame.captured_at_us,
                )
            }
            Codec::H264 => Packets::h264(&frame.data, frame.seq, frame.captured_at_us),
        });
        let mut kept = self.packets.lock().expect("packets lock");
        if !kept.iter().any(|p| same(&p)) {
            if kept.len() == PACKETS_KEPT {
                kept.pop_front();
            }
            kept.push_back(Arc::clone(&packets));
        }
        Ok(packets)
    }

    /// What the SDP says of the camera's stream, from a keyframe: the
    /// picture size (JPEG) or the parameter sets (H.264).
    pub fn media(&self, key: &Frame) -> Result<Media, String> {
        match key.codec {
            Codec::Mjpeg => self
                .check(&key.data)
                .map(|scan| Media::Jpeg {
                    width: scan.width,
                    height: scan.height,
                })
                .map_err(|e| format!("RTP/JPEG cannot carry this camera: {e}")),
            Codec::H264 => Params::of_keyframe(&key.data)
                .map(Media::H264)
                .map_err(|e| format!("the camera's keyframe: {e}")),
        }
    }

    /// What RTP/JPEG needs from a frame; the first refusal in a row is logged.
    pub fn check<'a>(&self, jpeg: &'a [u8]) -> Result<JpegScan<'a>, Unsupported> {
        match jpeg::parse(jpeg) {
            Ok(scan) => {
                if self.refused.swap(false, Ordering::Relaxed) {
                    tracing::info!(camera = %self.hub.camera_id(), "RTSP: the camera's JPEGs fit RTP/JPEG again");
                }
                Ok(scan)
            }
            Err(e) => {
                if !self.refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        camera = %self.hub.camera_id(),
                        "RTSP cannot carry this camera: {e}; TCP and HTTP keep serving it"
                    );
                }
                Err(e)
            }
        }
    }
}

#[derive(Debug)]
pub struct RtspServer {
    pub node_id: String,
    /// Cameras come and go at runtime (the camera API).
    cameras: RwLock<Vec<Arc<RtspCamera>>>,
    pub max_viewers: usize,
    pub users: Users,
    /// A UDP session without any request or RTCP for this long is closed.
    pub session_timeout: Duration,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    next_conn: AtomicU64,
}

impl RtspServer {
    pub fn new(
        node_id: String,
        max_viewers: usize,
        users: Users,
        session_timeout: Duration,
    ) -> Self {
        RtspServer {
            node_id,
            cameras: RwLock::default(),
            max_viewers,
            users,
            session_timeout,
            sessions: Mutex::default(),
            next_conn: AtomicU64::new(1),
        }
    }

    fn camera(&self, id: &str) -> Option<Arc<RtspCamera>> {
        self.cameras
            .read()
            .expect("cameras lock")
            .iter()
            .find(|c| c.hub.camera_id() == id)
            .cloned()
    }

    fn camera_ids(&self) -> Vec<String> {
        let cameras = self.cameras.read().expect("cameras lock");
        cameras
            .iter()
            .map(|c| c.hub.camera_id().to_owned())
            .collect()
    }

    /// Serves a camera from now on.
    pub fn add_camera(&self, camera: Arc<RtspCamera>) {
        self.cameras.write().expect("cameras lock").push(camera);
    }

    /// Stops serving a camera and ends its sessions.
    pub async fn remove_camera(&self, id: &str) {
        self.cameras
            .write()
            .expect("cameras lock")
            .retain(|c| c.hub.camera_id() != id);
        for session in self.take_sessions(|s| s.camera_id() == id) {
            tracing::info!(session = %session.id, camera = id, "RTSP session ended: the camera was removed");
            session.close().await;
        }
    }

    fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .cloned()
    }

    fn insert_session(&self, session: Arc<Session>) {
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(session.id.clone(), session);
    }

    fn remove_session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().expect("sessions lock").remove(id)
    }

    fn any_session(&self, pick: impl Fn(&Session) -> bool) -> bool {
        self.sessions
            .lock()
            .expect("sessions lock")
            .values()
            .any(|s| pick(s))
    }

    /// Removes the sessions `pick` selects, for closing.
    fn take_sessions(&self, pick: impl Fn(&Session) -> bool) -> Vec<Arc<Session>> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let ids: Vec<String> = sessions
            .values()
            .filter(|s| pick(s))
            .map(|s| s.id.clone())
            .collect();
        ids.iter().filter_map(|id| sessions.remove(id)).collect()
    }
}

/// Accepts RTSP clients until `cancel`; each connection gets a task on
/// `tracker`. UDP sessions that stop sending keepalives are closed.
pub async fn run(
    listener: TcpListener,
    server: Arc<RtspServer>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let reaper = reap_idle_sessions(Arc::clone(&server), cancel.clone());
    tracker.spawn(reaper.in_current_span());
    loop {
        let Some((stream, peer)) = fanout::tcp::accept(&listener, &cancel).await else {
            break;
        };
        let id = server.next_conn.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("client", %peer);
        let task = conn::serve(stream, peer, id, Arc::clone(&server), cancel.clone());
        tracker.spawn(task.instrument(span));
    }
    for session in server.take_sessions(|_| true) {
        session.close().await;
    }
    tracing::info!("RTSP listener closed");
}

async fn reap_idle_sessions(server: Arc<RtspServer>, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let limit = server.session_timeout;
        for session in server.take_sessions(|s| s.is_udp() && s.idle_for() > limit) {
            tracing::info!(
                session = %session.id,
                camera = %session.camera_id(),
                "RTSP session timed out: no keepalive for {} s",
                limit.as_secs()
            );
            session.close().await;
        }
    }
}
