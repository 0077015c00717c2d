//! Pushing a camera on to an RTSP server (mediamtx, GStreamer's RTSP
//! server, `ffmpeg -rtsp_flags listen`): ANNOUNCE with the camera's SDP,
//! SETUP `mode=record` over TCP interleaved, RECORD, then RTP/JPEG from
//! the camera's packets and an RTCP sender report every few seconds that
//! ties RTP time to capture time. Basic and Digest authentication; on any
//! failure the push reconnects with backoff.
//!
//! The push reads the camera's hub like any viewer: a server that takes
//! frames slowly gets the newest and skips the rest, never slowing the
//! camera.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use shared::backoff::Backoff;
use shared::messages::PushStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

mod client;
pub mod reply;

use self::client::Client;
use crate::cameras::status::Status;
use crate::rtp::RtpStream;
use crate::serve::rtsp::{describe_sdp, send, RtspCamera, REPORT_EVERY};
use crate::source::secrets::{check_text, redact};
use fanout::tcp::WRITE_STALL_LIMIT;
use fanout::Protocol;

/// How long connecting and each request may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// How long the push waits for the camera's first frame (its size goes
/// in the SDP).
const FIRST_FRAME_LIMIT: Duration = Duration::from_secs(10);

/// Where a camera is pushed: `rtsp://[user:pass@]host[:port]/path`.
#[derive(Clone, PartialEq, Eq)]
pub struct PushUrl {
    text: String,
    host: String,
    port: u16,
    /// The URL without user and password, as requests name it.
    target: String,
    credentials: Option<(String, String)>,
}

impl PushUrl {
    pub fn parse(text: &str) -> Result<PushUrl, String> {
        check_text(text)?;
        let rest = text
            .strip_prefix("rtsp://")
            .ok_or("a push goes to an rtsp:// URL")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                let port = p.parse().map_err(|_| format!("bad port {p:?}"))?;
                (h, port)
            }
            _ => (hostport, 554),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("the push URL has no host".into());
        }
        if path.len() <= 1 {
            return Err("the push URL needs a path (rtsp://host:8554/mycamera)".into());
        }
        let credentials = userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (
                shared::broker::percent_decode(user),
                shared::broker::percent_decode(pass),
            )
        });
        Ok(PushUrl {
            text: text.to_owned(),
            host: host.to_owned(),
            port,
            target: format!("rtsp://{hostport}{path}"),
            credentials,
        })
    }

    /// As given, password included (for the state file).
    pub fn secret(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for PushUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.text))
    }
}

impl std::fmt::Debug for PushUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PushUrl({self})")
    }
}

/// One push of one camera, with its counters.
#[derive(Debug)]
pub struct Push {
    pub id: String,
    pub url: PushUrl,
    pub stop: CancellationToken,
    state: Mutex<(PushStatus, Option<String>)>,
    /// The camera's record: told of every change of state (the retained
    /// state topic carries the pushes).
    camera: Arc<Status>,
    pub frames_sent: AtomicU64,
    pub frames_skipped: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub connects: AtomicU64,
    pub reports_sent: AtomicU64,
}

/// A push as the API shows it.
#[derive(Debug, Serialize)]
pub struct PushView {
    pub id: String,
    pub url: String,
    /// connecting, recording or backoff.
    pub state: PushStatus,
    pub last_error: Option<String>,
    pub frames_sent: u64,
    pub frames_skipped: u64,
    pub bytes_sent: u64,
    pub connects: u64,
    pub rtcp_reports: u64,
}

impl Push {
    pub fn new(
        id: String,
        url: PushUrl,
        stop: CancellationToken,
        camera: Arc<Status>,
    ) -> Arc<Push> {
        Arc::new(Push {
            id,
            url,
            stop,
            state: Mutex::new((PushStatus::Connecting, None)),
            camera,
            frames_sent: AtomicU64::new(0),
            frames_skipped: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            reports_sent: AtomicU64::new(0),
        })
    }

    fn set(&self, state: PushStatus, error: Option<String>) {
        let changed = {
            let mut now = self.state.lock().expect("push state");
            let changed = now.0 != state || (error.is_some() && now.1 != error);
            now.0 = state;
            if error.is_some() {
                now.1 = error;
            }
            changed
        };
        if changed {
            self.camera.touch();
        }
    }

    pub fn state(&self) -> PushStatus {
        self.state.lock().expect("push state").0
    }

    pub fn view(&self) -> PushView {
        let (state, last_error) = self.state.lock().expect("push state").clone();
        PushView {
            id: self.id.clone(),
            url: self.url.to_string(),
            state,
            last_error,
            frames_sent: self.frames_sent.load(Ordering::Relaxed),
            frames_skipped: self.frames_skipped.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            rtcp_reports: self.reports_sent.load(Ordering::Relaxed),
        }
    }

    /// Pushes until `self.stop`, reconnecting with backoff.
    pub async fn run(self: Arc<Self>, camera: Arc<RtspCamera>, node_id: String) {
        let mut backoff = Backoff::standard();
        tracing::info!(push = %self.url, "pushing to {}", self.url);
        while !self.stop.is_cancelled() {
            self.set(PushStatus::Connecting, None);
            backoff.attempt_started();
            let connects = self.connects.load(Ordering::Relaxed);
            let ended = tokio::select! {
                _ = self.stop.cancelled() => break,
                ended = self.run_once(&camera, &node_id) => ended,
            };
            // A run that got as far as RECORD forgets the failures before it.
            if self.connects.load(Ordering::Relaxed) != connects {
                backoff.reset();
            }
            let error = match ended {
                Ok(()) => anyhow!("the server closed the connection"),
                Err(e) => e,
            };
            let delay = backoff.next_delay();
            let why = redact(&format!("{error:#}"));
            tracing::warn!(push = %self.url, "push stopped: {why}; again in {:.1} s", delay.as_secs_f64());
            self.set(PushStatus::Backoff, Some(why));
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tracing::info!(push = %self.url, "push ended");
    }

    /// One connection: ANNOUNCE, SETUP and RECORD, then frames until it
    /// fails or `self.stop`.
    async fn run_once(&self, camera: &RtspCamera, node_id: &str) -> Result<()> {
        let first = camera
            .hub
            .first_frame(FIRST_FRAME_LIMIT)
            .await
            .context("the camera has no frame to push")?;
        let media = camera.media(&first).map_err(|e| anyhow!("{e}"))?;
        let address = (self.url.host.as_str(), self.url.port);
        let stream = tokio::time::timeout(REQUEST_LIMIT, TcpStream::connect(address))
            .await
            .map_err(|_| anyhow!("no connection within {} s", REQUEST_LIMIT.as_secs()))?
            .with_context(|| format!("cannot connect to {}:{}", self.url.host, self.url.port))?;
        let local = stream.local_addr()?.ip();
        // Nodelay, and unsent data capped: a server that takes frames
        // slowly gets the newest rather than a queue of old ones.
        let mut cap = fanout::socket::prepare_viewer(&stream);
        let (read, mut write) = stream.into_split();
        let mut client = Client {
            read: BufReader::new(read),
            cseq: 0,
            url: &self.url,
            auth: None,
        };
        let sdp = describe_sdp(node_id, camera, local, &media);
        let target = self.url.target.clone();
        client
            .call(
                &mut write,
                "ANNOUNCE",
                &target,
                &[("Content-Type", "application/sdp")],
                &sdp,
            )
            .await?;
        let track = format!("{}/trackID=0", target.trim_end_matches('/'));
        let transport = [(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        )];
        let reply = client
            .call(&mut write, "SETUP", &track, &transport, b"")
            .await?;
        let session = reply
            .header("session")
            .map(|s| s.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|s| !s.is_empty())
            .context("the server's SETUP reply has no Session")?;
        let record = [("Session", session.as_str()), ("Range", "npt=0.000-")];
        client
            .call(&mut write, "RECORD", &target, &record, b"")
            .await?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.set(PushStatus::Recording, None);
        tracing::info!(push = %self.url, "recording on the server");

        // What the server sends from now on (RTCP receiver reports, replies)
        // is read and dropped; its end is the connection's end.
        let mut read = client.read;
        let closed = async move {
            let mut sink = vec![0u8; 4096];
            loop {
                match read.read(&mut sink).await {
                    Ok(0) => return anyhow!("the server closed the connection"),
                    Ok(_) => {}
                    Err(e) => return anyhow!("reading from the server: {e}"),
                }
            }
        };
        tokio::pin!(closed);
        let mut reader = camera
            .hub
            .add_viewer(usize::MAX, Protocol::Rtsp)
            .context("no viewer slot")?;
        reader.name(&format!("push {}", self.url));
        let mut stream = RtpStream::new();
        let mut report = tokio::time::interval(REPORT_EVERY.min(Duration::from_secs(1)));
        let cname = format!("{}@{node_id}", camera.hub.camera_id());
        let skipped_before = reader.skipped();
        let result = loop {
            let frame = tokio::select! {
                _ = self.stop.cancelled() => break Ok(()),
                error = &mut closed => break Err(error),
                frame = reader.next() => frame,
                _ = report.tick() => {
                    let sr = stream.sender_report(SystemTime::now(), &cname);
                    let mut framed = vec![b'$', 1];
                    framed.extend_from_slice(&(sr.len() as u16).to_be_bytes());
                    framed.extend_from_slice(&sr);
                    match tokio::time::timeout(WRITE_STALL_LIMIT, write.write_all(&framed)).await {
                        Ok(Ok(())) => self.reports_sent.fetch_add(1, Ordering::Relaxed),
                        Ok(Err(e)) => break Err(anyhow!("sending RTCP: {e}")),
                        Err(_) => break Err(anyhow!("the server took no data for {} s", WRITE_STALL_LIMIT.as_secs())),
                    };
                    continue;
                }
            };
            let Ok(packets) = camera.packets(&frame) else {
                continue;
            };
            let framed = send::interleaved_headers(&mut stream, &packets, 0);
            let len = framed.len() * send::FRAMED_LEN + packets.payload_bytes();
            cap.fit(write.as_ref(), len, reader.is_behind());
            let written = send::write_frame(&mut write, &framed, &packets);
            match tokio::time::timeout(WRITE_STALL_LIMIT, written).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break Err(anyhow!("sending RTP: {e}")),
                Err(_) => {
                    break Err(anyhow!(
                        "the server took no data for {} s",
                        WRITE_STALL_LIMIT.as_secs()
                    ))
                }
            }
            reader.sent(&frame);
            self.frames_sent.fetch_add(1, Ordering::Relaxed);
            self.bytes_sent.fetch_add(len as u64, Ordering::Relaxed);
            self.frames_skipped
                .store(reader.skipped() - skipped_before, Ordering::Relaxed);
        };
        if self.stop.is_cancelled() {
            let teardown = format!(
                "TEARDOWN {target} RTSP/1.0\r\nCSeq: {}\r\nSession: {session}\r\nUser-Agent: camfleet\r\n\r\n",
                client.cseq + 1
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(1), write.write_all(teardown.as_bytes()))
                    .await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_urls_parse_and_hide_their_password() {
        let u = PushUrl::parse("rtsp://pub:s3cr3t@10.0.0.2:8554/door").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("10.0.0.2", 8554));
        assert_eq!(u.target, "rtsp://10.0.0.2:8554/door");
        assert_eq!(u.to_string(), "rtsp://pub:***@10.0.0.2:8554/door");
        assert!(!format!("{u:?}").contains("s3cr3t"));
        let u = PushUrl::parse("rtsp://server/cam").unwrap();
        assert_eq!((u.port, u.credentials.is_none()), (554, true));
        assert!(PushUrl::parse("rtmp://server/cam").is_err());
        assert!(PushUrl::parse("rtsp://server").is_err());
        assert!(PushUrl::parse("rtsp://server:x/cam").is_err());
        assert!(PushUrl::parse("rtsp://:8554/cam").is_err());
    }
}
