//! An H.264 camera in a window: one `ffmpeg` per camera shown, decoding
//! its stream to BGR pictures (`-f rawvideo -pix_fmt bgr24`), fed by a
//! reader of the camera's live hub. The hub's keyframe rules give the
//! reader only what decodes (it starts at a keyframe, and a reader that
//! falls behind skips to the next one), so a slow decoder shows a later
//! picture, never a broken one, and never holds up receiving or recording.
//!
//! Two threads per decoder: one writes the access units (Annex B) into
//! ffmpeg, one reads whole pictures out and keeps the newest for the
//! window. A change of picture size (new SPS) ends the decoder; the window
//! starts the next one at the new size.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use fanout::{Codec, Hub, Protocol};
use shared::h264::Params;
use tokio_util::sync::CancellationToken;

/// The newest decoded picture: its number (counting up) and BGR bytes.
type Newest = Arc<Mutex<Option<(u64, Vec<u8>)>>>;

/// Larger pictures are not shown (ffmpeg's output would be huge).
const MAX_PIXELS: u64 = 4096 * 2304;

pub struct Decoder {
    /// Rows of the pictures (each `width * 3` bytes of BGR).
    pub height: u32,
    newest: Newest,
    /// Ends both threads (the camera went, the size changed, the window closed).
    stop: CancellationToken,
    child: Child,
}

impl Decoder {
    /// Starts decoding `hub` from its newest keyframe, at that keyframe's size.
    pub fn start(hub: &Arc<Hub>, gone: &CancellationToken) -> Result<Decoder> {
        let key = hub.latest_key().context("no keyframe yet")?;
        let params = Params::of_keyframe(&key.data).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (width, height) = (params.info.width, params.info.height);
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            anyhow::bail!("{width}x{height} is too large to show");
        }
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args([
                "-fflags",
                "nobuffer",
                "-flags",
                "low_delay",
                "-threads",
                "2",
            ])
            .args(["-f", "h264", "-i", "pipe:0"])
            .args(["-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start ffmpeg to show an H.264 camera (install ffmpeg)")?;
        let stop = gone.child_token();
        let newest: Newest = Arc::default();
        let mut input = child.stdin.take().context("ffmpeg's stdin")?;
        let mut output = child.stdout.take().context("ffmpeg's stdout")?;
        let mut reader = hub.add_local_reader(Protocol::Http);
        let feeding = stop.clone();
        std::thread::Builder::new()
            .name("display-h264-in".into())
            .spawn(move || {
                let mut annex_b = Vec::new();
                loop {
                    let next = futures_lite::future::block_on(futures_lite::future::or(
                        async { Some(reader.next().await) },
                        async {
                            feeding.cancelled().await;
                            None
                        },
                    ));
                    let Some(frame) = next else { break };
                    if frame.codec != Codec::H264 {
                        break;
                    }
                    if frame.key {
                        let size = Params::of_keyframe(&frame.data)
                            .map(|p| (p.info.width, p.info.height))
                            .ok();
                        if size.is_some_and(|s| s != (width, height)) {
                            tracing::info!("picture size changed: the window's decoder restarts");
                            break;
                        }
                    }
                    annex_b.clear();
                    shared::h264::to_annex_b(&frame.data, &mut annex_b);
                    if input.write_all(&annex_b).is_err() {
                        break;
                    }
                }
                feeding.cancel();
            })
            .context("cannot start a display thread")?;
        let picture_bytes = width as usize * height as usize * 3;
        let keep = Arc::clone(&newest);
        let reading = stop.clone();
        std::thread::Builder::new()
            .name("display-h264-out".into())
            .spawn(move || {
                let mut count = 0u64;
                loop {
                    let mut picture = vec![0u8; picture_bytes];
                    if output.read_exact(&mut picture).is_err() {
                        break;
                    }
                    count += 1;
                    *keep.lock().expect("picture lock") = Some((count, picture));
                }
                reading.cancel();
            })
            .context("cannot start a display thread")?;
        tracing::info!("decoding {width}x{height} H.264 for the window with ffmpeg");
        Ok(Decoder {
            height,
            newest,
            stop,
            child,
        })
    }

    /// The newest picture when it is newer than `shown`.
    pub fn newest(&self, shown: u64) -> Option<(u64, Vec<u8>)> {
        let newest = self.newest.lock().expect("picture lock");
        newest
            .as_ref()
            .filter(|(n, _)| *n != shown)
            .map(|(n, p)| (*n, p.clone()))
    }

    /// Whether it ended (ffmpeg exited, the size changed, the camera went).
    pub fn ended(&self) -> bool {
        self.stop.is_cancelled()
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
