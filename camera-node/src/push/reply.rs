//! The pure part of a push connection's reading: cutting the server's
//! bytes into replies (RFC 2326 7) and the interleaved packets (RFC 2326
//! 10.12) a server may send before one, every length capped. No I/O, so
//! the fuzz target drives exactly what the push runs.

use shared::head::{decimal, Lines};

/// Longest reply head (status line, header lines, blank line) read from a
/// server.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in a reply; servers send fewer than ten.
pub const MAX_HEADERS: usize = 64;
/// Largest reply body (read and dropped): the replies to ANNOUNCE, SETUP
/// and RECORD carry none, or a line of error text.
pub const MAX_BODY: usize = 16 * 1024;
/// An interleaved packet's header: `$`, the channel, a 16-bit length.
const INTERLEAVED_HEAD: usize = 4;
/// The most bytes [`frame`] needs to see to decide: an interleaved packet
/// of the largest length (more than a reply head and body).
pub const MAX_FRAMED: usize = INTERLEAVED_HEAD + u16::MAX as usize;
const _: () = assert!(MAX_HEAD + MAX_BODY <= MAX_FRAMED);

/// What the front of the server's bytes holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// Not a whole packet or reply yet.
    Incomplete,
    /// Bytes to skip: an interleaved packet (RTCP receiver reports, or RTP
    /// a server echoes), or line breaks between messages.
    Skip(usize),
    /// A reply, and the bytes it took with its body.
    Reply(Reply, usize),
    /// Over [`MAX_HEAD`], [`MAX_HEADERS`] or [`MAX_BODY`].
    TooLarge,
    /// Not an RTSP reply (a request from the server, or garbage).
    Malformed,
}

/// A server's reply; its body is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    /// Names and values as sent, trimmed; repeated names kept in order.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The first header of this name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the packet or reply at the front of `buf`, the bytes read so far.
/// A packet, a reply or a refusal, once found, stays the same whatever
/// bytes follow (a run of line breaks may grow).
pub fn frame(buf: &[u8]) -> Framed {
    let breaks = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    if breaks > 0 {
        return Framed::Skip(breaks);
    }
    match buf {
        [] => Framed::Incomplete,
        [b'$', _, hi, lo, ..] => {
            let len = INTERLEAVED_HEAD + usize::from(u16::from_be_bytes([*hi, *lo]));
            if buf.len() < len {
                Framed::Incomplete
            } else {
                Framed::Skip(len)
            }
        }
        [b'$', ..] => Framed::Incomplete,
        _ => reply(buf),
    }
}

fn reply(buf: &[u8]) -> Framed {
    // Anything else is refused at once rather than after MAX_HEAD bytes.
    if !b"RTSP/".starts_with(&buf[..buf.len().min(5)]) {
        return Framed::Malformed;
    }
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut lines = Lines::new(window);
    let Some(status_line) = lines.next_line() else {
        return incomplete_or_too_large(buf);
    };
    let status_line = String::from_utf8_lossy(status_line);
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let Some(status) = parts.next().and_then(status) else {
        return Framed::Malformed;
    };
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    let mut count = 0;
    while let Some(line) = lines.next_line() {
        if line.is_empty() {
            return with_body(buf, lines.consumed(), status, reason, headers);
        }
        count += 1;
        if count > MAX_HEADERS {
            return Framed::TooLarge;
        }
        // A line without a colon says nothing; it is passed over.
        let line = String::from_utf8_lossy(line);
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    incomplete_or_too_large(buf)
}

/// The reply whose head is `head_len` bytes, once its body is in `buf`.
fn with_body(
    buf: &[u8],
    head_len: usize,
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
) -> Framed {
    let reply = Reply {
        status,
        reason,
        headers,
    };
    let body = match reply.header("content-length") {
        None => 0,
        Some(text) => match decimal(text.as_bytes()) {
            Some(len) if len <= MAX_BODY as u64 => len as usize,
            Some(_) => return Framed::TooLarge,
            None => return Framed::Malformed,
        },
    };
    let used = head_len + body;
    if buf.len() < used {
        Framed::Incomplete
    } else {
        Framed::Reply(reply, used)
    }
}

fn incomplete_or_too_large(buf: &[u8]) -> Framed {
    if buf.len() >= MAX_HEAD {
        Framed::TooLarge
    } else {
        Framed::Incomplete
    }
}

/// A status code: three digits, from 100 (RFC 2326 7.1.1).
fn status(text: &str) -> Option<u16> {
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&code| code >= 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_of(text: &[u8]) -> (Reply, usize) {
        match frame(text) {
            Framed::Reply(reply, used) => (reply, used),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn a_reply_gives_status_reason_and_headers() {
        let text = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nSession:  12345678;timeout=60 \r\n\r\nNEXT";
        let (reply, used) = reply_of(text);
        assert_eq!((reply.status, reply.reason.as_str()), (200, "OK"));
        assert_eq!(reply.header("session"), Some("12345678;timeout=60"));
        assert_eq!(reply.header("CSEQ"), Some("2"));
        assert_eq!(&text[used..], b"NEXT");
        // Bare LF line ends, a reason of several words, a line without a colon.
        let text =
            b"RTSP/1.0 401 Unauthorized Here\nbogus\nWWW-Authenticate: Basic realm=\"x\"\n\n";
        let (reply, used) = reply_of(text);
        assert_eq!(
            (reply.status, reply.reason.as_str()),
            (401, "Unauthorized Here")
        );
        assert_eq!(reply.header("www-authenticate"), Some("Basic realm=\"x\""));
        assert_eq!((reply.headers.len(), used), (1, text.len()));
    }

    #[test]
    fn the_body_is_part_of_the_reply() {
        let text = b"RTSP/1.0 454 Session Not Found\r\nContent-Length: 5\r\n\r\nerror";
        for cut in 0..text.len() {
            assert_eq!(frame(&text[..cut]), Framed::Incomplete, "cut at {cut}");
        }
        let (reply, used) = reply_of(text);
        assert_eq!((reply.status, used), (454, text.len()));
    }

    #[test]
    fn interleaved_packets_and_line_breaks_are_skipped() {
        assert_eq!(frame(b"$\x01\x00\x02abRTSP/1.0"), Framed::Skip(6));
        assert_eq!(frame(b"$\x01\x00\x09ab"), Framed::Incomplete);
        assert_eq!(frame(b"$\x01"), Framed::Incomplete);
        assert_eq!(frame(b"$\x00\x00\x00"), Framed::Skip(4));
        assert_eq!(frame(b"\r\n\r\nRTSP"), Framed::Skip(4));
        // The largest packet is framed, not refused.
        let mut big = vec![b'$', 1, 0xFF, 0xFF];
        big.resize(MAX_FRAMED, 0);
        assert_eq!(frame(&big[..MAX_FRAMED - 1]), Framed::Incomplete);
        assert_eq!(frame(&big), Framed::Skip(MAX_FRAMED));
    }

    #[test]
    fn what_is_not_a_reply_is_malformed() {
        for text in [
            &b"ANNOUNCE rtsp://h/x RTSP/1.0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"garbage",
            b"RTSP/1.0\r\n\r\n",
            b"RTSP/1.0 20 OK\r\n\r\n",
            b"RTSP/1.0 +20 OK\r\n\r\n",
            b"RTSP/1.0 099 Low\r\n\r\n",
            b"RTSP/1.0 200 OK\r\nContent-Length: many\r\n\r\n",
        ] {
            assert_eq!(
                frame(text),
                Framed::Malformed,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        // Refused from its first bytes, and a bad status line before the head's end.
        assert_eq!(frame(b"GET"), Framed::Malformed);
        assert_eq!(frame(b"RTSP/1.0 OK\r\nCSeq"), Framed::Malformed);
    }

    #[test]
    fn replies_over_their_caps_are_too_large() {
        let mut head = b"RTSP/1.0 200 OK\r\nX-Pad: ".to_vec();
        head.resize(MAX_HEAD, b'a');
        assert_eq!(frame(&head[..MAX_HEAD - 1]), Framed::Incomplete);
        assert_eq!(frame(&head), Framed::TooLarge);
        let lines = |n: usize| {
            let mut text = b"RTSP/1.0 200 OK\r\n".to_vec();
            for i in 0..n {
                text.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
            }
            text.extend_from_slice(b"\r\n");
            text
        };
        assert!(matches!(frame(&lines(MAX_HEADERS)), Framed::Reply(..)));
        assert_eq!(frame(&lines(MAX_HEADERS + 1)), Framed::TooLarge);
        let body = |len: usize| format!("RTSP/1.0 200 OK\r\nContent-Length: {len}\r\n\r\n");
        assert_eq!(frame(body(MAX_BODY).as_bytes()), Framed::Incomplete);
        assert_eq!(frame(body(MAX_BODY + 1).as_bytes()), Framed::TooLarge);
        assert_eq!(
            frame(body(usize::MAX).as_bytes()),
            Framed::TooLarge,
            "a length that fits no buffer"
        );
        let overflow = b"RTSP/1.0 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(frame(overflow), Framed::Malformed);
    }
}
