//! The live WebSocket's messages (docs/protocol.md, "The live
//! WebSocket"): what a page asks for, and a frame as it goes out.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;

use crate::Frame;

/// The first byte of a binary message that carries a JPEG.
pub const KIND_JPEG: u8 = 1;
/// The first byte of a binary message that carries fragmented MP4 (an
/// H.264 camera): an init segment when the stream's parameters are new to
/// the page, then one frame's `moof` and `mdat`.
pub const KIND_MP4: u8 = 2;
/// A frame message's fixed header: kind, key length, message number,
/// sequence number, capture time.
pub const HEADER_LEN: usize = 1 + 1 + 4 + 8 + 8;
/// Most cameras one socket shows (a node carries up to 32; a fleet's
/// dashboard a few times that).
pub const MAX_SHOWN: usize = 256;
/// Largest message a page may send (a `show` of [`MAX_SHOWN`] cameras
/// with long names fits).
pub const MAX_REQUEST: usize = 64 * 1024;

/// One message from the page.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The cameras shown from now on (all others stop).
    #[serde(default)]
    pub show: Option<Vec<Want>>,
    /// The page is done with this frame message (drawn or dropped).
    #[serde(default)]
    pub ack: Option<u32>,
}

/// A camera the page shows, at most `fps` frames a second (its full rate
/// when absent).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Want {
    pub camera: String,
    #[serde(default)]
    pub fps: Option<f64>,
}

impl Request {
    /// Parses and checks one text message.
    pub fn parse(text: &str) -> Result<Request, String> {
        let expected = |e: &dyn std::fmt::Display| {
            format!(
                "expected {{\"show\":[{{\"camera\":\"...\",\"fps\":n}}]}} or {{\"ack\":n}}: {e}"
            )
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| expected(&e))?;
        if !value.is_object() {
            return Err(expected(&"not an object"));
        }
        let request: Request = serde_json::from_value(value).map_err(|e| expected(&e))?;
        if let Some(show) = &request.show {
            if show.len() > MAX_SHOWN {
                return Err(format!("{} cameras: at most {MAX_SHOWN}", show.len()));
            }
            for want in show {
                if want.camera.is_empty() || want.camera.len() > usize::from(u8::MAX) {
                    return Err(format!(
                        "camera {:?}: 1 to 255 bytes",
                        want.camera.chars().take(40).collect::<String>()
                    ));
                }
                if want.fps.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
                    return Err(format!("camera {}: fps must be above 0", want.camera));
                }
            }
        }
        Ok(request)
    }
}

/// A frame as the page receives it: the header (see docs/protocol.md), the
/// key the page asked for, then the JPEG.
pub fn encode(number: u32, key: &str, frame: &Frame) -> Bytes {
    encode_kind(KIND_JPEG, number, key, frame, &frame.data)
}

/// An H.264 frame as the page receives it: the header, the key, then
/// `mp4` (see [`KIND_MP4`]).
pub fn encode_mp4(number: u32, key: &str, frame: &Frame, mp4: &[u8]) -> Bytes {
    encode_kind(KIND_MP4, number, key, frame, mp4)
}

fn encode_kind(kind: u8, number: u32, key: &str, frame: &Frame, payload: &[u8]) -> Bytes {
    let key = &key.as_bytes()[..key.len().min(usize::from(u8::MAX))];
    let mut message = BytesMut::with_capacity(HEADER_LEN + key.len() + payload.len());
    message.put_u8(kind);
    message.put_u8(key.len() as u8);
    message.put_u32(number);
    message.put_u64(frame.seq);
    message.put_u64(frame.captured_at_us);
    message.put_slice(key);
    message.put_slice(payload);
    message.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn requests_are_checked() {
        let show =
            Request::parse(r#"{"show":[{"camera":"pi-1/cam0"},{"camera":"pi-2/cam0","fps":2.5}]}"#)
                .unwrap();
        assert_eq!(
            show.show.unwrap(),
            vec![
                Want {
                    camera: "pi-1/cam0".into(),
                    fps: None
                },
                Want {
                    camera: "pi-2/cam0".into(),
                    fps: Some(2.5)
                },
            ]
        );
        assert_eq!(Request::parse(r#"{"ack":7}"#).unwrap().ack, Some(7));
        for bad in [
            "",
            "[]",
            r#"{"shows":[]}"#,
            r#"{"ack":-1}"#,
            r#"{"show":[{"camera":""}]}"#,
            r#"{"show":[{"camera":"a","fps":0}]}"#,
            r#"{"show":[{"camera":"a","fps":-3}]}"#,
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!(r#"{{"show":[{{"camera":"{}"}}]}}"#, "x".repeat(256));
        assert!(Request::parse(&long).unwrap_err().contains("255"));
        let many: Vec<String> = (0..=MAX_SHOWN)
            .map(|i| format!(r#"{{"camera":"n/{i}"}}"#))
            .collect();
        let many = format!(r#"{{"show":[{}]}}"#, many.join(","));
        assert!(Request::parse(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn a_frame_message_is_header_key_jpeg() {
        let frame = Frame {
            codec: crate::frame::Codec::Mjpeg,
            key: true,
            seq: 0x0102_0304_0506_0708,
            captured_at_us: 1_700_000_000_123_456,
            read_at: Instant::now(),
            data: Bytes::from_static(b"\xFF\xD8jpeg\xFF\xD9"),
        };
        let message = encode(9, "pi-1/cam0", &frame);
        assert_eq!(message[0], KIND_JPEG);
        assert_eq!(message[1], 9);
        assert_eq!(&message[2..6], &9u32.to_be_bytes());
        assert_eq!(&message[6..14], &frame.seq.to_be_bytes());
        assert_eq!(&message[14..22], &frame.captured_at_us.to_be_bytes());
        assert_eq!(&message[22..31], b"pi-1/cam0");
        assert_eq!(&message[31..], &frame.data[..]);
    }
}
