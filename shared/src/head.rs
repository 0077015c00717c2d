//! What HTTP/1.1 and RTSP/1.0 reply heads share (RFC 9112 2, RFC 2326
//! 6-7): their lines, and the numbers in them. The node reads an RTSP
//! server's replies to its push with these, the viewer a node's HTTP ones.

/// The whole lines of a buffer, without their `\n` or `\r\n` (RFC 9112 2.2
/// lets a recipient take a bare LF as a line end).
pub struct Lines<'a> {
    buf: &'a [u8],
    /// Where the next line starts.
    at: usize,
}

impl<'a> Lines<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Lines { buf, at: 0 }
    }

    /// The next whole line, if there is one.
    pub fn next_line(&mut self) -> Option<&'a [u8]> {
        let rest = &self.buf[self.at..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        self.at += end + 1;
        let line = &rest[..end];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// How many bytes the lines read so far took, their ends included.
    pub fn consumed(&self) -> usize {
        self.at
    }
}

/// A run of ASCII digits, as a number that fits in u64 (`None` when it is
/// empty, holds anything else, or is too large).
pub fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_lf_or_crlf_and_a_partial_one_waits() {
        let mut lines = Lines::new(b"RTSP/1.0 200 OK\r\nCSeq: 1\n\r\npartial");
        assert_eq!(lines.next_line(), Some(&b"RTSP/1.0 200 OK"[..]));
        assert_eq!(lines.next_line(), Some(&b"CSeq: 1"[..]));
        assert_eq!(lines.next_line(), Some(&b""[..]));
        assert_eq!(lines.consumed(), 27);
        assert_eq!(lines.next_line(), None, "no line end yet");
        assert_eq!(lines.consumed(), 27);
    }

    #[test]
    fn decimals_are_digits_only_and_fit() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"+1",
            b"1 ",
            b"0x10",
            b"-0",
        ] {
            assert_eq!(decimal(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
