//! `test` source: a moving test pattern that needs no camera.
//!
//! One second of frames (colour bars, a box sliding across) is JPEG-encoded
//! once at start, with a restart interval of one MCU row. Each frame then
//! gets a fresh band on top with its frame number and UTC time: only that
//! band (a few MCU rows) is encoded, and its entropy-coded segments replace
//! the base frame's first segments (restart markers make each MCU row
//! independent, ITU T.81 E.1.4). So a frame costs a few percent of a full
//! encode, and several test nodes run side by side on a small machine.
//! 4:2:0 with the standard Huffman tables, like `rpicam-vid`.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use tokio::time::{interval, Interval, MissedTickBehavior};

use super::h264_pattern::{self, Yuv};
use super::{CaptureSettings, Picture};
use shared::frame::Codec;

/// Frames in the loop at most; one second at up to 30 fps.
const MAX_LOOP: u32 = 30;
/// Pixels per MCU side at 4:2:0.
const MCU: u32 = 16;

pub struct TestPattern {
    settings: CaptureSettings,
    frames: Vec<Segmented>,
    /// With `--codec h264`: the base loop as pictures, and the encoder.
    h264: Option<(Vec<Yuv>, h264_pattern::Encoder)>,
    next: usize,
    /// Frames made since this source started.
    count: u64,
    ticks: Interval,
}

/// Where the label goes in a picture of a given size: a band of whole MCU
/// rows on top, the text centred in it.
struct Band {
    /// Pixel size of one font dot.
    scale: usize,
    rows: usize,
    height: usize,
    /// The text's first pixel row.
    top: usize,
}

impl Band {
    fn of(height: u32) -> Band {
        let scale = (height / 160).max(1) as usize;
        let rows = (9 * scale)
            .div_ceil(MCU as usize)
            .min(height.div_ceil(MCU) as usize);
        let band_h = (rows * MCU as usize).min(height as usize);
        Band {
            scale,
            rows,
            height: band_h,
            top: band_h.saturating_sub(7 * scale) / 2,
        }
    }
}

/// The frame number burned into a test-pattern picture, read back from its
/// luma plane (`width` x `height`, one byte a pixel): each dot of the six
/// digits is sampled at its centre and each digit taken as the glyph
/// nearest to it. `None` when a digit is no glyph (not a test pattern).
/// For tests that check which frame a recording or a player shows.
pub fn read_frame_number(luma: &[u8], width: u32, height: u32) -> Option<u64> {
    let band = Band::of(height);
    let (w, s) = (width as usize, band.scale);
    if luma.len() < w * height as usize {
        return None;
    }
    let mut number = 0;
    for k in 0..6 {
        let mut seen = [0u8; 7];
        for (row, bits) in seen.iter_mut().enumerate() {
            for col in 0..5 {
                let x = s + (k * 6 + col) * s + s / 2;
                let y = band.top + row * s + s / 2;
                if x >= w || luma[y * w + x] < 128 {
                    continue;
                }
                *bits |= 0x10 >> col;
            }
        }
        let distance =
            |g: &[u8; 7]| -> u32 { g.iter().zip(&seen).map(|(a, b)| (a ^ b).count_ones()).sum() };
        let (digit, best) = (0..10u64)
            .map(|d| (d, distance(&FONT[d as usize])))
            .min_by_key(|&(_, d)| d)?;
        if best > 3 {
            return None;
        }
        number = number * 10 + digit;
    }
    Some(number)
}

impl TestPattern {
    pub async fn new(s: CaptureSettings) -> Result<Self> {
        if s.codec == Codec::H264 {
            return Self::h264(s).await;
        }
        let started = Instant::now();
        let frames = tokio::task::spawn_blocking(move || render_loop(s))
            .await
            .context("test pattern task failed")??;
        let bytes: usize = frames.iter().map(Segmented::len).sum();
        tracing::info!(
            "test pattern: {} frames of {}x{} ({} KiB) encoded in {} ms",
            frames.len(),
            s.width,
            s.height,
            bytes / 1024,
            started.elapsed().as_millis()
        );
        Ok(TestPattern {
            settings: s,
            frames,
            h264: None,
            next: 0,
            count: 0,
            ticks: ticks_of(s.fps),
        })
    }

    /// The pattern as H.264: the base loop converted once, each frame's
    /// band drawn on it, then encoded (see `h264_pattern`).
    async fn h264(s: CaptureSettings) -> Result<Self> {
        let (w, h) = (s.width as usize, s.height as usize);
        let base = tokio::task::spawn_blocking(move || {
            let n = s.fps.clamp(1, MAX_LOOP);
            (0..n)
                .map(|i| Yuv::from_rgb(&render(s.width, s.height, i, n), w, h))
                .collect::<Vec<_>>()
        })
        .await
        .context("test pattern task failed")?;
        let every = s.fps.max(1) * s.h264.keyframe_seconds.max(1);
        tracing::info!(
            "test pattern: H.264 {}x{} at {} fps, a keyframe every {every} frames",
            s.width,
            s.height,
            s.fps
        );
        Ok(TestPattern {
            settings: s,
            frames: Vec::new(),
            h264: Some((
                base,
                h264_pattern::Encoder::new(s.width, s.height, s.fps, every),
            )),
            next: 0,
            count: 0,
            ticks: ticks_of(s.fps),
        })
    }

    pub async fn next_frame(&mut self) -> Result<Picture> {
        self.ticks.tick().await;
        let label = format!(
            "{:06} {}",
            self.count,
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        let picture = match &mut self.h264 {
            Some((base, encoder)) => {
                let s = &self.settings;
                let band = Band::of(s.height);
                let mut rgb = vec![0u8; s.width as usize * band.height * 3];
                draw_text(&mut rgb, s.width as usize, band.scale, band.top, &label);
                let top = Yuv::from_rgb(&rgb, s.width as usize, band.height);
                let yuv = base[self.next].with_top(&top, band.rows);
                self.next = (self.next + 1) % base.len();
                let (data, key) = encoder.encode(yuv);
                Picture {
                    codec: Codec::H264,
                    key,
                    data,
                }
            }
            None => {
                let frame = self.compose(&label)?;
                self.next = (self.next + 1) % self.frames.len();
                Picture::jpeg(frame)
            }
        };
        self.count += 1;
        Ok(picture)
    }

    /// The current base frame with `label` in the band on top.
    fn compose(&self, label: &str) -> Result<Bytes> {
        let s = &self.settings;
        let band = Band::of(s.height);
        let mut rgb = vec![0u8; s.width as usize * band.height * 3];
        draw_text(&mut rgb, s.width as usize, band.scale, band.top, label);
        let encoded = segment(Bytes::from(encode(
            &rgb,
            s.width,
            band.height as u32,
            s.quality,
        )?))?;
        let base = &self.frames[self.next];
        ensure!(
            encoded.segments.len() == band.rows,
            "band has {} segments",
            encoded.segments.len()
        );
        let mut out = BytesMut::with_capacity(base.len() + encoded.len());
        out.extend_from_slice(&base.header);
        let last = base.segments.len() - 1;
        for (j, segment) in base.segments.iter().enumerate() {
            out.extend_from_slice(encoded.segments.get(j).unwrap_or(segment));
            // RSTm counts modulo 8 (T.81 B.2.1); the last interval ends the image.
            out.extend_from_slice(&if j < last {
                [0xFF, 0xD0 + (j % 8) as u8]
            } else {
                [0xFF, 0xD9]
            });
        }
        Ok(out.freeze())
    }
}

fn ticks_of(fps: u32) -> Interval {
    let mut ticks = interval(Duration::from_secs_f64(1.0 / f64::from(fps.max(1))));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticks
}

/// A baseline JPEG cut at its restart markers: everything up to the scan
/// data, then each restart interval's entropy-coded bytes (markers removed).
struct Segmented {
    header: Bytes,
    segments: Vec<Bytes>,
}

impl Segmented {
    fn len(&self) -> usize {
        self.header.len() + self.segments.iter().map(|s| s.len() + 2).sum::<usize>()
    }
}

fn segment(jpeg: Bytes) -> Result<Segmented> {
    let mut pos = 2;
    loop {
        let (Some(&0xFF), Some(&marker), Some(len)) =
            (jpeg.get(pos), jpeg.get(pos + 1), jpeg.get(pos + 2..pos + 4))
        else {
            bail!("no scan in the encoded pattern");
        };
        pos += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        if marker == 0xDA {
            break;
        }
    }
    let header = jpeg.slice(..pos);
    let mut segments = Vec::new();
    let (mut start, mut i) = (pos, pos);
    while i + 1 < jpeg.len() {
        if jpeg[i] != 0xFF {
            i += 1;
            continue;
        }
        match jpeg[i + 1] {
            0x00 | 0xFF => i += 1,
            0xD0..=0xD7 | 0xD9 => {
                segments.push(jpeg.slice(start..i));
                if jpeg[i + 1] == 0xD9 {
                    return Ok(Segmented { header, segments });
                }
                i += 2;
                start = i;
            }
            other => bail!("marker {other:02X} inside the scan"),
        }
    }
    bail!("the encoded pattern has no EOI")
}

fn encode(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>> {
    let mut jpeg = Vec::with_capacity(rgb.len() / 8);
    let mut encoder = Encoder::new(&mut jpeg, quality);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    // One restart interval per MCU row: rows can be swapped independently.
    encoder.set_restart_interval(width.div_ceil(MCU) as u16);
    encoder
        .encode(rgb, width as u16, height as u16, ColorType::Rgb)
        .context("encoding the test pattern")?;
    Ok(jpeg)
}

fn render_loop(s: CaptureSettings) -> Result<Vec<Segmented>> {
    let n = s.fps.clamp(1, MAX_LOOP);
    (0..n)
        .map(|i| {
            segment(Bytes::from(encode(
                &render(s.width, s.height, i, n),
                s.width,
                s.height,
                s.quality,
            )?))
        })
        .collect()
}

/// Colour bars at 75%, a grey ramp below, a box moving left to right.
fn render(width: u32, height: u32, index: u32, count: u32) -> Vec<u8> {
    const BARS: [[u8; 3]; 7] = [
        [191, 191, 191],
        [191, 191, 0],
        [0, 191, 191],
        [0, 191, 0],
        [191, 0, 191],
        [191, 0, 0],
        [0, 0, 191],
    ];
    let (w, h) = (width as usize, height as usize);
    let mut rgb = vec![0u8; w * h * 3];
    let ramp_top = h * 5 / 6;
    for y in 0..h {
        for x in 0..w {
            let px = if y < ramp_top {
                BARS[x * 7 / w]
            } else {
                [(x * 255 / w) as u8; 3]
            };
            rgb[(y * w + x) * 3..][..3].copy_from_slice(&px);
        }
    }
    let side = (h / 5).max(8);
    let left = (w - side.min(w)) * index as usize / count.max(1) as usize;
    fill(
        &mut rgb,
        w,
        left,
        (h - side) / 2,
        side,
        side,
        [255, 255, 255],
    );
    rgb
}

fn fill(rgb: &mut [u8], w: usize, x0: usize, y0: usize, dx: usize, dy: usize, px: [u8; 3]) {
    let h = rgb.len() / 3 / w;
    for y in y0..(y0 + dy).min(h) {
        for x in x0..(x0 + dx).min(w) {
            rgb[(y * w + x) * 3..][..3].copy_from_slice(&px);
        }
    }
}

/// 5x7 digits, one row per byte, most significant of the low 5 bits leftmost.
const FONT: [[u8; 7]; 10] = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
];

/// The 5x7 glyph of a label character; blank for anything else.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0'..='9' => FONT[c as usize - '0' as usize],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        _ => [0; 7],
    }
}

/// White text on the band, one 6-dot cell per character, clipped at the edge.
fn draw_text(rgb: &mut [u8], w: usize, scale: usize, top: usize, text: &str) {
    for (k, c) in text.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    let x = scale + (k * 6 + col) * scale;
                    if x + scale <= w {
                        fill(rgb, w, x, top + row * scale, scale, scale, [255, 255, 255]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(width: u32, height: u32) -> TestPattern {
        let s = CaptureSettings {
            width,
            height,
            fps: 5,
            quality: 80,
            ..CaptureSettings::default()
        };
        let ticks = interval(Duration::from_secs(1));
        TestPattern {
            settings: s,
            frames: render_loop(s).unwrap(),
            h264: None,
            next: 0,
            count: 0,
            ticks,
        }
    }

    fn decode(jpeg: &[u8]) -> image::RgbImage {
        image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8()
    }

    #[tokio::test]
    async fn spliced_frames_decode_at_size_and_only_the_band_changes() {
        for (w, h) in [(320, 240), (1000, 250), (160, 120)] {
            let p = pattern(w, h);
            let a = decode(&p.compose("000001 10:00:00.000").unwrap());
            let b = decode(&p.compose("000002 10:00:00.033").unwrap());
            assert_eq!((a.width(), a.height()), (w, h));
            let band_h = Band::of(h).height as u32;
            let differs = |y0: u32, y1: u32| {
                (y0..y1).any(|y| (0..w).any(|x| a.get_pixel(x, y) != b.get_pixel(x, y)))
            };
            assert!(differs(0, band_h), "{w}x{h}: the label must change");
            assert!(
                !differs(band_h, h),
                "{w}x{h}: below the band the frames are the same base"
            );
        }
    }

    #[tokio::test]
    async fn the_frame_number_reads_back_from_the_decoded_picture() {
        for (w, h) in [(320, 240), (160, 120), (1920, 1080), (640, 360)] {
            let p = pattern(w, h);
            for n in [0u64, 7, 123_456, 999_999, 40_218] {
                let jpeg = p.compose(&format!("{n:06} 10:17:42.250")).unwrap();
                let luma = image::load_from_memory(&jpeg).unwrap().to_luma8();
                assert_eq!(read_frame_number(&luma, w, h), Some(n), "{w}x{h} {n}");
            }
        }
        let black = vec![0u8; 320 * 240];
        assert_eq!(read_frame_number(&black, 320, 240), None);
        assert_eq!(read_frame_number(&black[..10], 320, 240), None);
    }

    #[tokio::test]
    async fn frames_are_4_2_0_and_the_base_loop_moves() {
        let p = pattern(320, 240);
        assert_eq!(p.frames.len(), 5);
        assert_ne!(p.frames[0].segments, p.frames[1].segments);
        let frame = p.compose("0").unwrap();
        // SOF0: components' sampling factors are 0x22 (Y), 0x11, 0x11 = 4:2:0.
        let sof = frame.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        assert_eq!((frame[sof + 11], frame[sof + 14]), (0x22, 0x11));
    }
}
