//! A fragmented MP4 writer (ISO/IEC 14496-12, -14 and -15) for the
//! fleet's two codecs, used by the viewer's recordings and exports and by
//! the live WebSocket's H.264 tiles.
//!
//! Frames are stored as they came: one track whose sample entry is `mp4v`
//! with an `esds` saying JPEG (objectTypeIndication 0x6C, ISO/IEC 10918-1),
//! the way ffmpeg and VLC read MJPEG in MP4, or `avc1` with the stream's
//! `avcC` (access units in AVCC, as the TCP frame protocol v2 carries
//! them). The file is an init segment (`ftyp`, then `moov` with an empty
//! sample table and `mvex`) followed by `moof`/`mdat` fragments, so
//! everything before the last fragment stays playable when the writer is
//! killed.

use bytes::{BufMut, BytesMut};

use crate::frame::Codec;
use crate::h264::Params;

/// What a track holds, written into its sample entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleEntry {
    /// Motion JPEG of this size (`mp4v`).
    Jpeg { width: u16, height: u16 },
    /// H.264 with these parameter sets (`avc1`, `avcC`).
    Avc(Params),
}

impl SampleEntry {
    /// The entry for a stream whose keyframe (for MJPEG any frame) is
    /// `data`, or `None` when it says no size (not a JPEG, no SPS/PPS).
    pub fn of_keyframe(codec: Codec, data: &bytes::Bytes) -> Option<SampleEntry> {
        match codec {
            Codec::Mjpeg => crate::jpeg::dimensions(data)
                .map(|(width, height)| SampleEntry::Jpeg { width, height }),
            Codec::H264 => Params::of_keyframe(data).ok().map(SampleEntry::Avc),
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            SampleEntry::Jpeg { .. } => Codec::Mjpeg,
            SampleEntry::Avc(_) => Codec::H264,
        }
    }

    /// The picture's size, as the sample entry and `tkhd` say it.
    pub fn size(&self) -> (u16, u16) {
        match self {
            SampleEntry::Jpeg { width, height } => (*width, *height),
            SampleEntry::Avc(p) => (
                u16::try_from(p.info.width).unwrap_or(u16::MAX),
                u16::try_from(p.info.height).unwrap_or(u16::MAX),
            ),
        }
    }
}

/// `sample_flags` of a sample a decoder cannot start at (14496-12 8.8.3.1:
/// sample_depends_on 1, sample_is_non_sync_sample 1).
const NON_SYNC: u32 = 0x0101_0000;
/// `sample_flags` of a sync sample (sample_depends_on 2: an I picture).
const SYNC: u32 = 0x0200_0000;

/// 90 kHz, the usual video clock; a microsecond capture time loses at most
/// 11 µs.
pub const TIMESCALE: u32 = 90_000;

/// Converts microseconds to [`TIMESCALE`] ticks.
pub fn ticks(us: u64) -> u64 {
    us * u64::from(TIMESCALE) / 1_000_000
}

/// One sample of a fragment: its duration in ticks, whether a decoder can
/// start at it (every JPEG can), and its bytes.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    pub duration: u32,
    pub key: bool,
    pub data: &'a [u8],
}

/// The `ftyp` and `moov` boxes that start every file.
pub fn init_segment(entry: &SampleEntry) -> BytesMut {
    let (width, height) = entry.size();
    let mut out = BytesMut::with_capacity(1024);
    write_box(&mut out, b"ftyp", |b| {
        b.put_slice(b"isom");
        b.put_u32(0x200);
        for brand in [b"isom", b"iso5", b"iso6", b"mp41"] {
            b.put_slice(brand);
        }
    });
    write_box(&mut out, b"moov", |moov| {
        full_box(moov, b"mvhd", 0, 0, |b| {
            b.put_u32(0); // creation time
            b.put_u32(0); // modification time
            b.put_u32(TIMESCALE);
            b.put_u32(0); // duration: unknown, fragments follow
            b.put_u32(0x0001_0000); // rate 1.0
            b.put_u16(0x0100); // volume 1.0
            b.put_bytes(0, 10);
            put_matrix(b);
            b.put_bytes(0, 24); // pre_defined
            b.put_u32(2); // next track id
        });
        write_box(moov, b"trak", |trak| {
            // flags: enabled | in movie | in preview
            full_box(trak, b"tkhd", 0, 7, |b| {
                b.put_u32(0);
                b.put_u32(0);
                b.put_u32(1); // track id
                b.put_u32(0);
                b.put_u32(0); // duration
                b.put_bytes(0, 8);
                b.put_u16(0); // layer
                b.put_u16(0); // alternate group
                b.put_u16(0); // volume
                b.put_u16(0);
                put_matrix(b);
                b.put_u32(u32::from(width) << 16);
                b.put_u32(u32::from(height) << 16);
            });
            write_box(trak, b"mdia", |mdia| {
                full_box(mdia, b"mdhd", 0, 0, |b| {
                    b.put_u32(0);
                    b.put_u32(0);
                    b.put_u32(TIMESCALE);
                    b.put_u32(0);
                    b.put_u16(0x55C4); // language "und"
                    b.put_u16(0);
                });
                full_box(mdia, b"hdlr", 0, 0, |b| {
                    b.put_u32(0);
                    b.put_slice(b"vide");
                    b.put_bytes(0, 12);
                    b.put_slice(b"camfleet\0");
                });
                write_box(mdia, b"minf", |minf| {
                    full_box(minf, b"vmhd", 0, 1, |b| b.put_bytes(0, 8));
                    write_box(minf, b"dinf", |dinf| {
                        full_box(dinf, b"dref", 0, 0, |b| {
                            b.put_u32(1);
                            full_box(b, b"url ", 0, 1, |_| {}); // media in this file
                        });
                    });
                    write_box(minf, b"stbl", |stbl| {
                        full_box(stbl, b"stsd", 0, 0, |b| {
                            b.put_u32(1);
                            match entry {
                                SampleEntry::Jpeg { .. } => put_mp4v(b, width, height),
                                SampleEntry::Avc(params) => put_avc1(b, width, height, params),
                            }
                        });
                        full_box(stbl, b"stts", 0, 0, |b| b.put_u32(0));
                        full_box(stbl, b"stsc", 0, 0, |b| b.put_u32(0));
                        full_box(stbl, b"stsz", 0, 0, |b| {
                            b.put_u32(0);
                            b.put_u32(0);
                        });
                        full_box(stbl, b"stco", 0, 0, |b| b.put_u32(0));
                    });
                });
            });
        });
        write_box(moov, b"mvex", |mvex| {
            full_box(mvex, b"trex", 0, 0, |b| {
                b.put_u32(1); // track id
                b.put_u32(1); // sample description index
                b.put_u32(0); // default duration
                b.put_u32(0); // default size
                b.put_u32(0); // default flags: every sample a sync sample
            });
        });
    });
    out
}

/// A `prft` (when `node_us` is given), `moof` and `mdat`: `samples`
/// starting at `base_time` ticks, the first of which the node stamped
/// `node_us` (its own clock, µs since the epoch). The `prft` (ISO/IEC
/// 14496-12 8.16.5, flags 1: the time the frame left the camera's encoder)
/// keeps that time in the file when the samples are placed on the viewer's
/// clock. Sample flags are written only when a sample is not a keyframe,
/// so an MJPEG fragment is byte for byte what it always was.
pub fn fragment(
    sequence: u32,
    base_time: u64,
    node_us: Option<u64>,
    samples: &[Sample<'_>],
) -> BytesMut {
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let with_flags = samples.iter().any(|s| !s.key);
    let mut out = BytesMut::with_capacity(payload + 160 + samples.len() * 12);
    if let Some(node_us) = node_us {
        full_box(&mut out, b"prft", 1, 1, |b| {
            b.put_u32(1); // reference track
            b.put_u64(ntp_timestamp(node_us));
            b.put_u64(base_time);
        });
    }
    let moof_at = out.len();
    let mut data_offset_at = 0;
    write_box(&mut out, b"moof", |moof| {
        full_box(moof, b"mfhd", 0, 0, |b| b.put_u32(sequence));
        write_box(moof, b"traf", |traf| {
            // default-base-is-moof: data offsets count from this moof.
            full_box(traf, b"tfhd", 0, 0x02_0000, |b| b.put_u32(1));
            full_box(traf, b"tfdt", 1, 0, |b| b.put_u64(base_time));
            // data-offset, sample-duration and sample-size present, and
            // sample-flags when a sample is not a sync sample
            let flags = if with_flags { 0x0701 } else { 0x0301 };
            full_box(traf, b"trun", 0, flags, |b| {
                b.put_u32(samples.len() as u32);
                data_offset_at = b.len(); // `b` is `out`: an absolute position
                b.put_i32(0); // patched below
                for s in samples {
                    b.put_u32(s.duration);
                    b.put_u32(s.data.len() as u32);
                    if with_flags {
                        b.put_u32(if s.key { SYNC } else { NON_SYNC });
                    }
                }
            });
        });
    });
    // Samples start right after moof and the 8-byte mdat header.
    let data_offset = (out.len() - moof_at + 8) as i32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    out.put_u32((8 + payload) as u32);
    out.put_slice(b"mdat");
    for s in samples {
        out.put_slice(s.data);
    }
    out
}

/// Seconds since 1900 in the high 32 bits, the fraction in the low ones.
pub fn ntp_timestamp(unix_us: u64) -> u64 {
    let secs = unix_us / 1_000_000 + crate::time::NTP_UNIX_OFFSET_S;
    let fraction = ((unix_us % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | fraction
}

/// Inverse of [`ntp_timestamp`] (to the microsecond).
pub fn unix_us_of_ntp(ntp: u64) -> u64 {
    let secs = (ntp >> 32).saturating_sub(crate::time::NTP_UNIX_OFFSET_S);
    let fraction = ((ntp & 0xFFFF_FFFF) * 1_000_000 + (1 << 31)) >> 32;
    secs * 1_000_000 + fraction
}

/// `mp4v` VisualSampleEntry with an `esds` saying "JPEG" (14496-14 3.1.2,
/// objectTypeIndication 0x6C from the MP4 registration authority's list).
fn put_mp4v(b: &mut BytesMut, width: u16, height: u16) {
    write_box(b, b"mp4v", |e| {
        put_visual_entry(e, width, height);
        full_box(e, b"esds", 0, 0, |d| {
            // ES_Descriptor
            d.put_u8(0x03);
            d.put_u8(3 + 2 + 13 + 3);
            d.put_u16(1); // ES_ID
            d.put_u8(0); // flags
                         // DecoderConfigDescriptor
            d.put_u8(0x04);
            d.put_u8(13);
            d.put_u8(0x6C); // JPEG
            d.put_u8((0x04 << 2) | 1); // visual stream
            d.put_uint(0, 3); // buffer size
            d.put_u32(0); // max bitrate
            d.put_u32(0); // average bitrate
                          // SLConfigDescriptor
            d.put_u8(0x06);
            d.put_u8(1);
            d.put_u8(0x02);
        });
    });
}

/// `avc1` VisualSampleEntry with the stream's `avcC` (14496-15 5.4.2).
fn put_avc1(b: &mut BytesMut, width: u16, height: u16, params: &Params) {
    write_box(b, b"avc1", |e| {
        put_visual_entry(e, width, height);
        write_box(e, b"avcC", |c| c.put_slice(&params.avc_config_record()));
    });
}

/// The fields every VisualSampleEntry starts with (14496-12 12.1.3).
fn put_visual_entry(e: &mut BytesMut, width: u16, height: u16) {
    e.put_bytes(0, 6);
    e.put_u16(1); // data reference index
    e.put_bytes(0, 16); // pre_defined, reserved
    e.put_u16(width);
    e.put_u16(height);
    e.put_u32(0x0048_0000); // 72 dpi
    e.put_u32(0x0048_0000);
    e.put_u32(0);
    e.put_u16(1); // frame count
    let mut name = [0u8; 32];
    name[0] = 8;
    name[1..9].copy_from_slice(b"camfleet");
    e.put_slice(&name);
    e.put_u16(0x0018); // depth
    e.put_i16(-1);
}

fn put_matrix(b: &mut BytesMut) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        b.put_u32(v);
    }
}

fn write_box(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn full_box(
    out: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    write_box(out, kind, |b| {
        b.put_u32((u32::from(version) << 24) | flags);
        body(b);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(mut data: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        while data.len() >= 8 {
            let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
            out.push((String::from_utf8_lossy(&data[4..8]).into_owned(), size));
            data = &data[size..];
        }
        out
    }

    #[test]
    fn box_sizes_add_up_and_the_data_offset_points_at_the_samples() {
        let init = init_segment(&SampleEntry::Jpeg {
            width: 640,
            height: 480,
        });
        assert_eq!(
            boxes(&init)
                .iter()
                .map(|b| b.0.as_str())
                .collect::<Vec<_>>(),
            ["ftyp", "moov"]
        );
        assert_eq!(boxes(&init).iter().map(|b| b.1).sum::<usize>(), init.len());
        let a = [0xFF, 0xD8, 1, 2, 0xFF, 0xD9];
        let b = [0xFF, 0xD8, 3, 0xFF, 0xD9];
        let frag = fragment(
            7,
            9000,
            Some(1_800_000_000_123_456),
            &[
                Sample {
                    duration: 3000,
                    key: true,
                    data: &a,
                },
                Sample {
                    duration: 3000,
                    key: true,
                    data: &b,
                },
            ],
        );
        let parts = boxes(&frag);
        assert_eq!(
            parts.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            ["prft", "moof", "mdat"]
        );
        let (prft_len, moof_len) = (parts[0].1, parts[1].1);
        let ntp = u64::from_be_bytes(frag[16..24].try_into().unwrap());
        assert_eq!(unix_us_of_ntp(ntp), 1_800_000_000_123_456);
        let trun = frag.windows(4).position(|w| w == b"trun").unwrap();
        let offset = i32::from_be_bytes(frag[trun + 12..trun + 16].try_into().unwrap()) as usize;
        // Counted from the moof (default-base-is-moof).
        assert_eq!(&frag[prft_len + offset..prft_len + offset + a.len()], &a);
        assert_eq!(offset, moof_len + 8);
        assert_eq!(&frag[trun + 5..trun + 8], &[0, 3, 1], "no sample flags");
    }

    #[test]
    fn h264_samples_carry_sync_flags_and_the_entry_its_avcc() {
        let params = Params::new(
            bytes::Bytes::from_static(crate::h264::tests::SPS_720P_HIGH),
            bytes::Bytes::from_static(&[0x68, 0xEE, 0x3C, 0x80]),
        )
        .unwrap();
        let record = params.avc_config_record();
        let init = init_segment(&SampleEntry::Avc(params));
        let avcc = init.windows(4).position(|w| w == b"avcC").unwrap();
        assert_eq!(&init[avcc + 4..avcc + 4 + record.len()], &record[..]);
        let tkhd = init.windows(4).position(|w| w == b"tkhd").unwrap();
        assert_eq!(&init[tkhd + 80..tkhd + 84], &(1280u32 << 16).to_be_bytes());
        let (idr, p) = ([0, 0, 0, 1, 0x65], [0, 0, 0, 1, 0x41]);
        let frag = fragment(
            1,
            0,
            None,
            &[
                Sample {
                    duration: 3000,
                    key: true,
                    data: &idr,
                },
                Sample {
                    duration: 3000,
                    key: false,
                    data: &p,
                },
            ],
        );
        assert_eq!(&frag[4..8], b"moof", "no prft without a node time");
        let trun = frag.windows(4).position(|w| w == b"trun").unwrap();
        assert_eq!(&frag[trun + 5..trun + 8], &[0, 7, 1]);
        let flags = |i: usize| {
            let at = trun + 16 + i * 12 + 8;
            u32::from_be_bytes(frag[at..at + 4].try_into().unwrap())
        };
        assert_eq!((flags(0), flags(1)), (SYNC, NON_SYNC));
    }
}
