//! H.264 over RTP (RFC 6184), packetization mode 1: a NAL unit that fits
//! a packet goes alone (5.6); a larger one is cut into FU-A fragments
//! (5.8) whose two-byte header replaces the NAL unit's own header byte.
//! Every packet of a picture carries its capture time; the marker bit is
//! set on the picture's last packet. A keyframe's access unit starts with
//! its SPS and PPS (the node's splitter sees to it), so they go in band
//! before every IDR.

use std::ops::Range;

use bytes::Bytes;
use shared::h264::{avcc_nals, nal, Params};

use super::{Packets, H264_PAYLOAD_TYPE, MAX_PACKET, RTP_HEADER};

/// NAL unit type of a fragmentation unit A.
const FU_A: u8 = 28;
/// Payload bytes in one packet.
const ROOM: usize = MAX_PACKET - RTP_HEADER;

impl Packets {
    /// An access unit (AVCC) cut into RTP payloads: its NAL units, and
    /// FU-A headers where one is cut. The data is the frame's own buffer.
    pub fn h264(au: &Bytes, seq: u64, captured_at_us: u64) -> Packets {
        let mut heads = Vec::new();
        let mut parts: Vec<(Range<usize>, Range<usize>)> = Vec::new();
        let base = au.as_ptr() as usize;
        for unit in avcc_nals(au) {
            let Some(&first) = unit.first() else {
                continue;
            };
            let kind = first & 0x1F;
            if matches!(kind, nal::AUD | 12) {
                continue;
            }
            let start = unit.as_ptr() as usize - base;
            if unit.len() <= ROOM {
                parts.push((heads.len()..heads.len(), start..start + unit.len()));
                continue;
            }
            let indicator = first & 0xE0 | FU_A;
            let mut offset = 1;
            while offset < unit.len() {
                let end = unit.len().min(offset + ROOM - 2);
                let mut header = kind;
                if offset == 1 {
                    header |= 0x80;
                }
                if end == unit.len() {
                    header |= 0x40;
                }
                let h = heads.len();
                heads.extend_from_slice(&[indicator, header]);
                parts.push((h..h + 2, start + offset..start + end));
                offset = end;
            }
        }
        Packets {
            seq,
            captured_at_us,
            payload_type: H264_PAYLOAD_TYPE,
            scan: au.clone(),
            heads,
            parts,
        }
    }
}

/// The SDP `fmtp` of an H.264 stream (RFC 6184 8.1): mode 1, its profile
/// and level, its parameter sets.
pub fn fmtp(params: &Params) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "{H264_PAYLOAD_TYPE} packetization-mode=1;profile-level-id={};sprop-parameter-sets={},{}",
        params.info.profile_level_id(),
        b64.encode(&params.sps),
        b64.encode(&params.pps)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avcc(nals: &[Vec<u8>]) -> Bytes {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        Bytes::from(out)
    }

    /// Rebuilds the NAL units from the payloads (RFC 6184 5.8's receiver).
    fn depacketise(p: &Packets) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for i in 0..p.len() {
            let payload = p.payload(i).concat();
            assert!(RTP_HEADER + payload.len() <= MAX_PACKET);
            if payload[0] & 0x1F == FU_A {
                let (indicator, header) = (payload[0], payload[1]);
                if header & 0x80 != 0 {
                    out.push(vec![indicator & 0xE0 | header & 0x1F]);
                }
                out.last_mut().unwrap().extend_from_slice(&payload[2..]);
            } else {
                out.push(payload);
            }
        }
        out
    }

    #[test]
    fn small_units_go_whole_and_large_ones_in_fragments() {
        let sps = vec![0x67, 0x42, 0xC0, 0x1F, 0xAB];
        let pps = vec![0x68, 0xCE, 0x3C, 0x80];
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000u32).map(|i| (i % 251) as u8))
            .collect();
        let au = avcc(&[sps.clone(), pps.clone(), vec![0x09, 0xF0], idr.clone()]);
        let packets = Packets::h264(&au, 1, 2);
        assert_eq!(depacketise(&packets), [sps, pps, idr]);
        // Headers of the fragments: start, middle..., end; same type 5, NRI kept.
        let heads: Vec<[u8; 2]> = (0..packets.len())
            .filter_map(|i| packets.payload(i)[0].try_into().ok())
            .collect();
        assert_eq!(heads.first(), Some(&[0x60 | FU_A, 0x85]));
        assert_eq!(heads.last(), Some(&[0x60 | FU_A, 0x45]));
        assert!(heads[1..heads.len() - 1].iter().all(|h| *h == [0x7C, 0x05]));
        assert_eq!(packets.payload_type, 96);
    }

    #[test]
    fn an_access_unit_goes_in_one_segmented_send_per_run_of_equal_packets() {
        let sps = vec![0x67, 0x42, 0xC0, 0x1F, 0xAB];
        let pps = vec![0x68, 0xCE, 0x3C, 0x80];
        let slice = |kind: u8, len: u32| -> Vec<u8> {
            std::iter::once(kind)
                .chain((0..len).map(|i| (i % 251) as u8))
                .collect()
        };
        // SPS then the shorter PPS; the IDR's fragments, the last shorter;
        // a small slice, which is longer than that last fragment.
        let (idr, small) = (slice(0x65, 5000), slice(0x01, 1000));
        let packets = Packets::h264(&avcc(&[sps, pps, idr, small]), 1, 2);
        let fragments = 5000usize.div_ceil(ROOM - 2);
        assert_eq!(packets.len(), 2 + fragments + 1);
        let runs: Vec<_> = packets.runs(40).collect();
        assert_eq!(runs, [0..2, 2..2 + fragments, 2 + fragments..3 + fragments]);
        assert_eq!(
            packets.runs(2).nth(1),
            Some(2..4),
            "a run holds at most `most`"
        );
        for run in packets.runs(40) {
            let size = packets.payload_len(run.start);
            assert!(run.clone().all(|i| packets.payload_len(i) <= size));
            assert!(run
                .clone()
                .rev()
                .skip(1)
                .all(|i| packets.payload_len(i) == size));
        }
    }

    #[test]
    fn the_fmtp_names_profile_level_and_parameter_sets() {
        let params = Params::new(
            Bytes::from(crate::source::h264_pattern::sps_nal(640, 480, 15)),
            Bytes::from(crate::source::h264_pattern::pps_nal()),
        )
        .unwrap();
        let f = fmtp(&params);
        assert!(
            f.starts_with(
                "96 packetization-mode=1;profile-level-id=42C01F;sprop-parameter-sets=Z0LAH"
            ),
            "{f}"
        );
    }
}
