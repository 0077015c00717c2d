//! H.264 as the fleet carries it (ITU-T H.264, ISO/IEC 14496-15): an
//! access unit is one picture's NAL units, each behind a 4-byte big-endian
//! length (AVCC), in one `Bytes`; a keyframe's access unit starts with the
//! SPS and the PPS it needs. This module reads the few fields the fleet
//! uses from the parameter sets, writes the `avcC` record (the codec
//! configuration of the TCP frame protocol v2 and of MP4) and the RFC 6381
//! codec string, and converts to Annex B for decoders that want start codes.

use bytes::{BufMut, Bytes, BytesMut};

/// NAL unit types the fleet looks at (H.264 Table 7-1).
pub mod nal {
    pub const SLICE: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
}

/// Widest and tallest picture an SPS may declare before it is taken for
/// garbage: H.264's largest level (6.2) allows 8192x4320; 16384 leaves
/// room without letting a hostile SPS ask for gigapixel buffers.
pub const MAX_DIMENSION: u32 = 16_384;
/// Longest SPS or PPS taken: real ones are tens of bytes; the `avcC`
/// record stores their lengths in 16 bits.
pub const MAX_PARAM_LEN: usize = 1024;

/// The type of a NAL unit from its header byte.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1F)
}

/// The NAL units of an AVCC access unit; a length that runs past the end
/// ends the walk (the rest is not a NAL unit).
pub fn avcc_nals(au: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = au;
    std::iter::from_fn(move || {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let end = len.checked_add(4)?;
        let nal = rest.get(4..end)?;
        rest = &rest[end..];
        Some(nal)
    })
}

/// An AVCC access unit as Annex B (start codes), for ffmpeg and other
/// decoders that read an elementary stream.
pub fn to_annex_b(au: &[u8], out: &mut Vec<u8>) {
    for nal in avcc_nals(au) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
}

/// Whether an AVCC access unit holds a B slice (H.264 Table 7-6 types 1
/// and 6): a stream with B-frames sends pictures out of display order.
pub fn has_b_slice(au: &[u8]) -> bool {
    avcc_nals(au)
        .filter(|n| matches!(nal_type(n), nal::SLICE | nal::IDR))
        .any(|n| {
            let rbsp = unescape(&n[1..n.len().min(16)]);
            let mut bits = BitReader::new(&rbsp);
            let _first_mb = bits.ue();
            matches!(bits.ue(), Some(1 | 6))
        })
}

/// The RBSP of a NAL unit's payload: emulation prevention bytes (the 03
/// of 00 00 03) removed.
pub fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Reads Exp-Golomb and fixed-width fields from an RBSP, most significant
/// bit first; `None` past the end.
#[derive(Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    pub fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    pub fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some(acc << 1 | self.bit()?))
    }

    /// ue(v); values past 2^31 are refused as garbage.
    pub fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// se(v).
    pub fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let magnitude = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { magnitude } else { -magnitude })
    }
}

/// What the fleet reads from a sequence parameter set (H.264 7.3.2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    /// constraint_set0..5 flags and the reserved bits, as the byte.
    pub constraints: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

/// Why a parameter set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("the SPS ends early")]
    Truncated,
    #[error("the SPS declares {width}x{height}, over the {MAX_DIMENSION} pixel limit")]
    TooLarge { width: u64, height: u64 },
    #[error("the SPS has a value out of range ({0})")]
    OutOfRange(&'static str),
    #[error("no SPS and PPS in the keyframe")]
    Missing,
    #[error("the avcC record is malformed ({0})")]
    BadRecord(&'static str),
}

impl Sps {
    /// Parses an SPS NAL unit (header byte included).
    pub fn parse(nal: &[u8]) -> Result<Sps, ParamError> {
        if nal_type(nal) != nal::SPS || nal.len() < 4 {
            return Err(ParamError::Truncated);
        }
        let rbsp = unescape(&nal[1..]);
        Self::read(&rbsp).ok_or(ParamError::Truncated)?
    }

    fn read(rbsp: &[u8]) -> Option<Result<Sps, ParamError>> {
        let mut r = BitReader::new(rbsp);
        let profile_idc = r.bits(8)? as u8;
        let constraints = r.bits(8)? as u8;
        let level_idc = r.bits(8)? as u8;
        let _sps_id = r.ue()?;
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = 0;
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format_idc = r.ue()?;
            if chroma_format_idc > 3 {
                return Some(Err(ParamError::OutOfRange("chroma_format_idc")));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit()?;
            }
            let _bit_depth_luma = r.ue()?;
            let _bit_depth_chroma = r.ue()?;
            let _transform_bypass = r.bit()?;
            if r.bit()? == 1 {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit()? == 1 {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let _log2_max_frame_num = r.ue()?;
        match r.ue()? {
            0 => {
                let _log2_max_poc_lsb = r.ue()?;
            }
            1 => {
                let _delta_always_zero = r.bit()?;
                let _offset_non_ref = r.se()?;
                let _offset_top_bottom = r.se()?;
                let cycle = r.ue()?;
                if cycle > 255 {
                    return Some(Err(ParamError::OutOfRange(
                        "num_ref_frames_in_pic_order_cnt_cycle",
                    )));
                }
                for _ in 0..cycle {
                    r.se()?;
                }
            }
            2 => {}
            _ => return Some(Err(ParamError::OutOfRange("pic_order_cnt_type"))),
        }
        let _max_num_ref_frames = r.ue()?;
        let _gaps = r.bit()?;
        let width_mbs = u64::from(r.ue()?) + 1;
        let height_map_units = u64::from(r.ue()?) + 1;
        let frame_mbs_only = u64::from(r.bit()?);
        if frame_mbs_only == 0 {
            let _mb_adaptive = r.bit()?;
        }
        let _direct_8x8 = r.bit()?;
        let (mut crop_x, mut crop_y) = (0u64, 0u64);
        if r.bit()? == 1 {
            let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
            // Crop units (7-19, 7-20): chroma sample steps, or 1 for 4:0:0/4:4:4.
            let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
                (1, 0) => (2, 2),
                (2, 0) => (2, 1),
                _ => (1, 1),
            };
            crop_x = sub_w * (u64::from(left) + u64::from(right));
            crop_y = sub_h * (2 - frame_mbs_only) * (u64::from(top) + u64::from(bottom));
        }
        let full_w = width_mbs * 16;
        let full_h = height_map_units * 16 * (2 - frame_mbs_only);
        let (width, height) = (full_w.saturating_sub(crop_x), full_h.saturating_sub(crop_y));
        if full_w > u64::from(MAX_DIMENSION) || full_h > u64::from(MAX_DIMENSION) {
            return Some(Err(ParamError::TooLarge {
                width: full_w,
                height: full_h,
            }));
        }
        if width == 0 || height == 0 {
            return Some(Err(ParamError::OutOfRange("cropping")));
        }
        Some(Ok(Sps {
            profile_idc,
            constraints,
            level_idc,
            width: width as u32,
            height: height as u32,
        }))
    }

    /// The RFC 6381 codec string, e.g. `avc1.4D4029`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02X}{:02X}{:02X}",
            self.profile_idc, self.constraints, self.level_idc
        )
    }

    /// RFC 6184's `profile-level-id` (the codec string's hex part).
    pub fn profile_level_id(&self) -> String {
        format!(
            "{:02X}{:02X}{:02X}",
            self.profile_idc, self.constraints, self.level_idc
        )
    }
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            // delta_scale is -128..=127 (7.4.2.1.1.1).
            let delta = r.se().filter(|d| (-128..=127).contains(d))?;
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// A stream's parameter sets: what a decoder needs before the first
/// picture, and what changes start a new configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub sps: Bytes,
    pub pps: Bytes,
    pub info: Sps,
}

impl Params {
    pub fn new(sps: Bytes, pps: Bytes) -> Result<Params, ParamError> {
        if sps.len() > MAX_PARAM_LEN || pps.len() > MAX_PARAM_LEN {
            return Err(ParamError::OutOfRange("a parameter set over 1 KiB"));
        }
        let info = Sps::parse(&sps)?;
        if nal_type(&pps) != nal::PPS || pps.len() < 2 {
            return Err(ParamError::Missing);
        }
        Ok(Params { sps, pps, info })
    }

    /// The SPS and PPS a keyframe's access unit (AVCC) starts with.
    pub fn of_keyframe(au: &Bytes) -> Result<Params, ParamError> {
        let (mut sps, mut pps) = (None, None);
        for n in avcc_nals(au) {
            match nal_type(n) {
                nal::SPS if sps.is_none() => sps = Some(au.slice_ref(n)),
                nal::PPS if pps.is_none() => pps = Some(au.slice_ref(n)),
                _ => {}
            }
        }
        match (sps, pps) {
            (Some(sps), Some(pps)) => Params::new(sps, pps),
            _ => Err(ParamError::Missing),
        }
    }

    /// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1): the
    /// body of MP4's `avcC` box and the TCP protocol v2's codec message.
    pub fn avc_config_record(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(11 + self.sps.len() + self.pps.len());
        out.put_u8(1);
        out.put_slice(&self.sps[1..4]);
        out.put_u8(0xFC | 3); // lengthSizeMinusOne: 4-byte lengths
        out.put_u8(0xE0 | 1);
        out.put_u16(self.sps.len() as u16);
        out.put_slice(&self.sps);
        out.put_u8(1);
        out.put_u16(self.pps.len() as u16);
        out.put_slice(&self.pps);
        out.freeze()
    }

    /// Reads an AVCDecoderConfigurationRecord back (the first SPS and PPS).
    pub fn from_config_record(record: &Bytes) -> Result<Params, ParamError> {
        let bad = ParamError::BadRecord;
        if record.len() < 7 || record[0] != 1 {
            return Err(bad("version"));
        }
        if record[4] & 3 != 3 {
            return Err(bad("only 4-byte NAL lengths are used"));
        }
        let mut pos = 5;
        let mut take = |count_mask: u8| -> Result<Bytes, ParamError> {
            let count = record.get(pos).ok_or(bad("short"))? & count_mask;
            pos += 1;
            let mut first = None;
            for _ in 0..count {
                let len = record.get(pos..pos + 2).ok_or(bad("short"))?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let nal = record.get(pos + 2..pos + 2 + len).ok_or(bad("short"))?;
                first.get_or_insert_with(|| record.slice_ref(nal));
                pos += 2 + len;
            }
            first.ok_or(bad("no parameter set"))
        };
        let sps = take(0x1F)?;
        let pps = take(0xFF)?;
        Params::new(sps, pps)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An SPS of x264 for 1280x720 High 3.1 (from `ffmpeg -c:v libx264`).
    pub const SPS_720P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1F, 0xAC, 0xD9, 0x40, 0x50, 0x05, 0xBB, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xC0, 0xF1, 0x83, 0x19, 0x60,
    ];

    #[test]
    fn exp_golomb_reads_the_standard_examples() {
        // 1, 010, 011, 00100 = 0, 1, 2, 3 (H.264 Table 9-2), then se 00101 = -2.
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(
            [r.ue(), r.ue(), r.ue(), r.ue()],
            [Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(r.se(), Some(-2));
        assert_eq!(BitReader::new(&[0, 0, 0, 0, 0]).ue(), None);
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
    }

    #[test]
    fn an_x264_sps_gives_size_profile_and_level() {
        let sps = Sps::parse(SPS_720P_HIGH).unwrap();
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!(sps.codec_string(), "avc1.64001F");
    }

    #[test]
    fn absurd_and_short_sps_are_refused() {
        for cut in 1..8 {
            assert!(Sps::parse(&SPS_720P_HIGH[..cut]).is_err(), "cut at {cut}");
        }
        // Baseline, 65536 macroblocks wide (ue of 65535 = 31 bits).
        let mut huge = vec![0x67, 66, 0, 30];
        // sps_id 0 (1), log2_max_frame_num-4 = 0 (1), poc type 2 (011),
        // max refs 1 (010), gaps 0, width-1 = 65535: 15 zeros, 1, 15 ones.
        let bits = "1 1 011 010 0 0000000000000001111111111111111 1 1 1 0 0";
        let bits: String = bits.split_whitespace().collect();
        let mut byte = 0u8;
        for (i, c) in bits.chars().enumerate() {
            byte = byte << 1 | u8::from(c == '1');
            if i % 8 == 7 {
                huge.push(byte);
                byte = 0;
            }
        }
        huge.push(byte << (8 - bits.len() % 8) | 1 << (7 - bits.len() % 8));
        huge.extend_from_slice(&[0x80, 0, 0]);
        assert!(
            matches!(Sps::parse(&huge), Err(ParamError::TooLarge { .. })),
            "{:?}",
            Sps::parse(&huge)
        );
    }

    #[test]
    fn a_scaling_list_delta_out_of_range_is_refused_not_overflowed() {
        // High profile, scaling matrix present, delta_scale = +2^31 - 1.
        let bits = format!(
            "{}{}{}{}",
            "1 010 1 1 0 1 1 ",
            "0".repeat(31),
            "1",
            "1".repeat(30) + "0" + " 1"
        );
        let bits: String = bits.split_whitespace().collect();
        let mut sps = vec![0x67, 100, 0, 30];
        let mut padded = bits.clone();
        while padded.len() % 8 != 0 {
            padded.push('0');
        }
        for chunk in padded.as_bytes().chunks(8) {
            sps.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
        }
        sps.extend_from_slice(&[0xFF; 8]);
        assert!(Sps::parse(&sps).is_err());
    }

    #[test]
    fn the_config_record_reads_back() {
        let params = Params::new(
            Bytes::from_static(SPS_720P_HIGH),
            Bytes::from_static(&[0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0]),
        )
        .unwrap();
        let record = params.avc_config_record();
        assert_eq!(&record[..5], &[1, 0x64, 0x00, 0x1F, 0xFF]);
        assert_eq!(Params::from_config_record(&record).unwrap(), params);
        for cut in 0..record.len() {
            assert!(Params::from_config_record(&record.slice(..cut)).is_err());
        }
    }

    #[test]
    fn avcc_walks_stop_at_a_bad_length() {
        let au = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 9, 0x41];
        let nals: Vec<&[u8]> = avcc_nals(&au).collect();
        assert_eq!(nals, [&[0x65, 0x88][..]]);
        let mut annex_b = Vec::new();
        to_annex_b(&au, &mut annex_b);
        assert_eq!(annex_b, [0, 0, 0, 1, 0x65, 0x88]);
    }
}
