//! One RTSP client connection: reads requests (and interleaved RTCP, which
//! it skips), answers them in order, and closes on malformed input, an
//! oversized request, or silence from a client that streams nothing here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rtsp_types::headers;
use rtsp_types::{Method, Request, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::reply::Reply;
use super::request::{
    camera_path, choose_transport, frame, session_id, Chosen, Framed, MAX_REQUEST,
};
use super::session::{
    bind_udp_pair, ConnWriter, Prepared, Session, SharedWriter, Transport as SessionTransport,
};
use super::{RtspCamera, RtspServer};
use crate::auth::REALM;
use fanout::{Frame, Hub, Protocol};

use crate::rtp::{random_u64, H264_PAYLOAD_TYPE, PAYLOAD_TYPE};

/// How long DESCRIBE and PLAY wait for a camera's first frame.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(5);
const PUBLIC: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER";

/// What to do once a reply is on its way.
struct StartPlay {
    session: Arc<Session>,
    first: Frame,
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    server: Arc<RtspServer>,
    writer: SharedWriter,
    closing: CancellationToken,
    /// The digest nonce this connection hands out.
    nonce: String,
}

/// Serves one client until it leaves, misbehaves or `cancel`.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    server: Arc<RtspServer>,
    cancel: CancellationToken,
) {
    let cap = fanout::socket::prepare_viewer(&stream);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => return tracing::debug!("RTSP client vanished: {e}"),
    };
    let (mut reader, writer) = stream.into_split();
    let conn = Conn {
        id,
        peer,
        local,
        server: Arc::clone(&server),
        writer: Arc::new(tokio::sync::Mutex::new(ConnWriter { half: writer, cap })),
        closing: cancel.child_token(),
        nonce: format!("{:016x}", random_u64()),
    };
    tracing::debug!("RTSP client connected");
    match conn.run(&mut reader).await {
        Ok(()) => tracing::debug!("RTSP client left"),
        Err(e) => {
            tracing::info!("RTSP client dropped: {e}");
            linger(&conn.writer, &mut reader).await;
        }
    }
    for session in server.take_sessions(|s| s.conn == id && !s.is_udp()) {
        session.close().await;
        tracing::info!(session = %session.id, camera = %session.camera_id(), "RTSP session ended with its connection");
    }
}

impl Conn {
    async fn run(&self, reader: &mut OwnedReadHalf) -> Result<(), String> {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            self.drain(&mut buf).await?;
            let idle_limit = self.server.session_timeout;
            let streaming_here = self
                .server
                .any_session(|s| s.conn == self.id && !s.is_udp());
            tokio::select! {
                _ = self.closing.cancelled() => return Ok(()),
                _ = tokio::time::sleep(idle_limit), if !streaming_here => {
                    return Err(format!("no request for {} s", idle_limit.as_secs()));
                }
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }

    /// Answers every complete request in `buf`.
    async fn drain(&self, buf: &mut BytesMut) -> Result<(), String> {
        loop {
            match frame(buf) {
                Framed::Incomplete => return Ok(()),
                Framed::Skip(n) => buf.advance(n),
                Framed::Request(request, used) => {
                    buf.advance(used);
                    self.answer(*request).await?;
                }
                Framed::TooLarge => {
                    let why = format!("request over {} KiB", MAX_REQUEST / 1024);
                    self.send(&Reply::error(413, &why).closing(), None).await?;
                    return Err(why);
                }
                Framed::Malformed => {
                    let line = first_line(buf);
                    self.send(&Reply::error(400, "malformed RTSP request").closing(), None)
                        .await?;
                    return Err(format!("malformed request {line:?}"));
                }
            }
        }
    }

    async fn answer(&self, request: Request<Vec<u8>>) -> Result<(), String> {
        let cseq = request
            .header(&headers::CSEQ)
            .map(|v| v.as_str().trim().to_owned());
        let (reply, then) = self.dispatch(&request).await;
        let method: &str = request.method().into();
        tracing::debug!(
            "{method} {} -> {}",
            request.request_uri().map(|u| u.as_str()).unwrap_or("*"),
            reply.status
        );
        self.send(&reply, cseq.as_deref()).await?;
        if reply.close {
            return Err(format!("closed after {}", reply.status));
        }
        if let Some(StartPlay { session, first }) = then {
            session.play(Arc::clone(&self.server), first).await;
        }
        Ok(())
    }

    async fn send(&self, reply: &Reply, cseq: Option<&str>) -> Result<(), String> {
        let bytes = reply.encode(cseq);
        let mut w = self.writer.lock().await;
        match tokio::time::timeout(Duration::from_secs(10), w.half.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("took over 10 s to accept a reply".into()),
        }
    }

    async fn dispatch(&self, request: &Request<Vec<u8>>) -> (Reply, Option<StartPlay>) {
        if request.version() != Version::V1_0 {
            return (Reply::error(505, "this server speaks RTSP/1.0"), None);
        }
        let method = request.method();
        if *method == Method::Options {
            return (Reply::ok().header("Public", PUBLIC), None);
        }
        let authorization = request.header(&headers::AUTHORIZATION).map(|v| v.as_str());
        if !self
            .server
            .users
            .allows(authorization, method.into(), &self.nonce)
        {
            if authorization.is_some() {
                tracing::warn!("RTSP: wrong user name or password");
            }
            let reply = Reply::error(401, "user name and password required")
                .header(
                    "WWW-Authenticate",
                    format!("Digest realm=\"{REALM}\", nonce=\"{}\"", self.nonce),
                )
                .header("WWW-Authenticate", format!("Basic realm=\"{REALM}\""));
            return (reply, None);
        }
        if let Some(session) = session_id(request).and_then(|id| self.server.session(id)) {
            session.touch();
        }
        let outcome = match method {
            Method::Describe => self.describe(request).await,
            Method::Setup => self.setup(request).await,
            Method::Play => return self.play(request).await.unwrap_or_else(|r| (r, None)),
            Method::Pause => self.pause(request).await,
            Method::Teardown => self.teardown(request).await,
            Method::GetParameter => Ok(Reply::ok()),
            _ => Err(Reply::error(501, "not implemented").header("Public", PUBLIC)),
        };
        (outcome.unwrap_or_else(|r| r), None)
    }

    /// The camera a request URL names: `/<camera>` with an optional
    /// `/trackID=0` (or `track0`), slashes either way.
    fn camera(&self, request: &Request<Vec<u8>>) -> Result<(Arc<RtspCamera>, String), Reply> {
        let url = request
            .request_uri()
            .ok_or_else(|| Reply::error(400, "no request URL"))?;
        let (id, _) = camera_path(url.path())
            .ok_or_else(|| Reply::error(404, "each camera has one track, trackID=0"))?;
        let Some(camera) = self.server.camera(id) else {
            let known = self.server.camera_ids();
            return Err(Reply::error(
                404,
                format!("no camera {id:?} here; try one of {}", known.join(", ")),
            ));
        };
        let mut base = url.clone();
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_path(&format!("/{id}/"));
        Ok((camera, base.to_string()))
    }

    async fn describe(&self, request: &Request<Vec<u8>>) -> Result<Reply, Reply> {
        let (camera, base) = self.camera(request)?;
        let first = first_frame(&camera.hub).await?;
        let media = camera
            .media(&first)
            .map_err(|e| Reply::error(415, format!("camera {}: {e}", camera.hub.camera_id())))?;
        let sdp = describe_sdp(&self.server.node_id, &camera, self.local.ip(), &media);
        Ok(Reply::ok()
            .header("Content-Base", base)
            .body("application/sdp", sdp))
    }

    async fn setup(&self, request: &Request<Vec<u8>>) -> Result<Reply, Reply> {
        let (camera, _) = self.camera(request)?;
        if let Some(id) = session_id(request) {
            return Err(match self.server.session(id) {
                Some(_) => Reply::error(
                    459,
                    "one track per session: SETUP it without a Session header",
                ),
                None => Reply::error(454, format!("session {id} not found")),
            });
        }
        let chosen = match choose_transport(request) {
            Ok(Some(chosen)) => chosen,
            Ok(None) => {
                let offered = request
                    .header(&headers::TRANSPORT)
                    .map(|v| v.as_str())
                    .unwrap_or_default();
                tracing::info!("RTSP: no usable transport in {offered:?}");
                return Err(Reply::error(
                    461,
                    "supported: RTP/AVP/TCP;unicast;interleaved=... or RTP/AVP;unicast;client_port=...",
                ));
            }
            Err(_) => return Err(Reply::error(400, "unreadable Transport header")),
        };
        let Some(reader) = camera
            .hub
            .add_viewer(self.server.max_viewers, Protocol::Rtsp)
        else {
            tracing::warn!(camera = %camera.hub.camera_id(), "refusing RTSP viewer: {} viewers already connected (max_viewers)", self.server.max_viewers);
            return Err(Reply::error(
                453,
                format!("camera has {} viewers already", self.server.max_viewers),
            ));
        };
        let transport = match chosen {
            Chosen::Tcp { channel } => SessionTransport::Tcp {
                writer: Arc::clone(&self.writer),
                channel,
                conn_closing: self.closing.clone(),
            },
            Chosen::Udp { rtp, rtcp } => {
                let ip = self.peer.ip();
                let pair =
                    bind_udp_pair(self.local.ip(), (ip, rtp).into(), (ip, rtcp).into()).await;
                let (rtp, rtcp) = pair.map_err(|e| {
                    tracing::warn!("RTSP: cannot open UDP ports: {e}");
                    Reply::error(500, format!("cannot open UDP ports: {e}"))
                })?;
                SessionTransport::Udp {
                    rtp: Arc::new(rtp),
                    rtcp: Arc::new(rtcp),
                }
            }
        };
        let id = format!("{:016X}", random_u64());
        let track_url = request
            .request_uri()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let session = Session::new(
            id.clone(),
            Arc::clone(&camera),
            self.id,
            track_url,
            transport,
            reader,
        );
        let reply = Reply::ok()
            .header("Transport", session.transport_reply.clone())
            .header(
                "Session",
                format!("{id};timeout={}", self.server.session_timeout.as_secs()),
            );
        tracing::info!(
            session = %id,
            camera = %camera.hub.camera_id(),
            "RTSP session set up: {}",
            session.transport_reply
        );
        self.server.insert_session(Arc::new(session));
        Ok(reply)
    }

    async fn play(&self, request: &Request<Vec<u8>>) -> Result<(Reply, Option<StartPlay>), Reply> {
        let session = self.session(request)?;
        let camera = &session.camera;
        ensure_enabled(&camera.hub)?;
        let reply = Reply::ok()
            .header("Session", session.id.clone())
            .header("Range", "npt=0.000-");
        let (first, rtp_seq, rtp_time) = match session.prepare_play(FIRST_FRAME_WAIT).await {
            Prepared::Playing => return Ok((reply, None)),
            Prepared::NoFrame => return Err(no_frames(&camera.hub)),
            Prepared::Ready {
                first,
                rtp_seq,
                rtp_time,
            } => (first, rtp_seq, rtp_time),
        };
        camera
            .packets(&first)
            .map_err(|e| Reply::error(415, format!("camera {}: {e}", camera.hub.camera_id())))?;
        let reply = reply.header(
            "RTP-Info",
            format!("url={};seq={rtp_seq};rtptime={rtp_time}", session.track_url),
        );
        Ok((reply, Some(StartPlay { session, first })))
    }

    async fn pause(&self, request: &Request<Vec<u8>>) -> Result<Reply, Reply> {
        let session = self.session(request)?;
        session.pause().await;
        Ok(Reply::ok().header("Session", session.id.clone()))
    }

    async fn teardown(&self, request: &Request<Vec<u8>>) -> Result<Reply, Reply> {
        let session = self.session(request)?;
        if let Some(session) = self.server.remove_session(&session.id) {
            session.close().await;
            tracing::info!(session = %session.id, camera = %session.camera_id(), "RTSP session ended (TEARDOWN)");
        }
        Ok(Reply::ok())
    }

    fn session(&self, request: &Request<Vec<u8>>) -> Result<Arc<Session>, Reply> {
        let id = session_id(request).ok_or_else(|| Reply::error(454, "no Session header"))?;
        self.server
            .session(id)
            .ok_or_else(|| Reply::error(454, format!("session {id} not found")))
    }
}

/// The newest frame, waiting a little for a camera that is starting.
async fn first_frame(hub: &Hub) -> Result<Frame, Reply> {
    ensure_enabled(hub)?;
    hub.first_frame(FIRST_FRAME_WAIT)
        .await
        .ok_or_else(|| no_frames(hub))
}

fn ensure_enabled(hub: &Hub) -> Result<(), Reply> {
    if hub.is_enabled() {
        return Ok(());
    }
    Err(Reply::error(
        503,
        format!(
            "camera {} is stopped (POST /api/v1/control starts it)",
            hub.camera_id()
        ),
    ))
}

fn no_frames(hub: &Hub) -> Reply {
    Reply::error(503, format!("camera {} has no frames yet", hub.camera_id()))
}

pub(crate) fn describe_sdp(
    node: &str,
    camera: &RtspCamera,
    local: std::net::IpAddr,
    media: &super::Media,
) -> Vec<u8> {
    use sdp_types::{Attribute, Connection, Media, MediaType, Origin, Time, TransportProto};
    let mut sdp = sdp_types::Session::new(
        Origin::with_ip_addr(random_u64() >> 16, 1, local),
        format!("camfleet {node} {}", camera.hub.camera_id()),
    );
    sdp.connection = Some(Connection::from_ip_addr(match local {
        std::net::IpAddr::V4(_) => std::net::IpAddr::from([0, 0, 0, 0]),
        std::net::IpAddr::V6(_) => std::net::IpAddr::from([0u16; 8]),
    }));
    sdp.times.push(Time::new(0, 0));
    sdp.attributes.push(Attribute::with_value("control", "*"));
    sdp.attributes
        .push(Attribute::with_value("range", "npt=now-"));
    let (pt, mut attributes) = match media {
        super::Media::Jpeg { width, height } => (
            PAYLOAD_TYPE,
            vec![
                Attribute::with_value("rtpmap", format!("{PAYLOAD_TYPE} JPEG/90000")),
                Attribute::with_value("x-dimensions", format!("{width},{height}")),
            ],
        ),
        super::Media::H264(params) => (
            H264_PAYLOAD_TYPE,
            vec![
                Attribute::with_value("rtpmap", format!("{H264_PAYLOAD_TYPE} H264/90000")),
                Attribute::with_value("fmtp", crate::rtp::h264::fmtp(params)),
            ],
        ),
    };
    attributes.push(Attribute::with_value("control", "trackID=0"));
    attributes.push(Attribute::with_value("framerate", camera.fps));
    let mut m = Media::new(MediaType::Video, 0, TransportProto::RtpAvp, pt);
    m.attributes = attributes;
    sdp.medias.push(m);
    let mut out = Vec::new();
    sdp.write(&mut out).expect("writing to a Vec cannot fail");
    out
}

/// Closes after an error reply without resetting the connection: a close
/// with unread input sends RST, which can destroy the reply before the
/// client reads it. So: end our side, then discard input for a moment.
async fn linger(writer: &SharedWriter, reader: &mut OwnedReadHalf) {
    let _ = writer.lock().await.half.shutdown().await;
    let mut sink = vec![0u8; 16 * 1024];
    let discard = async { while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), discard).await;
}

fn first_line(buf: &[u8]) -> String {
    let end = buf
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(buf.len())
        .min(80);
    String::from_utf8_lossy(&buf[..end]).trim().to_owned()
}
