//! Splits an H.264 Annex B byte stream (start codes, as `rpicam-vid
//! --codec h264` and `ffmpeg -f h264` write it) into access units: one
//! picture's NAL units, as AVCC (4-byte lengths) in one `Bytes`.
//!
//! A new access unit starts (H.264 7.4.1.2.3, as FFmpeg's parser does it)
//! once the current one has a picture's slice, at an SPS, PPS, SEI or AUD
//! or NAL types 14 to 18, or at a slice whose `first_mb_in_slice` is 0.
//! Neither of the Pi's encoders writes access unit delimiters, so a
//! picture is known to be complete only when the first bytes of the next
//! one arrive: one frame interval of delay (see docs/protocol.md).
//!
//! The splitter remembers the newest SPS and PPS and puts them before
//! every IDR picture that lacks them, so every keyframe can be decoded on
//! its own; AUDs are dropped. Lengths are capped ([`MAX_AU_LEN`],
//! [`MAX_NALS`]); what breaks a cap or the syntax is dropped with a
//! warning and the splitter resynchronises at the next start code.

use bytes::{BufMut, Bytes, BytesMut};
use shared::h264::{self, nal, Params};

/// Largest access unit the node accepts: the frame protocol's cap. The
/// Pi 4's hardware encoder writes pictures of 512 KiB at most.
pub const MAX_AU_LEN: usize = shared::frame::MAX_FRAME_LEN;
/// Most NAL units in one access unit: the Pi 5's encoder writes 4 slices a
/// picture; x264 with sliced threads a few more.
pub const MAX_NALS: usize = 256;
/// Spare room made before each read.
pub const READ_CHUNK: usize = 128 * 1024;

/// One picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// AVCC: each NAL unit behind its 4-byte big-endian length.
    pub data: Bytes,
    /// An IDR picture, which then starts with the SPS and PPS.
    pub key: bool,
}

/// What the splitter dropped or noticed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    #[error("skipped {bytes} bytes before the first start code (not H.264 Annex B)")]
    Garbage { bytes: usize },
    #[error("dropped {bytes} bytes that are not a NAL unit (forbidden bit or type 0)")]
    NotNal { bytes: usize },
    #[error("dropped a picture over the {max} byte cap ({len} bytes)")]
    TooLarge { len: usize, max: usize },
    #[error("dropped a picture of over {MAX_NALS} NAL units")]
    TooManyNals,
    #[error("dropped a parameter set: {0}")]
    BadParams(h264::ParamError),
    #[error("dropped a keyframe: no SPS and PPS seen yet")]
    KeyWithoutParams,
    #[error("the stream is now {width}x{height} ({codec})")]
    NewParams {
        width: u32,
        height: u32,
        codec: String,
    },
    #[error("the stream has B-frames (pictures out of display order), which live viewers show late or jerky; on a Pi 5 the node adds --low-latency to rpicam-vid, for ffmpeg use -bf 0")]
    BFrames,
}

#[derive(Debug, Default)]
pub struct Splitter {
    buf: BytesMut,
    /// Where the search for the next start code resumes in `buf`.
    scan: usize,
    /// Whether `buf` starts at a NAL unit (after a start code).
    in_nal: bool,
    /// Whether that unit's first bytes were looked at.
    peeked: bool,
    /// Garbage skipped while looking for the first start code.
    garbage: usize,
    /// The NAL units of the picture being gathered.
    current: Vec<Bytes>,
    current_len: usize,
    has_picture: bool,
    /// The picture broke a cap: its remaining NAL units are dropped.
    dropping: bool,
    /// A picture was dropped: the ones after it, up to the next keyframe,
    /// refer to it and are dropped too.
    need_idr: bool,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    params: Option<Params>,
    b_frames_told: bool,
    out: std::collections::VecDeque<Result<AccessUnit, Warning>>,
}

impl Splitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer to read into, with at least [`READ_CHUNK`] bytes spare.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.buf.reserve(READ_CHUNK);
        &mut self.buf
    }

    /// Appends bytes (tests, fuzzing).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for a NAL unit or picture not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.current_len
    }

    /// The stream's newest parameter sets.
    pub fn params(&self) -> Option<&Params> {
        self.params.as_ref()
    }

    /// The next whole picture, or what was dropped on the way; `None` until
    /// more bytes come.
    pub fn next_unit(&mut self) -> Option<Result<AccessUnit, Warning>> {
        loop {
            if let Some(out) = self.out.pop_front() {
                return Some(out);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// Finds the next start code; false when more bytes are needed.
    fn step(&mut self) -> bool {
        // The next NAL unit's first bytes say whether a new picture begins:
        // the picture before it is then complete, without waiting for the
        // unit's end.
        if self.in_nal && !self.peeked {
            if let (Some(&header), Some(&next)) = (self.buf.first(), self.buf.get(1)) {
                self.peeked = true;
                if self.has_picture && starts_picture(header, next) {
                    self.finish();
                    return true;
                }
            }
        }
        let from = self.scan;
        let Some(i) = memchr::memmem::find(&self.buf[from..], &[0, 0, 1]) else {
            // Keep the last two bytes: they may begin a start code.
            self.scan = self.buf.len().saturating_sub(2).max(from);
            if !self.in_nal && self.scan > 0 {
                self.garbage += self.scan;
                let _ = self.buf.split_to(self.scan);
                self.scan = 0;
                if self.garbage > MAX_AU_LEN {
                    let bytes = std::mem::take(&mut self.garbage);
                    self.out.push_back(Err(Warning::Garbage { bytes }));
                }
            } else if self.in_nal && self.buf.len() + self.current_len > MAX_AU_LEN {
                let len = self.buf.len() + self.current_len;
                self.buf.clear();
                self.scan = 0;
                self.in_nal = false;
                self.drop_current_and_wait();
                self.out.push_back(Err(Warning::TooLarge {
                    len,
                    max: MAX_AU_LEN,
                }));
            }
            return !self.out.is_empty();
        };
        let at = from + i;
        let before = self.buf.split_to(at).freeze();
        let _ = self.buf.split_to(3);
        self.scan = 0;
        if self.in_nal {
            self.nal(trim_trailing_zeros(before));
        } else {
            let skipped = self.garbage + trim_trailing_zeros(before).len();
            self.garbage = 0;
            if skipped > 0 {
                self.out.push_back(Err(Warning::Garbage { bytes: skipped }));
            }
        }
        self.in_nal = true;
        self.peeked = false;
        true
    }

    fn nal(&mut self, unit: Bytes) {
        let Some(&header) = unit.first() else {
            return;
        };
        let kind = header & 0x1F;
        if header & 0x80 != 0 || kind == 0 {
            self.out
                .push_back(Err(Warning::NotNal { bytes: unit.len() }));
            return;
        }
        let next = unit.get(1).copied().unwrap_or(0);
        if self.has_picture && starts_picture(header, next) {
            self.finish();
        }
        if matches!(kind, nal::SPS | nal::PPS) && unit.len() > h264::MAX_PARAM_LEN {
            let e = h264::ParamError::OutOfRange("a parameter set over 1 KiB");
            return self.out.push_back(Err(Warning::BadParams(e)));
        }
        match kind {
            nal::SPS => match h264::Sps::parse(&unit) {
                Ok(_) => self.sps = Some(unit.clone()),
                Err(e) => return self.out.push_back(Err(Warning::BadParams(e))),
            },
            nal::PPS => self.pps = Some(unit.clone()),
            nal::AUD | 12 => return, // delimiters and filler carry nothing
            nal::SLICE | nal::IDR => self.has_picture = true,
            _ => {}
        }
        if self.dropping {
            return;
        }
        if self.current.len() >= MAX_NALS {
            self.out.push_back(Err(Warning::TooManyNals));
            return self.drop_current_and_wait();
        }
        self.current_len += 4 + unit.len();
        if self.current_len > MAX_AU_LEN {
            let len = self.current_len;
            self.out.push_back(Err(Warning::TooLarge {
                len,
                max: MAX_AU_LEN,
            }));
            return self.drop_current_and_wait();
        }
        self.current.push(unit);
    }

    fn drop_current_and_wait(&mut self) {
        self.drop_current();
        self.dropping = true;
        self.has_picture = true;
        self.need_idr = true;
    }

    fn drop_current(&mut self) {
        self.current.clear();
        self.current_len = 0;
    }

    /// The gathered picture is complete: out as AVCC, with the parameter
    /// sets in front of a keyframe that lacks them.
    fn finish(&mut self) {
        self.has_picture = false;
        if std::mem::take(&mut self.dropping) {
            return self.drop_current();
        }
        let nals = std::mem::take(&mut self.current);
        self.current_len = 0;
        let key = nals.iter().any(|n| h264::nal_type(n) == nal::IDR);
        let picture = nals
            .iter()
            .any(|n| matches!(h264::nal_type(n), nal::SLICE | nal::IDR));
        if !picture || (self.need_idr && !key) {
            return;
        }
        let has = |t| nals.iter().any(|n| h264::nal_type(n) == t);
        let mut prefix = Vec::new();
        if key {
            let (Some(sps), Some(pps)) = (self.sps.clone(), self.pps.clone()) else {
                self.out.push_back(Err(Warning::KeyWithoutParams));
                self.need_idr = true;
                return;
            };
            match Params::new(sps.clone(), pps.clone()) {
                Ok(params) => {
                    if self.params.as_ref().map(|p| (&p.sps, &p.pps)) != Some((&sps, &pps)) {
                        let changed = self.params.as_ref().map(|p| p.info) != Some(params.info);
                        if changed {
                            self.out.push_back(Err(Warning::NewParams {
                                width: params.info.width,
                                height: params.info.height,
                                codec: params.info.codec_string(),
                            }));
                        }
                        self.params = Some(params);
                    }
                }
                Err(e) => {
                    self.out.push_back(Err(Warning::BadParams(e)));
                    self.need_idr = true;
                    return;
                }
            }
            self.need_idr = false;
            if !has(nal::SPS) || !has(nal::PPS) {
                prefix = vec![sps, pps];
            }
        }
        let len: usize = prefix.iter().chain(&nals).map(|n| 4 + n.len()).sum();
        let mut data = BytesMut::with_capacity(len);
        for unit in prefix.iter().chain(&nals) {
            data.put_u32(unit.len() as u32);
            data.put_slice(unit);
        }
        let data = data.freeze();
        if !self.b_frames_told && h264::has_b_slice(&data) {
            self.b_frames_told = true;
            self.out.push_back(Err(Warning::BFrames));
        }
        self.out.push_back(Ok(AccessUnit { data, key }));
    }
}

/// Whether a NAL unit with this header byte (and the byte after it) begins
/// a new picture once the current one has a slice.
fn starts_picture(header: u8, next: u8) -> bool {
    match header & 0x1F {
        nal::SEI | nal::SPS | nal::PPS | nal::AUD | 14..=18 => true,
        // first_mb_in_slice is ue(v): 0 is the single bit 1.
        nal::SLICE | nal::IDR => next & 0x80 != 0,
        _ => false,
    }
}

/// A NAL unit without the zero bytes before the next start code
/// (trailing_zero_8bits, and the leading zero of a 4-byte start code).
fn trim_trailing_zeros(mut unit: Bytes) -> Bytes {
    let end = unit.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    unit.truncate(end);
    unit
}

/// Whether a stream's first bytes are H.264 Annex B (a start code, then an
/// SPS, AUD, SEI or slice) rather than a JPEG.
pub fn looks_like_annex_b(first: &[u8]) -> bool {
    let rest = first
        .strip_prefix(&[0, 0, 0, 1])
        .or_else(|| first.strip_prefix(&[0, 0, 1]));
    matches!(
        rest.and_then(|r| r.first()).map(|h| (h & 0x80, h & 0x1F)),
        Some((
            0,
            nal::SPS | nal::PPS | nal::AUD | nal::SEI | nal::IDR | nal::SLICE
        ))
    )
}

#[cfg(test)]
pub(crate) mod tests;
