//! Where each sample of a recorded segment lies: its time on the timeline,
//! its bytes in the file. Read from the fragments' `moof` boxes (`tfdt`
//! and `trun`) with seeks, never the JPEGs themselves; a `.part` being
//! written is indexed up to its last whole fragment.
//!
//! The segments are the recorder's own (`shared::fmp4`): one track whose
//! sample entry (`mp4v` for MJPEG, `avc1` for H.264) is read from the
//! `moov`, every fragment a `prft`, a `moof` with one `traf` (`tfhd` with
//! default-base-is-moof, `tfdt` v1, `trun` with data offset, durations,
//! sizes and, for H.264, sample flags) and its `mdat`. A box this reader
//! does not know is skipped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};

use shared::fmp4::{SampleEntry, TIMESCALE};
use shared::h264::Params;

/// Largest `moof` read (a minute-long fragment at 120 fps is about 2 KB).
const MAX_MOOF: u64 = 1 << 20;

/// One sample: when it shows and where its bytes (a JPEG or an H.264
/// access unit) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    /// Microseconds since the epoch on the viewer's timeline.
    pub at_us: i64,
    pub duration_us: i64,
    pub offset: u64,
    pub len: u32,
    /// A sync sample: a decoder can start here (every JPEG).
    pub key: bool,
}

/// A segment's samples in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub samples: Vec<SampleRef>,
    /// Bytes of the file the index covers (whole fragments).
    pub covered: u64,
    /// What the track holds (`None`: a sample entry this reader does not
    /// know).
    pub entry: Option<SampleEntry>,
}

impl SegmentIndex {
    /// The sample whose interval holds `at_us`.
    pub fn at(&self, at_us: i64) -> Option<SampleRef> {
        let i = self.samples.partition_point(|s| s.at_us <= at_us);
        let s = *self.samples.get(i.checked_sub(1)?)?;
        (at_us < s.at_us + s.duration_us.max(1)).then_some(s)
    }

    /// Where a decoder starts to show the sample at `at_us`: the index of
    /// the last sync sample at or before it, and of the sample itself.
    pub fn decode_from(&self, at_us: i64) -> Option<(usize, usize)> {
        let shown = self.samples.partition_point(|s| s.at_us <= at_us);
        let shown = shown.checked_sub(1)?;
        let key = self.samples[..=shown].iter().rposition(|s| s.key)?;
        Some((key, shown))
    }

    /// The first sample that begins after `at_us`.
    pub fn first_after(&self, at_us: i64) -> Option<SampleRef> {
        let i = self.samples.partition_point(|s| s.at_us <= at_us);
        self.samples.get(i).copied()
    }
}

/// Indexes `path`, whose samples count from `origin_us` (the time its name
/// gives). Stops at the first fragment that is not whole yet.
pub fn read(path: &Path, origin_us: i64) -> Result<SegmentIndex> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut index = SegmentIndex::default();
    let mut at = 0u64;
    while at + 8 <= len {
        let (kind, size, header) = box_header(&mut file, at, len)?;
        let Some(size) = size else { break };
        if at.saturating_add(size) > len {
            break; // a box still being written
        }
        if &kind == b"moov" && size <= MAX_MOOF {
            let mut moov = vec![0u8; (size - header) as usize];
            file.seek(SeekFrom::Start(at + header))?;
            file.read_exact(&mut moov)?;
            index.entry = sample_entry(&moov).with_context(|| format!("the moov at {at}"))?;
        }
        if &kind == b"moof" {
            if size > MAX_MOOF {
                bail!("a moof of {size} bytes at {at}");
            }
            let mut moof = vec![0u8; (size - header) as usize];
            file.seek(SeekFrom::Start(at + header))?;
            file.read_exact(&mut moof)?;
            let fragment = parse_moof(&moof).with_context(|| format!("the moof at {at}"))?;
            // Its samples count only when its mdat is whole.
            let data_end = fragment
                .samples
                .iter()
                .fold(at.saturating_add(fragment.data_offset), |end, s| {
                    end.saturating_add(u64::from(s.size))
                });
            if data_end > len {
                break;
            }
            let mut offset = at.saturating_add(fragment.data_offset);
            let mut ticks = fragment.base_time;
            for s in fragment.samples {
                index.samples.push(SampleRef {
                    at_us: origin_us.saturating_add(us(ticks)),
                    duration_us: us(u64::from(s.duration)),
                    offset,
                    len: s.size,
                    key: s.key,
                });
                offset = offset.saturating_add(u64::from(s.size));
                ticks = ticks.saturating_add(u64::from(s.duration));
            }
            index.covered = data_end.max(at + size);
        }
        at += size;
    }
    index.samples.sort_by_key(|s| s.at_us);
    Ok(index)
}

/// Ticks to the nearest microsecond (as ffprobe prints times).
fn us(ticks: u64) -> i64 {
    let scale = u128::from(TIMESCALE);
    let us = (u128::from(ticks) * 1_000_000 + scale / 2) / scale;
    i64::try_from(us).unwrap_or(i64::MAX)
}

/// A box's type, its size (`None`: to the end of the file, which a
/// segment never uses, so reading stops) and its header length.
fn box_header(file: &mut File, at: u64, len: u64) -> Result<([u8; 4], Option<u64>, u64)> {
    let mut head = [0u8; 16];
    let want = if len - at >= 16 { 16 } else { 8 };
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut head[..want])?;
    let size = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
    let kind: [u8; 4] = head[4..8].try_into().expect("4 bytes");
    match size {
        0 => Ok((kind, None, 8)),
        1 if want == 16 => {
            let large = u64::from_be_bytes(head[8..16].try_into().expect("8 bytes"));
            if large < 16 {
                bail!("a box of {large} bytes at {at}");
            }
            Ok((kind, Some(large), 16))
        }
        1 => Ok((kind, None, 8)),
        s if s < 8 => bail!("a box of {s} bytes at {at}"),
        s => Ok((kind, Some(u64::from(s)), 8)),
    }
}

struct Fragment {
    base_time: u64,
    data_offset: u64,
    samples: Vec<TrunSample>,
}

/// One sample as a `trun` lists it.
#[derive(Debug, Clone, Copy)]
struct TrunSample {
    /// Ticks.
    duration: u32,
    size: u32,
    /// A sync sample.
    key: bool,
}

/// The track's sample entry, from `moov/trak/mdia/minf/stbl/stsd`.
fn sample_entry(moov: &[u8]) -> Result<Option<SampleEntry>> {
    let mut body = moov;
    for step in [b"trak", b"mdia", b"minf", b"stbl", b"stsd"] {
        match children(body)?.into_iter().find(|(k, _)| k == step) {
            Some((_, inner)) => body = inner,
            None => return Ok(None),
        }
    }
    // stsd: version and flags, entry count, then the entries.
    let Some((kind, entry)) = children(body.get(8..).context("a short stsd")?)?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    // A VisualSampleEntry's fields take 78 bytes; width and height at 24.
    let size = |e: &[u8]| -> Result<(u16, u16)> {
        let w = e.get(24..26).context("a short sample entry")?;
        let h = e.get(26..28).context("a short sample entry")?;
        Ok((
            u16::from_be_bytes(w.try_into()?),
            u16::from_be_bytes(h.try_into()?),
        ))
    };
    match &kind {
        b"mp4v" => {
            let (width, height) = size(entry)?;
            Ok(Some(SampleEntry::Jpeg { width, height }))
        }
        b"avc1" => {
            let inner = children(entry.get(78..).context("a short avc1")?)?;
            let (_, avcc) = inner
                .into_iter()
                .find(|(k, _)| k == b"avcC")
                .context("an avc1 without avcC")?;
            let params = Params::from_config_record(&bytes::Bytes::copy_from_slice(avcc))
                .map_err(|e| anyhow::anyhow!("its avcC: {e}"))?;
            Ok(Some(SampleEntry::Avc(params)))
        }
        _ => Ok(None),
    }
}

/// The boxes inside `body`: (type, content).
fn children(mut body: &[u8]) -> Result<Vec<([u8; 4], &[u8])>> {
    let mut out = Vec::new();
    while body.len() >= 8 {
        let size = u32::from_be_bytes(body[0..4].try_into().expect("4 bytes")) as usize;
        let kind: [u8; 4] = body[4..8].try_into().expect("4 bytes");
        if size < 8 || size > body.len() {
            bail!(
                "a {} box of {size} bytes in {}",
                String::from_utf8_lossy(&kind),
                body.len()
            );
        }
        out.push((kind, &body[8..size]));
        body = &body[size..];
    }
    Ok(out)
}

fn parse_moof(moof: &[u8]) -> Result<Fragment> {
    let traf = children(moof)?
        .into_iter()
        .find(|(k, _)| k == b"traf")
        .map(|(_, b)| b)
        .context("no traf")?;
    let mut base_time = None;
    let mut run = None;
    for (kind, body) in children(traf)? {
        match &kind {
            b"tfdt" => {
                let version = *body.first().context("an empty tfdt")?;
                base_time = Some(match version {
                    1 => u64::from_be_bytes(body.get(4..12).context("a short tfdt")?.try_into()?),
                    _ => u64::from(u32::from_be_bytes(
                        body.get(4..8).context("a short tfdt")?.try_into()?,
                    )),
                });
            }
            b"trun" => run = Some(parse_trun(body)?),
            _ => {}
        }
    }
    let (data_offset, samples) = run.context("no trun")?;
    Ok(Fragment {
        base_time: base_time.context("no tfdt")?,
        data_offset,
        samples,
    })
}

/// A `trun` with a data offset, a duration and a size per sample, and
/// sample flags (H.264) or none (every sample a sync sample, as the
/// recorder's `trex` says); other optional fields are read past.
fn parse_trun(body: &[u8]) -> Result<(u64, Vec<TrunSample>)> {
    let word = |at: usize| -> Result<u32> {
        Ok(u32::from_be_bytes(
            body.get(at..at + 4).context("a short trun")?.try_into()?,
        ))
    };
    let flags = word(0)? & 0x00FF_FFFF;
    if flags & 0x1 == 0 || flags & 0x100 == 0 || flags & 0x200 == 0 {
        bail!("a trun without data offset, durations and sizes (flags {flags:#x})");
    }
    let count = word(4)? as usize;
    let data_offset = word(8)? as i32;
    if data_offset < 0 {
        bail!("a negative data offset");
    }
    let mut at = 12;
    let mut first_flags = None;
    if flags & 0x4 != 0 {
        first_flags = Some(word(at)?);
        at += 4;
    }
    let per_sample = 4 * [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|f| flags & *f != 0)
        .count();
    if count > (body.len().saturating_sub(at)) / per_sample.max(1) {
        bail!("a trun of {count} samples in {} bytes", body.len());
    }
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let duration = word(at)?;
        let size = word(at + 4)?;
        let sample_flags = if flags & 0x400 != 0 {
            Some(word(at + 8)?)
        } else {
            first_flags.filter(|_| i == 0)
        };
        // sample_is_non_sync_sample
        let key = sample_flags.is_none_or(|f| f & 0x0001_0000 == 0);
        samples.push(TrunSample {
            duration,
            size,
            key,
        });
        at += per_sample;
    }
    Ok((data_offset as u64, samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::fmp4::{fragment, init_segment, Sample};

    fn file_with(fragments: &[(u64, Vec<Vec<u8>>)]) -> Vec<u8> {
        let mut out = init_segment(&SampleEntry::Jpeg {
            width: 64,
            height: 48,
        })
        .to_vec();
        for (i, (base, jpegs)) in fragments.iter().enumerate() {
            let samples: Vec<Sample<'_>> = jpegs
                .iter()
                .map(|j| Sample {
                    duration: 9000,
                    key: true,
                    data: j,
                })
                .collect();
            out.extend_from_slice(&fragment(i as u32 + 1, *base, Some(0), &samples));
        }
        out
    }

    #[test]
    fn samples_are_found_by_time_and_whole_fragments_only() {
        let dir = std::env::temp_dir().join(format!("camfleet-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seg.mp4");
        let jpeg = |n: u8| vec![0xFF, 0xD8, n, n, 0xFF, 0xD9];
        let bytes = file_with(&[(0, vec![jpeg(1), jpeg(2)]), (18000, vec![jpeg(3)])]);
        std::fs::write(&path, &bytes).unwrap();
        let index = read(&path, 1_000_000).unwrap();
        assert_eq!(index.samples.len(), 3);
        assert_eq!(
            index.entry,
            Some(SampleEntry::Jpeg {
                width: 64,
                height: 48
            })
        );
        assert!(index.samples.iter().all(|s| s.key));
        let third = index.at(1_000_000 + 200_000).unwrap();
        assert_eq!(
            &bytes[third.offset as usize..][..third.len as usize],
            &jpeg(3)[..]
        );
        assert_eq!(
            index.at(1_000_000 + 99_999).unwrap().offset,
            index.samples[0].offset
        );
        assert_eq!(
            index.at(1_000_000 + 100_000).unwrap().offset,
            index.samples[1].offset
        );
        assert_eq!(index.at(999_999), None);
        assert_eq!(
            index.at(1_000_000 + 300_000),
            None,
            "after the last sample's interval"
        );
        // A torn last fragment: the whole ones are still read.
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(read(&path, 1_000_000).unwrap().samples.len(), 2);
        std::fs::write(&path, b"\x00\x00\x00\x04moof").unwrap();
        assert!(read(&path, 0).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
