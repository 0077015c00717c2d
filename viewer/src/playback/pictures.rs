//! `frame.jpg?at=` of an H.264 camera: the picture shown at the instant,
//! decoded by ffmpeg (`fanout::snapshot`) from the keyframe at or before it
//! up to it. One decode at a time per camera (a player scrubbing asks for
//! many), the last [`KEPT`] pictures kept, a group of at most
//! [`MAX_GROUP_SAMPLES`] read.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use super::index::SampleRef;
use super::SegmentCache;

/// Decoded pictures kept (a player stepping back and forth asks again).
pub const KEPT: usize = 64;
/// Most access units decoded for one picture: 30 s at 30 fps, far past the
/// fleet's keyframe interval (1 s by default).
pub const MAX_GROUP_SAMPLES: usize = 900;

/// The decoded pictures and each camera's turn to decode.
#[derive(Debug, Default)]
pub struct Pictures {
    kept: Mutex<VecDeque<((PathBuf, u64), Bytes)>>,
    turns: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Pictures {
    /// The picture of `sample` in the segment at `path` as a JPEG.
    pub async fn jpeg(
        &self,
        cache: Arc<SegmentCache>,
        path: PathBuf,
        sample: SampleRef,
    ) -> Result<Bytes> {
        let key = (path.clone(), sample.offset);
        if let Some(jpeg) = self.kept(&key) {
            return Ok(jpeg);
        }
        let camera = path.parent().unwrap_or(Path::new("")).to_owned();
        let turn = {
            let mut turns = self.turns.lock().expect("turns lock");
            Arc::clone(turns.entry(camera).or_default())
        };
        let _turn = turn.lock().await;
        // Another request may have decoded it while this one waited.
        if let Some(jpeg) = self.kept(&key) {
            return Ok(jpeg);
        }
        let group = tokio::task::spawn_blocking(move || group(&cache, &path, sample))
            .await
            .context("reading the segment")??;
        let jpeg = fanout::snapshot::decode_last(&group).await?;
        let mut kept = self.kept.lock().expect("pictures lock");
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back((key, jpeg.clone()));
        Ok(jpeg)
    }

    fn kept(&self, key: &(PathBuf, u64)) -> Option<Bytes> {
        let kept = self.kept.lock().expect("pictures lock");
        kept.iter().find(|(k, _)| k == key).map(|(_, j)| j.clone())
    }
}

/// The access units of the segment at `path` from the keyframe at or
/// before `sample` up to it.
fn group(cache: &SegmentCache, path: &Path, sample: SampleRef) -> Result<Vec<Bytes>> {
    use std::io::{Read, Seek, SeekFrom};
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let origin = super::origin_us(name).context("not a segment name")?;
    let index = cache.index(path, origin)?;
    let shown = index
        .samples
        .iter()
        .position(|s| s.offset == sample.offset)
        .context("the sample is not in its segment's index")?;
    let Some(key) = index.samples[..=shown].iter().rposition(|s| s.key) else {
        bail!("no keyframe before the picture in {}", path.display());
    };
    if shown - key >= MAX_GROUP_SAMPLES {
        bail!(
            "the picture is {} frames after its keyframe: at most {MAX_GROUP_SAMPLES} are decoded",
            shown - key
        );
    }
    let mut file = std::fs::File::open(path)?;
    let mut out = Vec::with_capacity(shown - key + 1);
    for s in &index.samples[key..=shown] {
        file.seek(SeekFrom::Start(s.offset))?;
        let mut unit = vec![0u8; s.len as usize];
        file.read_exact(&mut unit)?;
        out.push(Bytes::from(unit));
    }
    Ok(out)
}
