//! A live WebSocket client written from RFC 6455 and docs/protocol.md
//! alone (plain TCP, no WebSocket library): what a user's script would
//! do, and a page that stops reading.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;

/// A WebSocket upgrade's answer: the status and, on 101, the socket.
pub struct Upgrade {
    pub status: u16,
    pub head: String,
    pub socket: Option<LiveClient>,
}

/// One frame message of the live WebSocket.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub number: u32,
    pub camera: String,
    pub seq: u64,
    pub captured_at_us: u64,
    pub jpeg: Vec<u8>,
}

pub struct LiveClient {
    stream: TcpStream,
    /// Bytes read past the upgrade's head.
    buffered: Vec<u8>,
}

/// Asks `addr` (host:port) to upgrade `path` with `headers` (each
/// `Name: value`) added.
pub fn upgrade(addr: &str, path: &str, headers: &[&str]) -> Upgrade {
    let mut stream = TcpStream::connect(addr).expect("connect for the WebSocket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rng = crate::Rng(0x9E37_79B9_7F4A_7C15);
    let nonce: Vec<u8> = (0..16).map(|_| rng.below(256) as u8).collect();
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).expect("the upgrade's answer");
        assert!(n > 0, "closed before answering the upgrade: {got:?}");
        got.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let socket = (status == 101).then(|| LiveClient {
        stream,
        buffered: got[end..].to_vec(),
    });
    Upgrade {
        status,
        head,
        socket,
    }
}

impl LiveClient {
    /// Shows `cameras` at their full rate.
    pub fn show(&mut self, cameras: &[&str]) {
        let wants: Vec<serde_json::Value> = cameras
            .iter()
            .map(|c| serde_json::json!({ "camera": c }))
            .collect();
        self.send_text(&serde_json::json!({ "show": wants }).to_string());
    }

    pub fn ack(&mut self, number: u32) {
        self.send_text(&format!("{{\"ack\":{number}}}"));
    }

    /// A masked text message (a client must mask, RFC 6455 5.3).
    pub fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut message = vec![0x81];
        match payload.len() {
            n @ 0..=125 => message.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                message.push(0x80 | 126);
                message.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                message.push(0x80 | 127);
                message.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x5A, 0xC3, 0x11, 0x7E];
        message.extend_from_slice(&mask);
        message.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&message).unwrap();
    }

    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        while self.buffered.len() < want {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buffered.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    /// The next whole message: its opcode and payload (the server's are
    /// unmasked and unfragmented); an error once the server is gone.
    pub fn message(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        self.fill(2)?;
        let opcode = self.buffered[0] & 0x0F;
        let (len, start) = match self.buffered[1] & 0x7F {
            126 => {
                self.fill(4)?;
                (
                    u64::from(u16::from_be_bytes([self.buffered[2], self.buffered[3]])),
                    4,
                )
            }
            127 => {
                self.fill(10)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buffered[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        let end = start + len as usize;
        self.fill(end)?;
        let payload = self.buffered[start..end].to_vec();
        self.buffered.drain(..end);
        Ok((opcode, payload))
    }

    /// The next frame message, acknowledged; text messages (errors) are
    /// returned as `Err` with their text.
    pub fn frame(&mut self) -> Result<LiveFrame, String> {
        loop {
            let (opcode, payload) = self.message().map_err(|e| format!("socket: {e}"))?;
            match opcode {
                0x1 => return Err(String::from_utf8_lossy(&payload).into_owned()),
                0x2 => {
                    let frame = parse_frame(&payload)?;
                    self.ack(frame.number);
                    return Ok(frame);
                }
                0x8 => return Err("closed by the server".into()),
                _ => {}
            }
        }
    }

    pub fn raw(&self) -> &TcpStream {
        &self.stream
    }
}

/// A binary message as docs/protocol.md lays it out.
pub fn parse_frame(payload: &[u8]) -> Result<LiveFrame, String> {
    if payload.len() < 22 || payload[0] != 1 {
        return Err(format!(
            "not a frame message: {:?}",
            &payload[..payload.len().min(24)]
        ));
    }
    let key_len = usize::from(payload[1]);
    let be64 = |at: usize| u64::from_be_bytes(payload[at..at + 8].try_into().unwrap());
    Ok(LiveFrame {
        number: u32::from_be_bytes(payload[2..6].try_into().unwrap()),
        seq: be64(6),
        captured_at_us: be64(14),
        camera: String::from_utf8_lossy(&payload[22..22 + key_len]).into_owned(),
        jpeg: payload[22 + key_len..].to_vec(),
    })
}
