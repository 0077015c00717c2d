//! RTSP responses, written by hand: a status line, headers in order
//! (repeated ones allowed, as two `WWW-Authenticate` challenges need), a body.

use std::fmt::Write as _;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Close the connection after sending.
    pub close: bool,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    pub fn ok() -> Self {
        Reply::new(200)
    }

    /// An error with a one-line explanation in a text body.
    pub fn error(status: u16, why: impl Into<String>) -> Self {
        let mut text = why.into();
        text.push_str("\r\n");
        Reply::new(status).body("text/plain", text.into_bytes())
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers.push(("Content-Type", content_type.to_owned()));
        self.body = body;
        self
    }

    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn encode(&self, cseq: Option<&str>) -> Vec<u8> {
        let mut head = format!("RTSP/1.0 {} {}\r\n", self.status, reason(self.status));
        if let Some(cseq) = cseq {
            let _ = write!(head, "CSeq: {cseq}\r\n");
        }
        head.push_str("Server: camfleet/");
        head.push_str(env!("CARGO_PKG_VERSION"));
        head.push_str("\r\n");
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if !self.body.is_empty() {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        if self.close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_echo_cseq_and_count_the_body() {
        let text = String::from_utf8(
            Reply::error(404, "no camera \"x\"")
                .header("Session", "abc")
                .encode(Some("7")),
        )
        .unwrap();
        assert!(
            text.starts_with("RTSP/1.0 404 Not Found\r\nCSeq: 7\r\n"),
            "{text}"
        );
        assert!(text.contains("Session: abc\r\n"));
        assert!(text.contains("Content-Length: 15\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nno camera \"x\"\r\n"));
    }
}
