//! Every camera of a page over one WebSocket (docs/protocol.md, "The live
//! WebSocket"): the node's page and the viewer's dashboard and Sources
//! page draw all their tiles from one connection, where one multipart
//! stream per tile ran into the browser's six connections per host.
//!
//! The page says which cameras it shows (`{"show": [...]}`); each becomes
//! a reader of its camera's hub on this socket. A frame goes out only when
//! the page has acknowledged the camera's previous one and the socket's
//! unacknowledged bytes are within its [`Window`], and then it is the
//! camera's newest: a slow page or link gets fewer, fresher pictures,
//! never a backlog, wherever the backlog would have formed (the kernel, a
//! proxy, the browser's own throttling). Cameras take turns, so a busy one
//! cannot hold back the others. A page that stops acknowledging is cut
//! off after [`STALL_LIMIT`].
//!
//! An H.264 camera's frames all go, in order, as fragmented MP4 ([`mp4`])
//! for the page's Media Source Extensions, several in flight within the
//! window; a socket that falls behind skips to a keyframe (the hub's rule),
//! never into the middle of a group.
//!
//! - [`message`]: what a page sends, and a frame message as it goes out.
//! - [`window`]: how much a socket may have in flight.
//! - [`mp4`]: an H.264 camera's frames as fragmented MP4.

mod message;
mod mp4;
mod window;

pub use message::{
    encode, encode_mp4, Request, Want, HEADER_LEN, KIND_JPEG, KIND_MP4, MAX_REQUEST, MAX_SHOWN,
};
use mp4::Mp4Track;
pub use window::{Window, MAX_WINDOW, MIN_WINDOW, QUEUE_TIME};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::frame::Codec;
use crate::http::{Pacer, Peer, STALL_LIMIT};
use crate::{Hub, Reader};

/// The browser side: draws the tiles of any page that has
/// `[data-camera]` elements with a `<canvas>`.
pub const SCRIPT: &str = include_str!("live.js");

/// Where a page's HTML wants [`script_tag`].
pub const SCRIPT_MARK: &str = "<!-- live.js -->";

/// [`SCRIPT`] inline, talking to the socket at `socket` (a URL path).
/// Inline rather than fetched: a separate request can take a connection of
/// its own that the browser then keeps open, and the point of the socket
/// is that a page of live tiles holds one connection for all of them.
pub fn script_tag(socket: &str) -> String {
    format!("<script data-socket=\"{socket}\">\n{SCRIPT}</script>")
}

/// How often cameras that were missing (or whose hub was replaced, a
/// node that came back) are looked up again.
const LOOKUP_EVERY: Duration = Duration::from_secs(1);

/// The cameras a socket may show.
pub trait Cameras: Send + Sync {
    /// Camera `key`'s hub now, if there is one.
    fn hub(&self, key: &str) -> Option<Arc<Hub>>;
    /// A reader of `hub` for one socket, or why not (the node's viewer cap).
    fn reader(&self, hub: &Arc<Hub>) -> Result<Reader, String>;
}

/// Upgrades to a live WebSocket served by [`run`], or refuses (403) a
/// page of another site (`headers`' `Origin` is not the server's own, on
/// https when `tls`: cross-site WebSocket hijacking). The caller has
/// checked the request's login.
pub fn upgrade(
    ws: WebSocketUpgrade,
    headers: &HeaderMap,
    tls: bool,
    cameras: Arc<dyn Cameras>,
    peer: Option<Peer>,
    closing: CancellationToken,
) -> Response {
    let who = peer
        .as_ref()
        .map(|p| p.addr.to_string())
        .unwrap_or_default();
    if !crate::http::same_origin(headers, tls) {
        tracing::warn!(
            "refused a live WebSocket from {who} for another site's page (Origin {:?})",
            headers.get(header::ORIGIN)
        );
        let refused = serde_json::json!({ "error": "cross-origin WebSocket refused" });
        return (StatusCode::FORBIDDEN, axum::Json(refused)).into_response();
    }
    ws.max_message_size(MAX_REQUEST)
        .max_frame_size(MAX_REQUEST)
        .on_failed_upgrade(move |e| {
            tracing::info!("live WebSocket from {who}: upgrade failed: {e}")
        })
        .on_upgrade(move |socket| run(socket, cameras, peer, closing))
}

/// One shown camera on one socket.
struct Shown {
    want: Want,
    reader: Option<Reader>,
    /// Wakes the socket when the hub gets a frame.
    _woken: Option<AbortOnDropHandle<()>>,
    last_sent: Option<Instant>,
    /// Why it cannot be shown, once said to the page.
    refused: Option<String>,
    /// What the page was told of an H.264 camera's stream.
    mp4: Mp4Track,
    /// The codec of the last frame taken (a stream's frames all go, a
    /// picture camera's newest).
    codec: Option<Codec>,
}

impl Shown {
    fn min_interval(&self) -> Option<Duration> {
        self.want.fps.map(|fps| Duration::from_secs_f64(1.0 / fps))
    }

    /// When its rate lets it have the next frame.
    fn due_at(&self) -> Option<Instant> {
        Some(self.last_sent? + self.min_interval()?)
    }
}

/// Serves one page until it goes, stops acknowledging, or `closing`.
pub async fn run(
    socket: WebSocket,
    cameras: Arc<dyn Cameras>,
    peer: Option<Peer>,
    closing: CancellationToken,
) {
    let who = peer
        .as_ref()
        .map(|p| p.addr.to_string())
        .unwrap_or_default();
    tracing::info!("live WebSocket from {who}: open");
    let mut session = Session {
        cameras,
        wake: Arc::new(Notify::new()),
        shown: Vec::new(),
        window: Window::default(),
        turn: 0,
        pacer: Pacer::new(peer.as_ref()),
        sent: 0,
    };
    let why = session.serve(socket, &closing).await;
    tracing::info!(
        "live WebSocket from {who}: closed after {} frames ({why})",
        session.sent
    );
}

struct Session {
    cameras: Arc<dyn Cameras>,
    wake: Arc<Notify>,
    shown: Vec<Shown>,
    window: Window,
    /// The camera whose turn it is next.
    turn: usize,
    pacer: Pacer,
    sent: u64,
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

impl Session {
    async fn serve(&mut self, socket: WebSocket, closing: &CancellationToken) -> String {
        let (mut tx, mut rx) = socket.split();
        let mut lookup = tokio::time::interval(LOOKUP_EVERY);
        loop {
            if let Err(why) = self.send_due(&mut tx).await {
                return why;
            }
            if let Some(oldest) = self.window.oldest() {
                if oldest.elapsed() > STALL_LIMIT {
                    return format!("no frame acknowledged for {} s", STALL_LIMIT.as_secs());
                }
            }
            let due = self.next_due_at();
            tokio::select! {
                _ = closing.cancelled() => {
                    let _ = tx.send(Message::Close(None)).await;
                    return "server stopping".into();
                }
                message = rx.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(why) = self.request(&mut tx, text.as_str()).await {
                            return why;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let said = say(&mut tx, "the page sends text (JSON) messages only", None).await;
                        if let Err(why) = said {
                            return why;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return "the page closed it".into(),
                    Some(Ok(_)) => {} // ping and pong: tungstenite answers
                    Some(Err(e)) => return format!("read: {e}"),
                },
                _ = self.wake.notified() => {}
                _ = sleep_until(due) => {}
                _ = lookup.tick() => {
                    if let Err(why) = self.look_up(&mut tx).await {
                        return why;
                    }
                }
            }
        }
    }

    /// Sends every camera that may have a frame now, one each in turn.
    async fn send_due(&mut self, tx: &mut Sink) -> Result<(), String> {
        'round: loop {
            let count = self.shown.len();
            for step in 0..count {
                let i = (self.turn + step) % count;
                let now = Instant::now();
                let shown = &mut self.shown[i];
                let Some(reader) = shown.reader.as_ref() else {
                    continue;
                };
                // A stream's frames all go, in order (a rate limit does not
                // apply); a picture's newest goes once the last was taken.
                let codec = shown
                    .codec
                    .or_else(|| reader.hub().latest().map(|f| f.codec));
                let stream = codec == Some(Codec::H264);
                let may = if stream {
                    self.window.has_room(now)
                } else {
                    shown.due_at().is_none_or(|at| at <= now)
                        && self.window.allows(&shown.want.camera, now)
                };
                if !may {
                    continue;
                }
                let reader = shown.reader.as_mut().expect("looked at above");
                let frame = if stream {
                    reader.try_next()
                } else {
                    reader.try_newest()
                };
                let Some(frame) = frame else {
                    continue;
                };
                shown.codec = Some(frame.codec);
                let mp4 = match frame.codec {
                    Codec::Mjpeg => None,
                    Codec::H264 => match shown.mp4.carry(&frame) {
                        Some(mp4) => Some(mp4),
                        // Not decodable yet: on to its next frame.
                        None => continue 'round,
                    },
                };
                shown.last_sent = Some(now);
                let key = shown.want.camera.clone();
                let payload = mp4.as_ref().map_or(frame.data.len(), |m| m.len());
                let len = HEADER_LEN + key.len() + payload;
                let number = self.window.sent(&key, len, now);
                self.pacer.fit(len, false);
                let message = Message::Binary(match &mp4 {
                    None => encode(number, &key, &frame),
                    Some(mp4) => encode_mp4(number, &key, &frame, mp4),
                });
                match tokio::time::timeout(STALL_LIMIT, tx.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(format!("write: {e}")),
                    Err(_) => {
                        return Err(format!(
                            "took over {} s to take one frame",
                            STALL_LIMIT.as_secs()
                        ))
                    }
                }
                if let Some(reader) = self.shown.get(i).and_then(|s| s.reader.as_ref()) {
                    reader.sent(&frame);
                }
                self.sent += 1;
                self.turn = i + 1;
                continue 'round;
            }
            return Ok(());
        }
    }

    /// The earliest time a rate-limited camera may have its next frame.
    fn next_due_at(&self) -> Option<Instant> {
        self.shown
            .iter()
            .filter(|s| s.reader.is_some())
            .filter_map(Shown::due_at)
            .filter(|at| *at > Instant::now())
            .min()
    }

    async fn request(&mut self, tx: &mut Sink, text: &str) -> Result<(), String> {
        let request = match Request::parse(text) {
            Ok(r) => r,
            Err(why) => return say(tx, &why, None).await,
        };
        if let Some(number) = request.ack {
            // An unknown number is a late ack of a camera no longer shown.
            self.window.ack(number, Instant::now());
        }
        if let Some(show) = request.show {
            self.show(show);
            self.look_up(tx).await?;
        }
        Ok(())
    }

    /// From now on the cameras `wants`, keeping the readers of those
    /// already shown.
    fn show(&mut self, wants: Vec<Want>) {
        let mut before: Vec<Shown> = std::mem::take(&mut self.shown);
        for want in wants {
            if self.shown.iter().any(|s| s.want.camera == want.camera) {
                continue;
            }
            let kept = before.iter().position(|s| s.want.camera == want.camera);
            let shown = match kept {
                Some(at) => {
                    let mut kept = before.swap_remove(at);
                    kept.want = want;
                    kept
                }
                None => Shown {
                    want,
                    reader: None,
                    _woken: None,
                    last_sent: None,
                    refused: None,
                    mp4: Mp4Track::default(),
                    codec: None,
                },
            };
            self.shown.push(shown);
        }
        for gone in before {
            self.window.forget(&gone.want.camera);
        }
        self.turn = 0;
    }

    /// Gives each shown camera a reader of its hub as it is now (new
    /// cameras, ones that were missing, a hub replaced); tells the page
    /// once about each it cannot show.
    async fn look_up(&mut self, tx: &mut Sink) -> Result<(), String> {
        for shown in &mut self.shown {
            let Some(hub) = self.cameras.hub(&shown.want.camera) else {
                // A reader keeps its hub: the camera's node may come back.
                if shown.reader.is_none() {
                    refuse(tx, shown, format!("no camera {}", shown.want.camera)).await?;
                }
                continue;
            };
            if (shown.reader.as_ref()).is_some_and(|r| Arc::ptr_eq(r.hub(), &hub)) {
                continue;
            }
            match self.cameras.reader(&hub) {
                Ok(reader) => {
                    shown._woken = Some(wake_on_frames(&hub, &self.wake));
                    shown.reader = Some(reader);
                    shown.codec = None;
                    shown.refused = None;
                    self.wake.notify_one();
                }
                Err(why) => refuse(tx, shown, why).await?,
            }
        }
        Ok(())
    }
}

/// Tells the page why `shown` cannot be shown, once per reason.
async fn refuse(tx: &mut Sink, shown: &mut Shown, why: String) -> Result<(), String> {
    if shown.refused.as_ref() == Some(&why) {
        return Ok(());
    }
    let said = say(tx, &why, Some(&shown.want.camera)).await;
    shown.refused = Some(why);
    said
}

/// A text message to the page: `{"error": why, "camera": key}`.
async fn say(tx: &mut Sink, why: &str, camera: Option<&str>) -> Result<(), String> {
    let mut message = serde_json::json!({ "error": why });
    if let Some(camera) = camera {
        message["camera"] = camera.into();
    }
    let sent = tokio::time::timeout(
        STALL_LIMIT,
        tx.send(Message::Text(message.to_string().into())),
    )
    .await;
    match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("the page stopped reading".into()),
    }
}

/// A task that wakes `wake` at each frame `hub` gets.
fn wake_on_frames(hub: &Hub, wake: &Arc<Notify>) -> AbortOnDropHandle<()> {
    let mut pushed = hub.watch_pushed();
    let wake = Arc::clone(wake);
    AbortOnDropHandle::new(tokio::spawn(async move {
        while pushed.changed().await.is_ok() {
            wake.notify_one();
        }
    }))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
