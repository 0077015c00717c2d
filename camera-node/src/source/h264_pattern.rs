//! The test pattern as H.264 (`--source test --codec h264`), encoded in
//! process with no library: a keyframe sends every macroblock as I_PCM
//! (its samples as they are, H.264 7.3.5), the pictures between send only
//! the macroblocks that changed, as I_PCM, and skip the rest (P_Skip with
//! a zero motion vector copies the reference). The stream is Constrained
//! Baseline, CAVLC, one slice a picture, no B-frames, POC type 2: what
//! every decoder plays, lossless, so the burned-in frame number reads back
//! exactly. Keyframes are large (1.5 bytes a pixel); the frames between
//! carry the label band and the moving box. It exercises the fleet's
//! H.264 paths, not compression: a real camera's encoder does that.

use bytes::Bytes;

/// Pixels per macroblock side.
const MB: usize = 16;
/// log2 of MaxFrameNum (frame_num is 16 bits).
const LOG2_MAX_FRAME_NUM: u32 = 16;

/// Writes bits most significant first, with Exp-Golomb codes.
#[derive(Debug, Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u8,
    bits: u8,
}

impl BitWriter {
    fn bit(&mut self, b: bool) {
        self.acc = self.acc << 1 | u8::from(b);
        self.bits += 1;
        if self.bits == 8 {
            self.out.push(self.acc);
            self.acc = 0;
            self.bits = 0;
        }
    }

    fn bits(&mut self, n: u32, value: u32) {
        for i in (0..n).rev() {
            self.bit(value >> i & 1 == 1);
        }
    }

    fn ue(&mut self, v: u32) {
        let code = u64::from(v) + 1;
        let len = 64 - code.leading_zeros();
        self.bits(len - 1, 0);
        for i in (0..len).rev() {
            self.bit(code >> i & 1 == 1);
        }
    }

    fn se(&mut self, v: i32) {
        self.ue(if v > 0 {
            2 * v as u32 - 1
        } else {
            2 * v.unsigned_abs()
        });
    }

    fn align_zero(&mut self) {
        while self.bits != 0 {
            self.bit(false);
        }
    }

    /// Whole bytes, once aligned.
    fn bytes(&mut self, data: &[u8]) {
        debug_assert_eq!(self.bits, 0);
        self.out.extend_from_slice(data);
    }

    /// rbsp_trailing_bits, then the NAL unit: its header byte and the RBSP
    /// with emulation prevention bytes.
    fn nal(mut self, header: u8) -> Vec<u8> {
        self.bit(true);
        self.align_zero();
        let mut out = Vec::with_capacity(self.out.len() + self.out.len() / 64 + 1);
        out.push(header);
        let mut zeros = 0;
        for b in self.out {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }
}

/// The level for a picture size and rate (H.264 Table A-1, by macroblocks
/// a second and a picture): 3.1, 4.0 or 5.1.
fn level(width: u32, height: u32, fps: u32) -> u8 {
    let mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
    match mbs * u64::from(fps) {
        r if r <= 108_000 && mbs <= 3_600 => 31,
        r if r <= 245_760 && mbs <= 8_192 => 40,
        _ => 51,
    }
}

/// The sequence parameter set (NAL unit with its header).
pub fn sps_nal(width: u32, height: u32, fps: u32) -> Vec<u8> {
    let (mbs_w, mbs_h) = (width.div_ceil(16), height.div_ceil(16));
    let mut w = BitWriter::default();
    w.bits(8, 66); // Baseline
    w.bits(8, 0xC0); // constraint_set0 and set1: Constrained Baseline
    w.bits(8, u32::from(level(width, height, fps)));
    w.ue(0); // seq_parameter_set_id
    w.ue(LOG2_MAX_FRAME_NUM - 4);
    w.ue(2); // pic_order_cnt_type: output order is decode order
    w.ue(1); // max_num_ref_frames
    w.bit(false); // gaps_in_frame_num_value_allowed_flag
    w.ue(mbs_w - 1);
    w.ue(mbs_h - 1);
    w.bit(true); // frame_mbs_only_flag
    w.bit(true); // direct_8x8_inference_flag
    let (crop_r, crop_b) = ((mbs_w * 16 - width) / 2, (mbs_h * 16 - height) / 2);
    w.bit(crop_r > 0 || crop_b > 0);
    if crop_r > 0 || crop_b > 0 {
        w.ue(0);
        w.ue(crop_r);
        w.ue(0);
        w.ue(crop_b);
    }
    w.bit(true); // vui_parameters_present_flag
    w.bits(4, 0); // aspect ratio, overscan, video signal, chroma location
    w.bit(true); // timing_info_present_flag
    w.bits(32, 1); // num_units_in_tick
    w.bits(32, 2 * fps.max(1)); // time_scale: two ticks a frame
    w.bit(true); // fixed_frame_rate_flag
    w.bits(3, 0); // nal_hrd, vcl_hrd, pic_struct_present
    w.bit(true); // bitstream_restriction_flag
    w.bit(true); // motion_vectors_over_pic_boundaries_flag
    w.ue(0); // max_bytes_per_pic_denom
    w.ue(0); // max_bits_per_mb_denom
    w.ue(16);
    w.ue(16);
    w.ue(0); // max_num_reorder_frames: pictures leave the decoder at once
    w.ue(1); // max_dec_frame_buffering
    w.nal(0x67)
}

/// The picture parameter set.
pub fn pps_nal() -> Vec<u8> {
    let mut w = BitWriter::default();
    w.ue(0); // pic_parameter_set_id
    w.ue(0); // seq_parameter_set_id
    w.bit(false); // entropy_coding_mode_flag: CAVLC
    w.bit(false); // bottom_field_pic_order_in_frame_present_flag
    w.ue(0); // num_slice_groups_minus1
    w.ue(0); // num_ref_idx_l0_default_active_minus1
    w.ue(0); // num_ref_idx_l1_default_active_minus1
    w.bit(false); // weighted_pred_flag
    w.bits(2, 0); // weighted_bipred_idc
    w.se(0); // pic_init_qp_minus26
    w.se(0); // pic_init_qs_minus26
    w.se(0); // chroma_qp_index_offset
    w.bit(true); // deblocking_filter_control_present_flag
    w.bit(false); // constrained_intra_pred_flag
    w.bit(false); // redundant_pic_cnt_present_flag
    w.nal(0x68)
}

/// A picture in 4:2:0, sizes rounded up to whole macroblocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yuv {
    mbs_w: usize,
    mbs_h: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Yuv {
    /// BT.601 limited range from RGB (`width` x `height`, 3 bytes a
    /// pixel); the edge pixels repeat into the padding.
    pub fn from_rgb(rgb: &[u8], width: usize, height: usize) -> Yuv {
        let (mbs_w, mbs_h) = (width.div_ceil(MB), height.div_ceil(MB));
        let (pw, ph) = (mbs_w * MB, mbs_h * MB);
        let mut yuv = Yuv {
            mbs_w,
            mbs_h,
            y: vec![16; pw * ph],
            u: vec![128; pw * ph / 4],
            v: vec![128; pw * ph / 4],
        };
        let px = |x: usize, y: usize| {
            let i = (y.min(height - 1) * width + x.min(width - 1)) * 3;
            (
                i32::from(rgb[i]),
                i32::from(rgb[i + 1]),
                i32::from(rgb[i + 2]),
            )
        };
        for y in 0..ph {
            for x in 0..pw {
                let (r, g, b) = px(x, y);
                yuv.y[y * pw + x] = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
            }
        }
        for y in 0..ph / 2 {
            for x in 0..pw / 2 {
                let (r, g, b) = px(2 * x, 2 * y);
                yuv.u[y * pw / 2 + x] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8;
                yuv.v[y * pw / 2 + x] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8;
            }
        }
        yuv
    }

    /// Replaces the top `rows` macroblock rows with `band`'s.
    pub fn with_top(&self, band: &Yuv, rows: usize) -> Yuv {
        let mut out = self.clone();
        let pw = self.mbs_w * MB;
        let luma = (rows * MB * pw).min(band.y.len());
        out.y[..luma].copy_from_slice(&band.y[..luma]);
        let chroma = (luma / 4).min(band.u.len());
        out.u[..chroma].copy_from_slice(&band.u[..chroma]);
        out.v[..chroma].copy_from_slice(&band.v[..chroma]);
        out
    }

    /// Macroblock `i`'s samples as I_PCM sends them: 256 luma, then 64 Cb
    /// and 64 Cr, each in raster order. Zero is not a sample value I_PCM
    /// may carry in every decoder, so it is sent as 1.
    fn macroblock(&self, i: usize, out: &mut Vec<u8>) {
        let (mx, my) = (i % self.mbs_w, i / self.mbs_w);
        let pw = self.mbs_w * MB;
        for row in 0..MB {
            let at = (my * MB + row) * pw + mx * MB;
            out.extend(self.y[at..at + MB].iter().map(|&s| s.max(1)));
        }
        for plane in [&self.u, &self.v] {
            for row in 0..MB / 2 {
                let at = (my * MB / 2 + row) * pw / 2 + mx * MB / 2;
                out.extend(plane[at..at + MB / 2].iter().map(|&s| s.max(1)));
            }
        }
    }

    fn same_macroblock(&self, other: &Yuv, i: usize) -> bool {
        let mut a = Vec::with_capacity(384);
        let mut b = Vec::with_capacity(384);
        self.macroblock(i, &mut a);
        other.macroblock(i, &mut b);
        a == b
    }

    fn macroblocks(&self) -> usize {
        self.mbs_w * self.mbs_h
    }
}

/// Encodes pictures one after another: a keyframe (with SPS and PPS) every
/// `keyframe_every` pictures, changed macroblocks in between.
#[derive(Debug)]
pub struct Encoder {
    sps: Vec<u8>,
    pps: Vec<u8>,
    keyframe_every: u32,
    since_key: u32,
    idr_id: u32,
    previous: Option<Yuv>,
}

impl Encoder {
    pub fn new(width: u32, height: u32, fps: u32, keyframe_every: u32) -> Self {
        Encoder {
            sps: sps_nal(width, height, fps),
            pps: pps_nal(),
            keyframe_every: keyframe_every.max(1),
            since_key: 0,
            idr_id: 0,
            previous: None,
        }
    }

    /// The next picture as an AVCC access unit, and whether it is a keyframe.
    pub fn encode(&mut self, picture: Yuv) -> (Bytes, bool) {
        let key = self.previous.is_none() || self.since_key >= self.keyframe_every;
        let mut w = BitWriter::default();
        w.ue(0); // first_mb_in_slice
        if key {
            self.since_key = 0;
            w.ue(7); // slice_type: I, as every slice of the picture
            w.ue(0); // pic_parameter_set_id
            w.bits(LOG2_MAX_FRAME_NUM, 0);
            w.ue(self.idr_id % 2); // idr_pic_id differs between neighbours
            self.idr_id += 1;
            w.bit(false); // no_output_of_prior_pics_flag
            w.bit(false); // long_term_reference_flag
        } else {
            w.ue(5); // slice_type: P
            w.ue(0);
            w.bits(
                LOG2_MAX_FRAME_NUM,
                self.since_key % (1 << LOG2_MAX_FRAME_NUM),
            );
            w.bit(false); // num_ref_idx_active_override_flag
            w.bit(false); // ref_pic_list_modification_flag_l0
            w.bit(false); // adaptive_ref_pic_marking_mode_flag
        }
        w.se(0); // slice_qp_delta
        w.ue(1); // disable_deblocking_filter_idc: off
        let mut samples = Vec::with_capacity(384);
        let mut skipped = 0;
        for i in 0..picture.macroblocks() {
            if let (false, Some(previous)) = (key, &self.previous) {
                if picture.same_macroblock(previous, i) {
                    skipped += 1;
                    continue;
                }
                w.ue(skipped); // mb_skip_run
                skipped = 0;
                w.ue(5 + 25); // mb_type: I_PCM in a P slice
            } else {
                w.ue(25); // mb_type: I_PCM
            }
            w.align_zero(); // pcm_alignment_zero_bit
            samples.clear();
            picture.macroblock(i, &mut samples);
            w.bytes(&samples);
        }
        if skipped > 0 {
            w.ue(skipped);
        }
        let slice = w.nal(if key { 0x65 } else { 0x41 });
        self.since_key += 1;
        self.previous = Some(picture);
        let mut au = Vec::with_capacity(slice.len() + 64);
        let units: Vec<&[u8]> = if key {
            vec![&self.sps, &self.pps, &slice]
        } else {
            vec![&slice]
        };
        for unit in units {
            au.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            au.extend_from_slice(unit);
        }
        (Bytes::from(au), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::h264::{Params, Sps};

    #[test]
    fn the_parameter_sets_read_back() {
        for (w, h, fps, codec) in [
            (640, 480, 15, "avc1.42C01F"),
            (1920, 1080, 30, "avc1.42C028"),
            (100, 50, 5, "avc1.42C01F"),
        ] {
            let sps = Sps::parse(&sps_nal(w, h, fps)).unwrap();
            assert_eq!((sps.width, sps.height), (w, h));
            assert_eq!(sps.codec_string(), codec);
        }
    }

    #[test]
    fn only_changed_macroblocks_are_sent_between_keyframes() {
        let black = vec![0u8; 64 * 48 * 3];
        let mut dot = black.clone();
        dot[..3].copy_from_slice(&[255, 255, 255]);
        let mut enc = Encoder::new(64, 48, 10, 3);
        let (first, key) = enc.encode(Yuv::from_rgb(&black, 64, 48));
        assert!(key);
        assert!(first.len() > 12 * 384, "{} bytes", first.len());
        Params::of_keyframe(&first).unwrap();
        let (same, key) = enc.encode(Yuv::from_rgb(&black, 64, 48));
        assert!(!key && same.len() < 16, "{} bytes", same.len());
        let (one, key) = enc.encode(Yuv::from_rgb(&dot, 64, 48));
        assert!(
            !key && (384..2 * 384).contains(&one.len()),
            "{} bytes",
            one.len()
        );
        assert!(
            enc.encode(Yuv::from_rgb(&dot, 64, 48)).1,
            "every third a keyframe"
        );
    }
}
