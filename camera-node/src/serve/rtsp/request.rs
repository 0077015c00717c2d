//! The pure part of reading RTSP: cutting the client's byte stream into
//! requests and interleaved packets, and reading what a request names (the
//! camera and track, the session, the transports). No I/O, so the fuzz
//! target drives exactly what the server runs.

use rtsp_types::headers::{self, RtpLowerTransport, RtpProfile, Transport, Transports};
use rtsp_types::{Message, ParseError, Request};

/// A request larger than this (request line, headers and body) is refused.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What the front of the client's bytes holds.
#[derive(Debug)]
pub enum Framed {
    /// Not a whole message yet.
    Incomplete,
    /// Bytes to skip: line breaks between messages, interleaved packets
    /// (receiver reports), responses a client should not send.
    Skip(usize),
    Request(Box<Request<Vec<u8>>>, usize),
    /// Over [`MAX_REQUEST`] and still not complete.
    TooLarge,
    Malformed,
}

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
        [b'$', _, hi, lo, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            if rest.len() < len {
                Framed::Incomplete
            } else {
                Framed::Skip(4 + len)
            }
        }
        [b'$', ..] => Framed::Incomplete,
        _ => match Message::<Vec<u8>>::parse(buf) {
            Ok((Message::Request(request), used)) => Framed::Request(Box::new(request), used),
            Ok((_, used)) => Framed::Skip(used.max(1)),
            Err(ParseError::Incomplete(_)) if buf.len() <= MAX_REQUEST => Framed::Incomplete,
            Err(ParseError::Incomplete(_)) => Framed::TooLarge,
            Err(ParseError::Error) => Framed::Malformed,
        },
    }
}

/// The camera id and track a URL path names: `/<camera>` with an
/// optional `/trackID=0` (or `track0`), slashes either way. `None` for a
/// track this server does not have.
pub fn camera_path(path: &str) -> Option<(&str, &str)> {
    let path = path.trim_matches('/');
    let (id, track) = match path.split_once('/') {
        Some((id, track)) => (id, track.trim_matches('/')),
        None => (path, ""),
    };
    matches!(track, "" | "trackID=0" | "track0" | "track1").then_some((id, track))
}

/// A transport the server can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    Tcp { channel: u8 },
    Udp { rtp: u16, rtcp: u16 },
}

/// The first acceptable transport of a request's list: RTP/AVP unicast
/// over TCP (interleaved) or UDP (with client ports). `Err` for a Transport
/// header that does not parse.
pub fn choose_transport(
    request: &Request<Vec<u8>>,
) -> Result<Option<Chosen>, headers::HeaderParseError> {
    let transports = request.typed_header::<Transports>()?;
    Ok(transports.and_then(|t| t.iter().find_map(acceptable)))
}

fn acceptable(transport: &Transport) -> Option<Chosen> {
    let Transport::Rtp(rtp) = transport else {
        return None;
    };
    if rtp.profile != RtpProfile::Avp || rtp.params.multicast {
        return None;
    }
    match &rtp.lower_transport {
        Some(RtpLowerTransport::Tcp) => Some(Chosen::Tcp {
            channel: rtp.params.interleaved.map(|(first, _)| first).unwrap_or(0),
        }),
        None | Some(RtpLowerTransport::Udp) => {
            let (rtp_port, rtcp_port) = rtp.params.client_port?;
            Some(Chosen::Udp {
                rtp: rtp_port,
                rtcp: rtcp_port.unwrap_or(rtp_port.wrapping_add(1)),
            })
        }
        Some(RtpLowerTransport::Other(_)) => None,
    }
}

/// The session id of a `Session: <id>[;timeout=..]` header.
pub fn session_id(request: &Request<Vec<u8>>) -> Option<&str> {
    request
        .header(&headers::SESSION)
        .map(|v| v.as_str().split(';').next().unwrap_or_default().trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request<Vec<u8>> {
        match frame(text.as_bytes()) {
            Framed::Request(r, used) => {
                assert_eq!(used, text.len());
                *r
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_packets_and_breaks_are_told_apart() {
        assert!(matches!(frame(b"\r\n\r\nOPTIONS"), Framed::Skip(4)));
        assert!(matches!(frame(b"$\x01\x00\x02ab"), Framed::Skip(6)));
        assert!(matches!(frame(b"$\x01\x00\x09ab"), Framed::Incomplete));
        assert!(matches!(
            frame(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n"),
            Framed::Incomplete
        ));
        assert!(matches!(
            frame(b"\x00\x01garbage\r\n\r\n"),
            Framed::Malformed
        ));
        let huge = format!("DESCRIBE rtsp://h/{}", "a".repeat(MAX_REQUEST + 1));
        assert!(matches!(frame(huge.as_bytes()), Framed::TooLarge));
        let r =
            request("PLAY rtsp://h/cam0 RTSP/1.0\r\nCSeq: 3\r\nSession: ABC;timeout=60\r\n\r\n");
        assert_eq!(session_id(&r), Some("ABC"));
    }

    #[test]
    fn paths_are_matched_leniently() {
        assert_eq!(camera_path("/cam0"), Some(("cam0", "")));
        assert_eq!(camera_path("/cam0/"), Some(("cam0", "")));
        assert_eq!(camera_path("/cam0/trackID=0"), Some(("cam0", "trackID=0")));
        assert_eq!(camera_path("cam0/trackID=0/"), Some(("cam0", "trackID=0")));
        assert_eq!(camera_path("/cam0/trackID=3"), None);
    }

    #[test]
    fn the_first_acceptable_transport_wins() {
        let setup = |t: &str| {
            request(&format!(
                "SETUP rtsp://h/cam0 RTSP/1.0\r\nCSeq: 1\r\nTransport: {t}\r\n\r\n"
            ))
        };
        assert_eq!(
            choose_transport(&setup(
                "RTP/AVP/UDP;multicast,RTP/AVP;unicast;client_port=5000-5001"
            )),
            Ok(Some(Chosen::Udp {
                rtp: 5000,
                rtcp: 5001
            }))
        );
        assert_eq!(
            choose_transport(&setup(
                "RTP/AVP/TCP;unicast;interleaved=2-3,RTP/AVP;unicast;client_port=5000-5001"
            )),
            Ok(Some(Chosen::Tcp { channel: 2 }))
        );
        assert_eq!(
            choose_transport(&setup("RTP/AVP;unicast")),
            Ok(None),
            "UDP needs client ports"
        );
        assert_eq!(
            choose_transport(&setup("RTP/SAVP;unicast;client_port=1-2")),
            Ok(None)
        );
    }
}
