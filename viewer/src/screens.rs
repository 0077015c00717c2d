//! What the display shows, kept apart from the display itself: each camera
//! task leaves its newest JPEG here (a reference, no decoding), and the UI
//! thread takes what it needs when it draws. So showing a camera never
//! slows receiving or recording it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;

/// One camera's tile.
#[derive(Debug, Clone)]
pub struct Tile {
    pub seq: u64,
    pub jpeg: Bytes,
    pub at: Instant,
    /// Smoothed frames per second.
    pub fps: f64,
    pub recording: bool,
}

#[derive(Debug, Default)]
pub struct Screens {
    tiles: Mutex<BTreeMap<String, Option<Tile>>>,
}

impl Screens {
    /// A camera to show (before its first frame: "no signal").
    pub fn add(&self, key: &str) {
        self.tiles
            .lock()
            .expect("screens")
            .entry(key.to_owned())
            .or_insert(None);
    }

    pub fn remove(&self, key: &str) {
        self.tiles.lock().expect("screens").remove(key);
    }

    pub fn update(&self, key: &str, seq: u64, jpeg: Bytes, recording: bool) {
        let now = Instant::now();
        let mut tiles = self.tiles.lock().expect("screens");
        // Per frame: no allocation for a camera already shown.
        if !tiles.contains_key(key) {
            tiles.insert(key.to_owned(), None);
        }
        let slot = tiles.get_mut(key).expect("inserted above");
        let fps = match slot {
            Some(prev) => {
                let rate = 1.0 / now.duration_since(prev.at).as_secs_f64().max(1e-3);
                // Smoothed, starting from the first interval rather than 0.
                if prev.fps == 0.0 {
                    rate
                } else {
                    prev.fps * 0.9 + rate * 0.1
                }
            }
            None => 0.0,
        };
        *slot = Some(Tile {
            seq,
            jpeg,
            at: now,
            fps,
            recording,
        });
    }

    /// One camera's tile: `None` for a camera not shown, `Some(None)`
    /// before its first frame.
    pub fn tile(&self, key: &str) -> Option<Option<Tile>> {
        self.tiles.lock().expect("screens").get(key).cloned()
    }

    /// Every camera and its newest frame, in a stable order.
    pub fn snapshot(&self) -> Vec<(String, Option<Tile>)> {
        self.tiles
            .lock()
            .expect("screens")
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect()
    }
}
