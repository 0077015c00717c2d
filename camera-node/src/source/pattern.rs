//! `test` source: a moving test pattern that needs no camera.
//!
//! One second of frames (colour bars, a box sliding across, the frame's
//! number in the loop) is JPEG-encoded once at start; after that a frame
//! costs a reference-count increment, so several test nodes run side by
//! side on a small machine. 4:2:0 with the standard Huffman tables, like
//! `rpicam-vid`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use tokio::time::{interval, Interval, MissedTickBehavior};

use super::CaptureSettings;

/// Frames in the loop at most; one second at up to 30 fps.
const MAX_LOOP: u32 = 30;

pub struct TestPattern {
    frames: Vec<Bytes>,
    next: usize,
    ticks: Interval,
}

impl TestPattern {
    pub async fn new(s: CaptureSettings) -> Result<Self> {
        let started = Instant::now();
        let frames = tokio::task::spawn_blocking(move || render_loop(s))
            .await
            .context("test pattern task failed")??;
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        tracing::info!(
            "test pattern: {} frames of {}x{} ({} KiB) encoded in {} ms",
            frames.len(),
            s.width,
            s.height,
            bytes / 1024,
            started.elapsed().as_millis()
        );
        let mut ticks = interval(Duration::from_secs_f64(1.0 / f64::from(s.fps.max(1))));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ok(TestPattern {
            frames,
            next: 0,
            ticks,
        })
    }

    pub async fn next_frame(&mut self) -> Bytes {
        self.ticks.tick().await;
        let frame = self.frames[self.next].clone();
        self.next = (self.next + 1) % self.frames.len();
        frame
    }
}

fn render_loop(s: CaptureSettings) -> Result<Vec<Bytes>> {
    let n = s.fps.clamp(1, MAX_LOOP);
    (0..n)
        .map(|i| {
            let rgb = render(s.width, s.height, i, n);
            let mut jpeg = Vec::with_capacity(rgb.len() / 8);
            let mut encoder = Encoder::new(&mut jpeg, s.quality);
            encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
            encoder
                .encode(&rgb, s.width as u16, s.height as u16, ColorType::Rgb)
                .context("encoding the test pattern")?;
            Ok(Bytes::from(jpeg))
        })
        .collect()
}

/// Colour bars at 75%, a grey ramp below, a box moving left to right and the
/// frame's number in the loop.
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
    let scale = (h / 60).max(2);
    let digits = index.to_string();
    let (tw, th) = (digits.len() * 6 * scale + scale, 9 * scale);
    fill(&mut rgb, w, scale, scale, tw.min(w), th.min(h), [0, 0, 0]);
    for (k, d) in digits.bytes().enumerate() {
        draw_digit(
            &mut rgb,
            w,
            h,
            2 * scale + k * 6 * scale,
            2 * scale,
            scale,
            d - b'0',
        );
    }
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

fn draw_digit(rgb: &mut [u8], w: usize, h: usize, x0: usize, y0: usize, scale: usize, digit: u8) {
    for (row, bits) in FONT[usize::from(digit)].iter().enumerate() {
        for col in 0..5 {
            if bits & (0x10 >> col) != 0 {
                let (x, y) = (x0 + col * scale, y0 + row * scale);
                if x + scale <= w && y + scale <= h {
                    fill(rgb, w, x, y, scale, scale, [255, 255, 255]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_4_2_0_jpegs_of_the_requested_size_and_differ() {
        let s = CaptureSettings {
            width: 320,
            height: 240,
            fps: 5,
            quality: 80,
        };
        let frames = render_loop(s).unwrap();
        assert_eq!(frames.len(), 5);
        assert_ne!(frames[0], frames[1]);
        let img = image::load_from_memory(&frames[3]).unwrap();
        assert_eq!((img.width(), img.height()), (320, 240));
        // SOF0: components' sampling factors are 0x22 (Y), 0x11, 0x11 = 4:2:0.
        let sof = frames[0]
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .unwrap();
        assert_eq!(frames[0][sof + 11], 0x22);
        assert_eq!(frames[0][sof + 14], 0x11);
    }
}
