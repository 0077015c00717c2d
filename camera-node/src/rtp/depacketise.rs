//! The receiving side of RFC 2435, as players do it: fragments back into a
//! frame and a JPEG rebuilt from the RTP/JPEG header with the standard
//! Huffman tables. The node only sends; this checks that what it sends
//! comes back whole (unit tests, the fuzz target, the RTSP tests).

use super::jpeg::standard_huffman_tables;
use super::PAYLOAD_TYPE;

/// Frames larger than this are dropped (the node's own frame cap).
const MAX_SCAN: usize = shared::frame::MAX_FRAME_LEN;

/// One frame as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    pub timestamp: u32,
    pub kind: u8,
    pub width: u16,
    pub height: u16,
    pub restart_interval: u16,
    /// Luma then chroma table, 64 bytes each.
    pub tables: Vec<u8>,
    pub scan: Vec<u8>,
}

/// Collects the fragments of one frame at a time; a lost or reordered
/// fragment drops that frame.
#[derive(Debug, Default)]
pub struct Depacketiser {
    current: Option<ReceivedFrame>,
}

impl Depacketiser {
    /// Takes one RTP packet; returns a frame when its last fragment arrives.
    pub fn push(&mut self, packet: &[u8]) -> Result<Option<ReceivedFrame>, &'static str> {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return Err("not an RTP packet");
        }
        if packet[1] & 0x7f != PAYLOAD_TYPE {
            return Err("not payload type 26");
        }
        let marker = packet[1] & 0x80 != 0;
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        // Header extensions and CSRCs are not sent by the node; skip them anyway.
        let csrcs = usize::from(packet[0] & 0x0f) * 4;
        let mut payload = packet.get(12 + csrcs..).ok_or("short RTP header")?;
        if packet[0] & 0x10 != 0 {
            let ext = payload.get(2..4).ok_or("short extension")?;
            let words = usize::from(u16::from_be_bytes([ext[0], ext[1]]));
            payload = payload.get(4 + words * 4..).ok_or("short extension")?;
        }
        let [_, o0, o1, o2, kind, q, w, h, rest @ ..] = payload else {
            return Err("short JPEG header");
        };
        let offset = u32::from_be_bytes([0, *o0, *o1, *o2]) as usize;
        let mut rest = rest;
        let mut restart_interval = 0;
        if *kind >= 64 {
            let r = rest.get(..4).ok_or("short restart header")?;
            restart_interval = u16::from_be_bytes([r[0], r[1]]);
            rest = &rest[4..];
        }
        if offset == 0 {
            let mut tables = Vec::new();
            if *q >= 128 {
                let header = rest.get(..4).ok_or("short quantisation header")?;
                let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
                if header[1] != 0 || len != 128 {
                    return Err("expected two 8-bit quantisation tables");
                }
                tables = rest
                    .get(4..4 + len)
                    .ok_or("short quantisation tables")?
                    .to_vec();
                rest = &rest[4 + len..];
            }
            self.current = Some(ReceivedFrame {
                timestamp,
                kind: *kind,
                width: u16::from(*w) * 8,
                height: u16::from(*h) * 8,
                restart_interval,
                tables,
                scan: Vec::new(),
            });
        }
        let Some(frame) = self.current.as_mut() else {
            return Ok(None); // joined in the middle of a frame
        };
        if frame.timestamp != timestamp || frame.scan.len() != offset {
            self.current = None;
            return Err("fragment lost or out of order");
        }
        if frame.scan.len() + rest.len() > MAX_SCAN {
            self.current = None;
            return Err("frame too large");
        }
        frame.scan.extend_from_slice(rest);
        Ok(if marker { self.current.take() } else { None })
    }
}

impl ReceivedFrame {
    /// A complete JPEG, rebuilt the way RFC 2435's appendix does it.
    pub fn to_jpeg(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.scan.len() + 700);
        out.extend_from_slice(&[0xff, 0xd8]);
        for (id, table) in self.tables.chunks(64).enumerate() {
            out.extend_from_slice(&[0xff, 0xdb, 0, 67, id as u8]);
            out.extend_from_slice(table);
        }
        let luma = if self.kind & 0x3f == 0 { 0x21 } else { 0x22 };
        out.extend_from_slice(&[0xff, 0xc0, 0, 17, 8]);
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&[3, 1, luma, 0, 2, 0x11, 1, 3, 0x11, 1]);
        for (class_id, (counts, values)) in standard_huffman_tables() {
            let len = 2 + 1 + 16 + values.len();
            out.extend_from_slice(&[0xff, 0xc4]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.push(class_id);
            out.extend_from_slice(counts);
            out.extend_from_slice(values);
        }
        if self.restart_interval > 0 {
            out.extend_from_slice(&[0xff, 0xdd, 0, 4]);
            out.extend_from_slice(&self.restart_interval.to_be_bytes());
        }
        out.extend_from_slice(&[0xff, 0xda, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
        out.extend_from_slice(&self.scan);
        out.extend_from_slice(&[0xff, 0xd9]);
        out
    }
}
