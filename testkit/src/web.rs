//! Clients for the node's HTTP and RTSP servers: curl as a user types it,
//! and a raw RTSP client that reads replies and interleaved RTP the way a
//! player does, to check what players take for granted.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use super::node::Node;
use super::{output_with_input, require, wait_for};

impl Node {
    /// `rtsp://127.0.0.1:<port>`, from the node's log.
    pub fn rtsp_base(&self) -> String {
        self.logged_url("RTSP on ", "/<camera>")
    }

    /// `http://127.0.0.1:<port>`, from the node's log.
    pub fn http_base(&self) -> String {
        self.logged_url("web page and API on ", "/\n")
    }

    fn logged_url(&self, before: &str, after: &str) -> String {
        wait_for(before, Duration::from_secs(20), || {
            let log = self.log();
            let at = log.find(before)? + before.len();
            let rest = &log[at..];
            Some(rest[..rest.find(after)?].to_owned())
        })
        .replace("0.0.0.0", "127.0.0.1")
    }
}

/// Plays `frames` frames of an RTSP URL with ffmpeg over `transport`
/// (`tcp` or `udp`) and decodes them to grey raw video; the byte count
/// proves their size.
pub fn rtsp_decode(url: &str, transport: &str, frames: usize) -> usize {
    require("ffmpeg", "ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-rtsp_transport", transport, "-i", url])
        // Every decoded picture once: a constant-rate output would repeat
        // one whose timestamp came late and count it as decoded.
        .args(["-fps_mode", "passthrough"])
        .args([
            "-frames:v",
            &frames.to_string(),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg -rtsp_transport {transport} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.len()
}

/// An HTTP reply as curl gives it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `curl` with `args` (a URL among them); status and body.
pub fn curl(args: &[&str]) -> HttpReply {
    require("curl", "curl");
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "15",
            "-w",
            "\n%{http_code} %{content_type}",
        ])
        .args(args)
        .output()
        .expect("run curl");
    let split = out
        .stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("curl's status line");
    let tail = String::from_utf8_lossy(&out.stdout[split + 1..]).into_owned();
    let (status, content_type) = tail.split_once(' ').unwrap_or((&tail, ""));
    HttpReply {
        status: status
            .parse()
            .unwrap_or_else(|_| panic!("curl {args:?} failed: {out:?}")),
        content_type: content_type.to_owned(),
        body: out.stdout[..split].to_vec(),
    }
}

/// `POST` of a JSON `body` to `url`, as the pages' buttons send it.
pub fn post_json(url: &str, body: &str) -> HttpReply {
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
        url,
    ])
}

/// One part of a multipart MJPEG stream.
#[derive(Debug)]
pub struct Part {
    pub content_length: usize,
    pub jpeg: Vec<u8>,
}

/// Reads `url` with `curl -N` for `seconds` and splits the multipart body:
/// each part must be headers, exactly Content-Length bytes of JPEG, then
/// the boundary. A part cut off by the time limit is left out.
pub fn read_multipart(url: &str, seconds: u32, boundary: &str) -> Vec<Part> {
    require("curl", "curl");
    let out = Command::new("curl")
        .args(["-s", "-N", "--max-time", &seconds.to_string(), url])
        .output()
        .expect("run curl");
    let body = out.stdout;
    let delimiter = format!("--{boundary}\r\n").into_bytes();
    assert!(
        body.starts_with(&delimiter),
        "the body starts with the boundary"
    );
    let mut parts = Vec::new();
    let mut at = delimiter.len();
    while let Some(end) = find(&body[at..], b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&body[at..at + end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap_or_else(|| panic!("part without Content-Length: {head:?}"))
            .trim()
            .parse()
            .unwrap();
        assert!(head.contains("Content-Type: image/jpeg"), "{head:?}");
        let start = at + end + 4;
        let Some(after) = body.get(start + len..start + len + 2 + delimiter.len()) else {
            break; // cut off by --max-time
        };
        assert_eq!(&after[..2], b"\r\n");
        assert_eq!(
            &after[2..],
            &delimiter[..],
            "the boundary right after the JPEG"
        );
        parts.push(Part {
            content_length: len,
            jpeg: body[start..start + len].to_vec(),
        });
        at = start + len + 2 + delimiter.len();
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An RTSP reply.
#[derive(Debug, Clone)]
pub struct RtspReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RtspReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn session(&self) -> String {
        let value = self.header("Session").expect("a Session header");
        value.split(';').next().unwrap().to_owned()
    }
}

/// A raw RTSP client: requests with CSeq, replies, interleaved packets.
pub struct RtspClient {
    stream: TcpStream,
    /// A slow link's pacing: bytes a second, since when, bytes taken.
    pace: Option<(f64, Instant, u64)>,
    buf: Vec<u8>,
    cseq: u32,
    /// Interleaved packets (channel, data) read while waiting for replies.
    pub packets: VecDeque<(u8, Vec<u8>)>,
}

impl RtspClient {
    pub fn connect(base: &str) -> Self {
        let addr = base.trim_start_matches("rtsp://").to_owned();
        let stream = wait_for("the RTSP port", Duration::from_secs(20), || {
            TcpStream::connect(&addr).ok()
        });
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        RtspClient {
            stream,
            pace: None,
            buf: Vec::new(),
            cseq: 0,
            packets: VecDeque::new(),
        }
    }

    /// A client on a slow link: a 32 KiB receive buffer, reading at most
    /// `rate` bytes a second ([`crate::SlowLink`]).
    pub fn connect_slow(base: &str, rate: f64) -> Self {
        let addr = base
            .trim_start_matches("rtsp://")
            .parse()
            .expect("host:port");
        let link = crate::SlowLink::connect(addr, rate);
        link.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        RtspClient {
            stream: link.stream,
            pace: Some((rate, Instant::now(), 0)),
            buf: Vec::new(),
            cseq: 0,
            packets: VecDeque::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends `METHOD url` with `headers` and waits for the reply.
    pub fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> RtspReply {
        self.cseq += 1;
        let mut text = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        self.send_raw(text.as_bytes());
        let reply = self.reply(Duration::from_secs(15)).expect("an RTSP reply");
        let cseq = self.cseq.to_string();
        assert_eq!(reply.header("CSeq"), Some(cseq.as_str()), "{reply:?}");
        reply
    }

    /// The next reply; interleaved packets before it are queued.
    pub fn reply(&mut self, limit: Duration) -> Option<RtspReply> {
        let deadline = Instant::now() + limit;
        loop {
            self.take_packets();
            if let Some(reply) = self.parse_reply() {
                return Some(reply);
            }
            if Instant::now() > deadline || !self.fill() {
                return None;
            }
        }
    }

    /// The next interleaved packet within `limit`.
    pub fn packet(&mut self, limit: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = Instant::now() + limit;
        loop {
            self.take_packets();
            if let Some(p) = self.packets.pop_front() {
                return Some(p);
            }
            if Instant::now() > deadline || !self.fill() {
                return None;
            }
        }
    }

    /// Whether the server closed the connection within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Reads what is there; false when the connection ended.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        let mut len = chunk.len();
        if let Some((rate, since, taken)) = self.pace {
            // Pacing a reader's byte rate, not waiting for anything.
            let due = since + Duration::from_secs_f64(taken as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            len = crate::SlowLink::CHUNK;
        }
        match self.stream.read(&mut chunk[..len]) {
            Ok(0) => false,
            Ok(n) => {
                if let Some((_, _, taken)) = &mut self.pace {
                    *taken += n as u64;
                }
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(_) => false,
        }
    }

    fn take_packets(&mut self) {
        while self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
            if self.buf.len() < 4 + len {
                return;
            }
            let packet = self.buf[4..4 + len].to_vec();
            self.packets.push_back((self.buf[1], packet));
            self.buf.drain(..4 + len);
        }
    }

    fn parse_reply(&mut self) -> Option<RtspReply> {
        if !self.buf.starts_with(b"RTSP/") {
            return None;
        }
        let end = find(&self.buf, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        if self.buf.len() < end + 4 + len {
            return None;
        }
        let body = self.buf[end + 4..end + 4 + len].to_vec();
        self.buf.drain(..end + 4 + len);
        Some(RtspReply {
            status,
            headers,
            body,
        })
    }
}

/// One sample's value in a Prometheus text exposition, by its name and
/// labels as written.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// `promtool check metrics` accepts `text`.
pub fn promtool_accepts(text: &str) {
    require("promtool", "prometheus");
    let out = output_with_input(
        Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
    );
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
