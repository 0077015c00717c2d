//! The OpenCV windows (cargo feature `display`): one window per camera, or
//! `--layout grid` for one window with all of them. Each tile names
//! node/camera and fps, shows REC while recording and "no signal" when the
//! camera is silent. HighGUI runs on a thread of its own that decodes only
//! the frames it shows: a JPEG with OpenCV, an H.264 stream through an
//! ffmpeg of its own per camera ([`super::h264`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use opencv::core::{Mat, Point, Rect, Scalar, Size, Vector, CV_8UC3};
use opencv::prelude::*;
use opencv::{highgui, imgcodecs, imgproc};

use super::h264::Decoder;
use crate::config::Layout;
use crate::link::live::{Live, LiveCamera, Tile};
use fanout::Codec;

/// A camera silent this long shows "no signal".
const STALE: Duration = Duration::from_secs(2);
/// A cell of the grid window, and a window before its first frame.
const CELL: (i32, i32) = (640, 360);
const GRID_WINDOW: &str = "camfleet";
/// How soon an H.264 camera's decoder is started again after it ended.
const DECODER_RETRY: Duration = Duration::from_secs(1);

/// The H.264 cameras' decoders, and when each was last started.
#[derive(Default)]
struct Decoders {
    running: HashMap<String, Decoder>,
    started: HashMap<String, Instant>,
    warned: HashSet<String>,
}

impl Decoders {
    /// The camera's decoder, started (again) when there is none or it ended.
    fn of(&mut self, key: &str, camera: &LiveCamera) -> Option<&Decoder> {
        if self.running.get(key).is_some_and(Decoder::ended) {
            self.running.remove(key);
        }
        if !self.running.contains_key(key) {
            if self
                .started
                .get(key)
                .is_some_and(|at| at.elapsed() < DECODER_RETRY)
            {
                return None;
            }
            self.started.insert(key.to_owned(), Instant::now());
            match Decoder::start(&camera.hub, &camera.gone) {
                Ok(decoder) => {
                    self.running.insert(key.to_owned(), decoder);
                }
                Err(e) => {
                    if self.warned.insert(key.to_owned()) {
                        tracing::warn!(camera = key, "cannot show the H.264 camera yet: {e:#}");
                    }
                    return None;
                }
            }
        }
        self.running.get(key)
    }

    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.running.retain(|k, _| keep(k));
        self.started.retain(|k, _| keep(k));
    }
}

/// Runs the UI until `stop`; returns an error when no window can be opened.
pub fn run(live: Arc<Live>, layout: Layout, stop: Arc<AtomicBool>) -> Result<()> {
    let mut decoded: HashMap<String, (u64, Mat)> = HashMap::new();
    let mut decoders = Decoders::default();
    let mut open: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let tiles: Vec<(String, Arc<LiveCamera>, Option<Tile>)> = live
            .list()
            .into_iter()
            .map(|(k, c)| {
                let tile = c.tile();
                (k, c, tile)
            })
            .collect();
        let mut shown = Vec::with_capacity(tiles.len());
        for (key, camera, tile) in &tiles {
            let mut image = match tile.as_ref().map(|t| t.codec) {
                Some(Codec::H264) => h264_picture(key, camera, &mut decoders, &mut decoded)?,
                _ => picture(key, tile.as_ref(), &mut decoded)?,
            };
            if layout == Layout::Grid {
                image = scaled(&image, CELL)?;
            }
            annotate(&mut image, key, tile.as_ref())?;
            shown.push((key.clone(), image));
        }
        decoded.retain(|k, _| tiles.iter().any(|(t, _, _)| t == k));
        decoders.retain(|k| tiles.iter().any(|(t, _, _)| t == k));
        match layout {
            Layout::Windows => {
                for (key, image) in &shown {
                    if open.insert(key.clone()) {
                        highgui::named_window(key, highgui::WINDOW_AUTOSIZE)
                            .context("opening a window")?;
                        tracing::info!("showing {key}");
                    }
                    highgui::imshow(key, image)?;
                }
                let gone: Vec<String> = open
                    .iter()
                    .filter(|k| !shown.iter().any(|(s, _)| s == *k))
                    .cloned()
                    .collect();
                for key in gone {
                    let _ = highgui::destroy_window(&key);
                    open.remove(&key);
                }
            }
            Layout::Grid => {
                if open.insert(GRID_WINDOW.into()) {
                    highgui::named_window(GRID_WINDOW, highgui::WINDOW_AUTOSIZE)
                        .context("opening a window")?;
                    tracing::info!("showing every camera in one window");
                }
                highgui::imshow(GRID_WINDOW, &grid(&shown)?)?;
            }
        }
        highgui::wait_key(30)?;
    }
    let _ = highgui::destroy_all_windows();
    Ok(())
}

/// The tile's newest picture, decoding only a new frame; black before the first.
fn picture(
    key: &str,
    tile: Option<&Tile>,
    decoded: &mut HashMap<String, (u64, Mat)>,
) -> Result<Mat> {
    if let Some(t) = tile {
        if decoded.get(key).is_none_or(|(seq, _)| *seq != t.seq) {
            let mat =
                imgcodecs::imdecode(&Vector::<u8>::from_slice(&t.data), imgcodecs::IMREAD_COLOR)?;
            if !mat.empty() {
                decoded.insert(key.to_owned(), (t.seq, mat));
            }
        }
    }
    Ok(match decoded.get(key) {
        Some((_, mat)) => mat.try_clone()?,
        None => Mat::new_rows_cols_with_default(CELL.1, CELL.0, CV_8UC3, Scalar::all(0.0))?,
    })
}

/// An H.264 camera's newest decoded picture; black before the first.
fn h264_picture(
    key: &str,
    camera: &LiveCamera,
    decoders: &mut Decoders,
    decoded: &mut HashMap<String, (u64, Mat)>,
) -> Result<Mat> {
    let shown = decoded.get(key).map_or(0, |(n, _)| *n);
    if let Some(decoder) = decoders.of(key, camera) {
        if let Some((n, bgr)) = decoder.newest(shown) {
            let flat = Mat::from_slice(&bgr)?;
            let mat = flat.reshape(3, decoder.height as i32)?.try_clone()?;
            decoded.insert(key.to_owned(), (n, mat));
        }
    }
    Ok(match decoded.get(key) {
        Some((_, mat)) => mat.try_clone()?,
        None => Mat::new_rows_cols_with_default(CELL.1, CELL.0, CV_8UC3, Scalar::all(0.0))?,
    })
}

fn scaled(image: &Mat, (w, h): (i32, i32)) -> Result<Mat> {
    let mut out = Mat::default();
    imgproc::resize(
        image,
        &mut out,
        Size::new(w, h),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    Ok(out)
}

/// Node/camera and fps, REC while recording, "no signal" when silent; drawn
/// at the size shown, so every tile reads the same.
fn annotate(image: &mut Mat, key: &str, tile: Option<&Tile>) -> Result<()> {
    let white = Scalar::new(255.0, 255.0, 255.0, 0.0);
    let red = Scalar::new(0.0, 0.0, 255.0, 0.0);
    let fps = tile.map_or(0.0, |t| t.fps);
    // Bottom left: cameras (and the test pattern) put their own text on top.
    let name_at = Point::new(10, image.rows() - 12);
    label(image, &format!("{key}  {fps:.1} fps"), name_at, white)?;
    if tile.is_some_and(|t| t.recording) {
        let dot = Point::new(image.cols() - 80, 24);
        imgproc::circle(image, dot, 9, red, -1, imgproc::LINE_AA, 0)?;
        let text_at = Point::new(image.cols() - 64, 32);
        label(image, "REC", text_at, red)?;
    }
    if tile.is_none_or(|t| t.at.elapsed() > STALE) {
        let center = Point::new(image.cols() / 2 - 80, image.rows() / 2);
        label(
            image,
            "no signal",
            center,
            Scalar::new(0.0, 200.0, 255.0, 0.0),
        )?;
    }
    Ok(())
}

/// Text with a dark outline, readable on any picture.
fn label(image: &mut Mat, text: &str, at: Point, color: Scalar) -> Result<()> {
    for (paint, thickness) in [(Scalar::all(0.0), 4), (color, 2)] {
        let font = imgproc::FONT_HERSHEY_SIMPLEX;
        imgproc::put_text(
            image,
            text,
            at,
            font,
            0.7,
            paint,
            thickness,
            imgproc::LINE_AA,
            false,
        )?;
    }
    Ok(())
}

/// Cell-sized tiles in a near-square grid.
fn grid(tiles: &[(String, Mat)]) -> Result<Mat> {
    let n = tiles.len().max(1) as i32;
    let cols = (f64::from(n)).sqrt().ceil() as i32;
    let rows = (n + cols - 1) / cols;
    let mut canvas =
        Mat::new_rows_cols_with_default(rows * CELL.1, cols * CELL.0, CV_8UC3, Scalar::all(0.0))?;
    for (i, (_, image)) in tiles.iter().enumerate() {
        let (r, c) = (i as i32 / cols, i as i32 % cols);
        let mut cell = canvas.roi_mut(Rect::new(c * CELL.0, r * CELL.1, CELL.0, CELL.1))?;
        image.copy_to(&mut cell)?;
    }
    Ok(canvas)
}
