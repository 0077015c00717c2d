//! The TCP frame protocols (DESIGN.md, "Contract: TCP frame protocol v1";
//! docs/protocol.md, "TCP frame protocol v2").
//!
//! v1 (MJPEG cameras): the node writes [`HELLO`], then for each frame a
//! 20-byte big-endian [`FrameHeader`] followed by one JPEG.
//!
//! v2 (H.264 cameras): the node writes [`HELLO_V2`], then messages of a
//! 32-byte [`MessageHeader`] and a payload: a codec configuration (the
//! `avcC` record) before the first frame and whenever it changes, then
//! access units (AVCC), each flagged key or not.
//!
//! [`FrameDecoder`] reads either, for viewers and tests.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::error::FrameError;

/// The greeting a node writes first on every connection of an MJPEG camera.
pub const HELLO: &[u8; 11] = b"CAMFLEET/1\n";
/// The greeting of an H.264 camera's connection (protocol v2).
pub const HELLO_V2: &[u8; 11] = b"CAMFLEET/2\n";
/// Bytes in a v2 message header.
pub const HEADER_LEN_V2: usize = 32;
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

/// What a camera's frames are.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Each frame a whole JPEG (protocol v1, RTP/JPEG, multipart HTTP).
    #[default]
    Mjpeg,
    /// Each frame an access unit, AVCC (protocol v2, RTP H.264).
    H264,
}

impl Codec {
    /// The word NodeInfo, configs and flags use.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Mjpeg => "mjpeg",
            Codec::H264 => "h264",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mjpeg" | "jpeg" => Ok(Codec::Mjpeg),
            "h264" | "h.264" | "avc" => Ok(Codec::H264),
            other => Err(format!("{other:?} is not a codec; use mjpeg or h264")),
        }
    }
}

/// One frame, as the node's camera gave it or as it came off the wire: the
/// one frame type of the node's and the viewer's hubs, their links and
/// relays. The payload is one shared `Bytes`, never copied per reader.
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
    pub codec: Codec,
    /// A picture a decoder can start at: every JPEG; an H.264 IDR access
    /// unit, which then begins with its SPS and PPS.
    pub key: bool,
    /// A whole JPEG, or an H.264 access unit in AVCC (4-byte lengths).
    pub data: Bytes,
}

impl Frame {
    /// A JPEG frame read now.
    pub fn jpeg(seq: u64, captured_at_us: u64, data: Bytes) -> Frame {
        Frame {
            seq,
            captured_at_us,
            read_at: tokio::time::Instant::now(),
            codec: Codec::Mjpeg,
            key: true,
            data,
        }
    }
}

/// v2 message kinds.
pub mod kind {
    pub const JPEG: u8 = 0;
    pub const H264: u8 = 1;
    pub const CONFIG: u8 = 16;
}

/// v2 message flags.
pub mod flags {
    /// A picture a decoder can start at.
    pub const KEY: u8 = 1;
    /// The codec configuration changed; a CONFIG message came just before.
    pub const CONFIG: u8 = 2;
    /// Frames were skipped before this one: it is a keyframe, start again.
    pub const DISCONTINUITY: u8 = 4;
    /// Replayed from the node's keyframe group to a joining reader: older
    /// than live, for decoding rather than showing.
    pub const CATCH_UP: u8 = 8;
}

/// The fixed part in front of every v2 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub seq: u64,
    pub captured_at_us: u64,
}

impl MessageHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN_V2] {
        let mut out = [0u8; HEADER_LEN_V2];
        out[0..4].copy_from_slice(&self.len.to_be_bytes());
        out[4] = self.kind;
        out[5] = self.flags;
        out[6..8].copy_from_slice(&(HEADER_LEN_V2 as u16).to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.captured_at_us.to_be_bytes());
        // 24..28: decode time minus capture time (0: no B-frames); 28..32 reserved.
        out
    }

    /// The header and its declared length (at least 32: later versions may
    /// add fields, which a reader skips).
    pub fn decode(bytes: &[u8; HEADER_LEN_V2]) -> (Self, usize) {
        let mut b = &bytes[..];
        let len = b.get_u32();
        let kind = b.get_u8();
        let flags = b.get_u8();
        let header_len = usize::from(b.get_u16());
        let seq = b.get_u64();
        let captured_at_us = b.get_u64();
        (
            MessageHeader {
                len,
                kind,
                flags,
                seq,
                captured_at_us,
            },
            header_len,
        )
    }
}

/// Reads a v1 or a v2 stream: first the hello (which says which), then
/// frames. Lengths over [`MAX_FRAME_LEN`] are an error before anything is
/// buffered for them. A v2 stream's configuration messages are checked and
/// kept ([`FrameDecoder::params`]); only frames are yielded.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    version: Option<u8>,
    params: Option<crate::h264::Params>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The protocol the peer greeted with, once it has.
    pub fn version(&self) -> Option<u8> {
        self.version
    }

    /// The newest codec configuration of a v2 stream.
    pub fn params(&self) -> Option<&crate::h264::Params> {
        self.params.as_ref()
    }

    fn decode_v2(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            let Some(head) = src.get(..HEADER_LEN_V2) else {
                src.reserve(HEADER_LEN_V2);
                return Ok(None);
            };
            let (header, header_len) =
                MessageHeader::decode(head.try_into().expect("slice of HEADER_LEN_V2"));
            let len = header.len as usize;
            if len > MAX_FRAME_LEN {
                return Err(FrameError::TooLarge {
                    len,
                    max: MAX_FRAME_LEN,
                });
            }
            if !(HEADER_LEN_V2..=1024).contains(&header_len) {
                return Err(FrameError::BadHeader(format!("header length {header_len}")));
            }
            if src.len() < header_len + len {
                src.reserve(header_len + len - src.len());
                return Ok(None);
            }
            src.advance(header_len);
            let data = src.split_to(len).freeze();
            let (codec, key) = match header.kind {
                kind::CONFIG => {
                    let params = crate::h264::Params::from_config_record(&data)
                        .map_err(|e| FrameError::BadHeader(e.to_string()))?;
                    self.params = Some(params);
                    continue;
                }
                kind::H264 => (Codec::H264, header.flags & flags::KEY != 0),
                kind::JPEG => (Codec::Mjpeg, true),
                other => return Err(FrameError::BadHeader(format!("message kind {other}"))),
            };
            if codec == Codec::H264 && self.params.is_none() {
                return Err(FrameError::BadHeader(
                    "an access unit before any codec configuration".into(),
                ));
            }
            return Ok(Some(Frame {
                read_at: tokio::time::Instant::now(),
                seq: header.seq,
                captured_at_us: header.captured_at_us,
                codec,
                key,
                data,
            }));
        }
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if self.version.is_none() {
            let have = src.len().min(HELLO.len());
            let v1 = src[..have] == HELLO[..have];
            if !v1 && src[..have] != HELLO_V2[..have] {
                return Err(FrameError::BadHello(
                    String::from_utf8_lossy(&src[..have]).into(),
                ));
            }
            if have < HELLO.len() {
                return Ok(None);
            }
            src.advance(HELLO.len());
            self.version = Some(if v1 { 1 } else { 2 });
        }
        if self.version == Some(2) {
            return self.decode_v2(src);
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
        Ok(Some(Frame::jpeg(header.seq, header.captured_at_us, jpeg)))
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
            (got[0].seq, &got[0].data[..]),
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
