//! The live display (`--layout windows|grid`, cargo feature `display`):
//! the OpenCV windows run on a thread of their own ([`window`]) that reads
//! each camera's newest frame from its live hub, decoding only what it
//! shows (an H.264 camera through an ffmpeg of its own, [`h264`]), so
//! showing a camera never slows receiving or recording it.
//! Without the feature (or without a screen) the viewer runs headless.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::Layout;
use crate::link::live::Live;

#[cfg(feature = "display")]
mod h264;
#[cfg(feature = "display")]
pub mod window;

/// The display thread, when there is one.
#[derive(Debug)]
pub struct Ui {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ui {
    /// Closes the windows and waits for the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts showing every camera of `live`.
#[cfg(feature = "display")]
pub fn start(live: Arc<Live>, layout: Layout) -> Ui {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("display".into())
        .spawn(move || {
            // Without windows the viewer still records: say so, go on.
            if let Err(e) = window::run(live, layout, flag) {
                tracing::error!("display stopped: {e:#}; recording continues without it");
            }
        })
        .map_err(|e| tracing::error!("cannot start the display thread: {e}"))
        .ok();
    Ui { stop, thread }
}

/// Built without the `display` feature: nothing to show on.
#[cfg(not(feature = "display"))]
pub fn start(_live: Arc<Live>, _layout: Layout) -> Ui {
    Ui {
        stop: Arc::new(AtomicBool::new(false)),
        thread: None,
    }
}
