//! The pure part of reading a node's HTTP/1.1 replies (RFC 9112): where a
//! response head ends and how its body is delimited, and a chunked body
//! decoded as it arrives. No I/O, so the fuzz target drives exactly what
//! the viewer runs; every length is checked against its cap before
//! anything is kept.

use shared::head::{decimal, Lines};

/// Largest response head (status line, header lines, blank line). A node's
/// heads (hyper's) are a few hundred bytes; 8 KiB is also what most
/// servers allow a request head.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines in a head, and trailer lines after a chunked body.
/// A node sends fewer than ten.
pub const MAX_HEADERS: usize = 64;
/// Largest body read from a node: the camera list with every camera's log
/// line ring (the dashboard's Sources page) stays far below it.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Longest chunk-size line (the size in hex and any extensions) in a
/// chunked body; hyper writes the size alone.
pub const MAX_CHUNK_LINE: usize = 1024;

/// What the front of the bytes read so far holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Not a whole head yet.
    Incomplete,
    Complete(ResponseHead),
    /// Over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] lines, and no end.
    TooLarge,
    /// Not an HTTP/1.x response head.
    Malformed,
}

/// A response head, and what it says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// `Content-Length`; `None` also when a `Transfer-Encoding` overrides
    /// it (RFC 9112 6.3, rule 3).
    pub content_length: Option<u64>,
    /// The last coding of `Transfer-Encoding` is `chunked`.
    pub chunked: bool,
    pub content_type: Option<String>,
    /// Bytes of the head, its blank line included: the body starts here.
    pub len: usize,
}

/// How a response's body ends (RFC 9112 6.3; the viewer never sends HEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// 1xx, 204 and 304 have none.
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunked: the body runs until the connection closes.
    UntilClose,
}

impl ResponseHead {
    pub fn framing(&self) -> Framing {
        match (self.status, self.chunked, self.content_length) {
            (100..=199 | 204 | 304, _, _) => Framing::Empty,
            (_, true, _) => Framing::Chunked,
            (_, false, Some(len)) => Framing::Length(len),
            (_, false, None) => Framing::UntilClose,
        }
    }

    /// An interim (1xx) response, which a final one follows (RFC 9110 15.2).
    pub fn is_interim(&self) -> bool {
        (100..=199).contains(&self.status)
    }
}

/// Reads the response head at the front of `buf`, the bytes read so far.
/// Bytes past the head are not looked at; a result other than
/// [`Head::Incomplete`] stays the same whatever bytes follow.
pub fn parse_head(buf: &[u8]) -> Head {
    // Garbage is refused at once rather than after MAX_HEAD bytes.
    let start = &buf[..buf.len().min(5)];
    if !b"HTTP/".starts_with(start) {
        return Head::Malformed;
    }
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut lines = Lines::new(window);
    let Some(status_line) = lines.next_line() else {
        return incomplete_or_too_large(buf);
    };
    let Some(status) = status(status_line) else {
        return Head::Malformed;
    };
    let mut head = ResponseHead {
        status,
        content_length: None,
        chunked: false,
        content_type: None,
        len: 0,
    };
    let mut transfer_encoded = false;
    let mut count = 0;
    while let Some(line) = lines.next_line() {
        if line.is_empty() {
            if transfer_encoded {
                head.content_length = None;
            }
            head.len = lines.consumed();
            return Head::Complete(head);
        }
        count += 1;
        if count > MAX_HEADERS {
            return Head::TooLarge;
        }
        if matches!(line[0], b' ' | b'\t') {
            // An obsolete folded continuation (RFC 9112 5.2): of no header read here.
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Head::Malformed;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Head::Malformed;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(len) = decimal(value) else {
                return Head::Malformed;
            };
            if head.content_length.is_some_and(|seen| seen != len) {
                return Head::Malformed;
            }
            head.content_length = Some(len);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoded = true;
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            head.chunked = trim(last).eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-type") {
            head.content_type = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    incomplete_or_too_large(buf)
}

fn incomplete_or_too_large(buf: &[u8]) -> Head {
    if buf.len() >= MAX_HEAD {
        Head::TooLarge
    } else {
        Head::Incomplete
    }
}

/// The status of `HTTP/1.x NNN[ reason]`.
fn status(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let (code, after) = rest.split_at_checked(3)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(after.first(), None | Some(b' ')) {
        return None;
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (code >= 100).then_some(code)
}

/// `text` without spaces and tabs around it.
fn trim(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &text[start..end]
}

/// What [`Chunked::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// Took this many bytes; the rest (part of a line, under
    /// [`MAX_HEAD`] bytes) is needed again with more after it.
    More(usize),
    /// The body ended after this many bytes; what follows is not its own.
    Done(usize),
    /// Data over the body's cap, a size line over [`MAX_CHUNK_LINE`], or
    /// trailers over [`MAX_HEADERS`] lines or a line over [`MAX_HEAD`].
    TooLarge,
    Malformed,
}

/// A chunked body (RFC 9112 7.1) decoded as it arrives: chunk data is
/// kept, sizes, extensions and trailers are read and dropped.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    body: Vec<u8>,
    max_body: usize,
    trailers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data are still to come.
    Data(u64),
    /// The line end after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty line.
    Trailers,
    Done,
}

impl Chunked {
    /// A decoder that keeps at most `max_body` bytes of data.
    pub fn new(max_body: usize) -> Self {
        Chunked {
            state: State::Size,
            body: Vec::new(),
            max_body,
            trailers: 0,
        }
    }

    /// Takes what it can of `input`: the bytes after those an earlier call
    /// took.
    pub fn feed(&mut self, input: &[u8]) -> Decoded {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Done => return Decoded::Done(used),
                State::Size => {
                    let line = match split_line(rest, MAX_CHUNK_LINE) {
                        Line::Whole(line, len) => {
                            used += len;
                            line
                        }
                        Line::Partial => return Decoded::More(used),
                        Line::TooLong => return Decoded::TooLarge,
                    };
                    let size = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = trim(size);
                    if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
                        return Decoded::Malformed;
                    }
                    let Some(size) = hex(size) else {
                        return Decoded::TooLarge;
                    };
                    if size == 0 {
                        self.state = State::Trailers;
                        continue;
                    }
                    let room = (self.max_body - self.body.len()) as u64;
                    if size > room {
                        return Decoded::TooLarge;
                    }
                    self.state = State::Data(size);
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Decoded::More(used);
                    }
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.body.extend_from_slice(&rest[..take]);
                    used += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => match rest {
                    [] | [b'\r'] => return Decoded::More(used),
                    [b'\r', b'\n', ..] => {
                        used += 2;
                        self.state = State::Size;
                    }
                    [b'\n', ..] => {
                        used += 1;
                        self.state = State::Size;
                    }
                    _ => return Decoded::Malformed,
                },
                State::Trailers => match split_line(rest, MAX_HEAD) {
                    Line::Whole(line, len) => {
                        used += len;
                        if line.is_empty() {
                            self.state = State::Done;
                        } else {
                            self.trailers += 1;
                            if self.trailers > MAX_HEADERS {
                                return Decoded::TooLarge;
                            }
                        }
                    }
                    Line::Partial => return Decoded::More(used),
                    Line::TooLong => return Decoded::TooLarge,
                },
            }
        }
    }

    /// The data decoded so far.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

enum Line<'a> {
    /// The line without its end, and its length with it.
    Whole(&'a [u8], usize),
    Partial,
    TooLong,
}

/// The line at the front of `buf`, if it ends within `max` bytes.
fn split_line(buf: &[u8], max: usize) -> Line<'_> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = &buf[..end];
            Line::Whole(line.strip_suffix(b"\r").unwrap_or(line), end + 1)
        }
        None if buf.len() >= max => Line::TooLong,
        None => Line::Partial,
    }
}

/// Hex digits as a number; `None` when it does not fit in u64.
fn hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, d| {
        let d = char::from(*d).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests;
