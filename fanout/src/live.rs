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

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::http::{Pacer, Peer, STALL_LIMIT};
use crate::{Frame, Hub, Reader};

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

/// The first byte of a binary message that carries a JPEG.
pub const KIND_JPEG: u8 = 1;
/// A frame message's fixed header: kind, key length, message number,
/// sequence number, capture time.
pub const HEADER_LEN: usize = 1 + 1 + 4 + 8 + 8;
/// Most cameras one socket shows (a node carries up to 32; a fleet's
/// dashboard a few times that).
pub const MAX_SHOWN: usize = 256;
/// Largest message a page may send (a `show` of [`MAX_SHOWN`] cameras
/// with long names fits).
pub const MAX_REQUEST: usize = 64 * 1024;
/// The unacknowledged bytes a socket may have are what its link delivered
/// in this long, so a picture waits at most about this long for the ones
/// sent before it. A quarter of a second keeps a throttled phone well
/// under a second behind while a LAN still carries dozens of tiles.
pub const QUEUE_TIME: Duration = Duration::from_millis(250);
/// The window of a socket whose rate is not known yet, or is low: a few
/// 640x480 pictures. One frame may always go when nothing is in flight,
/// however large.
pub const MIN_WINDOW: usize = 64 * 1024;
/// The largest window, whatever the link: about 40 1080p pictures.
pub const MAX_WINDOW: usize = 8 * 1024 * 1024;
/// The link's rate is what was acknowledged over this span.
const RATE_SPAN: Duration = Duration::from_secs(1);
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

/// One message from the page.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The cameras shown from now on (all others stop).
    #[serde(default)]
    pub show: Option<Vec<Want>>,
    /// The page is done with this frame message (drawn or dropped).
    #[serde(default)]
    pub ack: Option<u32>,
}

/// A camera the page shows, at most `fps` frames a second (its full rate
/// when absent).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Want {
    pub camera: String,
    #[serde(default)]
    pub fps: Option<f64>,
}

impl Request {
    /// Parses and checks one text message.
    pub fn parse(text: &str) -> Result<Request, String> {
        let expected = |e: &dyn std::fmt::Display| {
            format!(
                "expected {{\"show\":[{{\"camera\":\"...\",\"fps\":n}}]}} or {{\"ack\":n}}: {e}"
            )
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| expected(&e))?;
        if !value.is_object() {
            return Err(expected(&"not an object"));
        }
        let request: Request = serde_json::from_value(value).map_err(|e| expected(&e))?;
        if let Some(show) = &request.show {
            if show.len() > MAX_SHOWN {
                return Err(format!("{} cameras: at most {MAX_SHOWN}", show.len()));
            }
            for want in show {
                if want.camera.is_empty() || want.camera.len() > usize::from(u8::MAX) {
                    return Err(format!(
                        "camera {:?}: 1 to 255 bytes",
                        want.camera.chars().take(40).collect::<String>()
                    ));
                }
                if want.fps.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
                    return Err(format!("camera {}: fps must be above 0", want.camera));
                }
            }
        }
        Ok(request)
    }
}

/// A frame as the page receives it: the header (see docs/protocol.md), the
/// key the page asked for, then the JPEG.
pub fn encode(number: u32, key: &str, frame: &Frame) -> Bytes {
    let key = &key.as_bytes()[..key.len().min(usize::from(u8::MAX))];
    let mut message = BytesMut::with_capacity(HEADER_LEN + key.len() + frame.jpeg.len());
    message.put_u8(KIND_JPEG);
    message.put_u8(key.len() as u8);
    message.put_u32(number);
    message.put_u64(frame.seq);
    message.put_u64(frame.captured_at_us);
    message.put_slice(key);
    message.put_slice(&frame.jpeg);
    message.freeze()
}

/// What a socket has in flight: at most one frame per camera, and bytes
/// within what its link delivers in [`QUEUE_TIME`] (pure: the caller
/// passes the time).
#[derive(Debug, Default)]
pub struct Window {
    unacked: BTreeMap<u32, InFlight>,
    in_flight: usize,
    /// Acknowledged bytes with their time, over [`RATE_SPAN`].
    delivered: VecDeque<(Instant, usize)>,
    delivered_bytes: usize,
    next_number: u32,
}

#[derive(Debug)]
struct InFlight {
    camera: String,
    bytes: usize,
    sent_at: Instant,
}

impl Window {
    /// The bytes that may be in flight now.
    pub fn limit(&mut self, now: Instant) -> usize {
        self.forget_before(now);
        let rate = self.delivered_bytes as f64 / RATE_SPAN.as_secs_f64();
        ((rate * QUEUE_TIME.as_secs_f64()) as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    /// Whether `camera` may be sent a frame now.
    pub fn allows(&mut self, camera: &str, now: Instant) -> bool {
        let waiting = self.unacked.values().any(|f| f.camera == camera);
        !waiting && (self.in_flight == 0 || self.in_flight < self.limit(now))
    }

    /// Notes a frame of `bytes` sent to `camera`; its message number.
    pub fn sent(&mut self, camera: &str, bytes: usize, now: Instant) -> u32 {
        let number = self.next_number;
        self.next_number = self.next_number.wrapping_add(1);
        self.in_flight += bytes;
        self.unacked.insert(
            number,
            InFlight {
                camera: camera.to_owned(),
                bytes,
                sent_at: now,
            },
        );
        number
    }

    /// The page is done with message `number`; false when none was in flight.
    pub fn ack(&mut self, number: u32, now: Instant) -> bool {
        let Some(done) = self.unacked.remove(&number) else {
            return false;
        };
        self.in_flight -= done.bytes;
        self.delivered.push_back((now, done.bytes));
        self.delivered_bytes += done.bytes;
        self.forget_before(now);
        true
    }

    /// A camera that is no longer shown: its frame in flight no longer
    /// holds the others back.
    pub fn forget(&mut self, camera: &str) {
        let gone: Vec<u32> = (self.unacked.iter())
            .filter(|(_, f)| f.camera == camera)
            .map(|(n, _)| *n)
            .collect();
        for number in gone {
            if let Some(f) = self.unacked.remove(&number) {
                self.in_flight -= f.bytes;
            }
        }
    }

    /// When the oldest unacknowledged frame was sent.
    pub fn oldest(&self) -> Option<Instant> {
        self.unacked.values().map(|f| f.sent_at).min()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(at, bytes)) = self.delivered.front() {
            if now.saturating_duration_since(at) <= RATE_SPAN {
                break;
            }
            self.delivered.pop_front();
            self.delivered_bytes -= bytes;
        }
    }
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
                if shown.due_at().is_some_and(|at| at > now)
                    || !self.window.allows(&shown.want.camera, now)
                {
                    continue;
                }
                let Some(frame) = shown.reader.as_mut().and_then(Reader::try_newest) else {
                    continue;
                };
                shown.last_sent = Some(now);
                let key = shown.want.camera.clone();
                let len = HEADER_LEN + key.len() + frame.jpeg.len();
                let number = self.window.sent(&key, len, now);
                self.pacer.fit(len, false);
                let message = Message::Binary(encode(number, &key, &frame));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let show =
            Request::parse(r#"{"show":[{"camera":"pi-1/cam0"},{"camera":"pi-2/cam0","fps":2.5}]}"#)
                .unwrap();
        assert_eq!(
            show.show.unwrap(),
            vec![
                Want {
                    camera: "pi-1/cam0".into(),
                    fps: None
                },
                Want {
                    camera: "pi-2/cam0".into(),
                    fps: Some(2.5)
                },
            ]
        );
        assert_eq!(Request::parse(r#"{"ack":7}"#).unwrap().ack, Some(7));
        for bad in [
            "",
            "[]",
            r#"{"shows":[]}"#,
            r#"{"ack":-1}"#,
            r#"{"show":[{"camera":""}]}"#,
            r#"{"show":[{"camera":"a","fps":0}]}"#,
            r#"{"show":[{"camera":"a","fps":-3}]}"#,
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!(r#"{{"show":[{{"camera":"{}"}}]}}"#, "x".repeat(256));
        assert!(Request::parse(&long).unwrap_err().contains("255"));
        let many: Vec<String> = (0..=MAX_SHOWN)
            .map(|i| format!(r#"{{"camera":"n/{i}"}}"#))
            .collect();
        let many = format!(r#"{{"show":[{}]}}"#, many.join(","));
        assert!(Request::parse(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn a_frame_message_is_header_key_jpeg() {
        let frame = Frame {
            seq: 0x0102_0304_0506_0708,
            captured_at_us: 1_700_000_000_123_456,
            read_at: Instant::now(),
            jpeg: Bytes::from_static(b"\xFF\xD8jpeg\xFF\xD9"),
        };
        let message = encode(9, "pi-1/cam0", &frame);
        assert_eq!(message[0], KIND_JPEG);
        assert_eq!(message[1], 9);
        assert_eq!(&message[2..6], &9u32.to_be_bytes());
        assert_eq!(&message[6..14], &frame.seq.to_be_bytes());
        assert_eq!(&message[14..22], &frame.captured_at_us.to_be_bytes());
        assert_eq!(&message[22..31], b"pi-1/cam0");
        assert_eq!(&message[31..], &frame.jpeg[..]);
    }

    #[test]
    fn one_frame_per_camera_in_flight_and_bytes_within_the_window() {
        let now = Instant::now();
        let mut window = Window::default();
        assert!(window.allows("a", now));
        let a = window.sent("a", 200_000, now);
        assert!(!window.allows("a", now), "a's frame is in flight");
        assert!(!window.allows("b", now), "200 kB is past the first window");
        assert!(window.ack(a, now));
        assert!(!window.ack(a, now), "acked once");
        assert!(window.allows("a", now) && window.allows("b", now));
        let b = window.sent("b", 10_000, now);
        assert!(window.allows("c", now), "10 kB is within the window");
        window.forget("b");
        assert_eq!(window.in_flight(), 0);
        assert!(!window.ack(b, now), "forgotten with its camera");
    }

    #[test]
    fn the_window_is_what_the_link_delivers_in_a_quarter_second() {
        let start = Instant::now();
        let mut window = Window::default();
        assert_eq!(window.limit(start), MIN_WINDOW);
        // 4 MB acknowledged within a second: 1 MB may be in flight.
        for i in 0..40 {
            let at = start + Duration::from_millis(i * 20);
            let n = window.sent("a", 100_000, at);
            window.ack(n, at);
        }
        let late = start + Duration::from_millis(800);
        assert_eq!(window.limit(late), 1_000_000);
        // A second later nothing was delivered: back to the smallest.
        assert_eq!(window.limit(late + Duration::from_secs(2)), MIN_WINDOW);
        assert_eq!(window.oldest(), None);
    }
}
