//! TCP frame protocol v1 (DESIGN.md, "Contract: TCP frame protocol v1").
//!
//! The node writes [`HELLO`], then for each frame a 20-byte big-endian
//! [`FrameHeader`] followed by one JPEG. [`FrameDecoder`] is the reading
//! side, for viewers and tests.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::error::FrameError;

/// The greeting a node writes first on every connection.
pub const HELLO: &[u8; 11] = b"CAMFLEET/1\n";
/// Bytes in a frame header: length u32, sequence u64, capture time u64.
pub const HEADER_LEN: usize = 20;
/// Largest JPEG a frame may carry. A 1920x1080 MJPEG frame at the highest
/// quality is about 1 MiB; 16 MiB leaves room for 4K stills while keeping a
/// hostile length from reserving gigabytes.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The fixed part in front of every JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Length of the JPEG that follows.
    pub len: u32,
    /// Frames since the node started; a gap is frames this client missed.
    pub seq: u64,
    /// Microseconds since the Unix epoch when the frame's last byte was read.
    pub captured_at_us: u64,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.len.to_be_bytes());
        out[4..12].copy_from_slice(&self.seq.to_be_bytes());
        out[12..20].copy_from_slice(&self.captured_at_us.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut b = &bytes[..];
        FrameHeader {
            len: b.get_u32(),
            seq: b.get_u64(),
            captured_at_us: b.get_u64(),
        }
    }
}

/// One frame, as the node's camera gave it or as it came off the wire: the
/// one frame type of the node's and the viewer's hubs, their links and
/// relays. The JPEG is one shared `Bytes`, never copied per reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Frames since the origin node started (a relay forwards it as is).
    pub seq: u64,
    /// Capture time on the origin node's clock, microseconds since the
    /// Unix epoch: when the frame's last byte was read from the camera.
    pub captured_at_us: u64,
    /// When this process had the frame in full (read from the camera or
    /// from the wire): staleness limits and send latencies count from
    /// here, on the local monotonic clock.
    pub read_at: tokio::time::Instant,
    pub jpeg: Bytes,
}

/// Reads a v1 stream: first the hello, then frames. Lengths over
/// [`MAX_FRAME_LEN`] are an error before anything is buffered for them.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    greeted: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if !self.greeted {
            let have = src.len().min(HELLO.len());
            if src[..have] != HELLO[..have] {
                return Err(FrameError::BadHello(
                    String::from_utf8_lossy(&src[..have]).into(),
                ));
            }
            if have < HELLO.len() {
                return Ok(None);
            }
            src.advance(HELLO.len());
            self.greeted = true;
        }
        let Some(head) = src.get(..HEADER_LEN) else {
            src.reserve(HEADER_LEN);
            return Ok(None);
        };
        let header = FrameHeader::decode(head.try_into().expect("slice of HEADER_LEN"));
        let len = header.len as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let jpeg = src.split_to(len).freeze();
        if !jpeg.starts_with(&[0xFF, 0xD8]) {
            return Err(FrameError::NotJpeg { seq: header.seq });
        }
        Ok(Some(Frame {
            read_at: tokio::time::Instant::now(),
            seq: header.seq,
            captured_at_us: header.captured_at_us,
            jpeg,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(frames: &[(u64, &[u8])]) -> BytesMut {
        let mut out = BytesMut::from(&HELLO[..]);
        for (seq, jpeg) in frames {
            let h = FrameHeader {
                len: jpeg.len() as u32,
                seq: *seq,
                captured_at_us: 7,
            };
            out.extend_from_slice(&h.encode());
            out.extend_from_slice(jpeg);
        }
        out
    }

    #[test]
    fn header_layout_is_big_endian() {
        let h = FrameHeader {
            len: 0x01020304,
            seq: 5,
            captured_at_us: 0x0A0B,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[..4], &[1, 2, 3, 4]);
        assert_eq!(&bytes[4..12], &[0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&bytes[12..20], &[0, 0, 0, 0, 0, 0, 0x0A, 0x0B]);
        assert_eq!(FrameHeader::decode(&bytes), h);
    }

    #[test]
    fn decodes_frames_fed_one_byte_at_a_time() {
        let all = wire(&[(1, b"\xFF\xD8ab\xFF\xD9"), (3, b"\xFF\xD8c\xFF\xD9")]);
        let mut dec = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in all.iter() {
            buf.extend_from_slice(&[*byte]);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].seq, &got[0].jpeg[..]),
            (1, &b"\xFF\xD8ab\xFF\xD9"[..])
        );
        assert_eq!(got[1].seq, 3);
    }

    #[test]
    fn a_length_over_the_cap_is_refused_without_buffering() {
        let mut buf = BytesMut::from(&HELLO[..]);
        let h = FrameHeader {
            len: MAX_FRAME_LEN as u32 + 1,
            seq: 0,
            captured_at_us: 0,
        };
        buf.extend_from_slice(&h.encode());
        let err = FrameDecoder::new().decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        assert!(buf.capacity() < 1024 * 1024);
    }

    #[test]
    fn a_wrong_greeting_is_refused_early() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200"[..]);
        let err = FrameDecoder::new().decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::BadHello(_)), "{err}");
    }

    #[test]
    fn a_payload_that_is_not_jpeg_is_refused() {
        let mut buf = wire(&[(9, b"garbage")]);
        let err = FrameDecoder::new().decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::NotJpeg { seq: 9 }), "{err}");
    }
}
