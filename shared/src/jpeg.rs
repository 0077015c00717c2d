//! A JPEG's width and height, read from its frame header (ITU T.81, B.2.2)
//! by walking the marker segments before the first scan. Pure and
//! allocation-free: the node sizes NodeInfo with it, the viewer sizes its
//! recordings, both on bytes from a camera, the network or a file.

/// Start of image: every JPEG begins with `FF D8`.
const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
/// Start of scan: entropy-coded data follows; a frame header comes before.
const SOS: u8 = 0xDA;
/// Markers without a length (B.1.1.3, B.2.4.4): TEM and the restarts.
const TEM: u8 = 0x01;
/// Bytes of a frame header before its component list (Lf, P, Y, X, Nf).
const SOF_FIXED_LEN: usize = 8;

/// `(width, height)` from the first frame header (SOF0..SOF15, but not
/// DHT `C4`, JPG `C8` or DAC `CC`), or `None` when `jpeg` does not start
/// with SOI, a byte where a marker belongs is not one, a segment length is
/// under 2, a scan, EOI or another SOI comes first, or the bytes end before
/// the header's size fields. Fill bytes (`FF` runs before a marker, B.1.1.2)
/// are skipped. A size of 0 (the height then comes later in a DNL segment,
/// which no camera here writes) reads as `None`.
pub fn dimensions(jpeg: &[u8]) -> Option<(u16, u16)> {
    if jpeg.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut at = 2;
    while at + 2 <= jpeg.len() {
        if jpeg[at] != 0xFF {
            return None;
        }
        let marker = jpeg[at + 1];
        match marker {
            0xFF => {
                at += 1;
                continue;
            }
            TEM | 0xD0..=0xD7 => {
                at += 2;
                continue;
            }
            0x00 | SOI | EOI | SOS => return None,
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]));
        if len < 2 {
            return None;
        }
        let is_sof = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            if len < SOF_FIXED_LEN {
                return None;
            }
            let height = u16::from_be_bytes([*jpeg.get(at + 5)?, *jpeg.get(at + 6)?]);
            let width = u16::from_be_bytes([*jpeg.get(at + 7)?, *jpeg.get(at + 8)?]);
            return (width > 0 && height > 0).then_some((width, height));
        }
        at += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, APP0, a DQT-shaped segment holding `FF D9`, and a baseline
    /// frame header for 640x480 with one component.
    fn header() -> Vec<u8> {
        let mut j = vec![0xFF, SOI];
        j.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x06, b'J', b'F', b'I', b'F']);
        j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x04, 0xFF, 0xD9]);
        j.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x01, 0xE0, 0x02, 0x80]);
        j.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
        j.extend_from_slice(&[0xFF, SOS, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        j.extend_from_slice(&[0x12, 0x34, 0xFF, EOI]);
        j
    }

    #[test]
    fn dimensions_come_from_the_frame_header() {
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 80)
            .encode(&[0u8; 64 * 48 * 3], 64, 48, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        assert_eq!(dimensions(&out), Some((64, 48)));
        assert_eq!(dimensions(b"garbage"), None);
        assert_eq!(dimensions(&out[..10]), None);
        assert_eq!(dimensions(&header()), Some((640, 480)));
    }

    #[test]
    fn fill_bytes_and_lengthless_markers_are_stepped_over() {
        // FF FF FF before APP0, and a restart marker between segments.
        let j = [
            &header()[..2],
            &[0xFF, 0xFF, 0xFF, 0xD3][..],
            &header()[2..],
        ]
        .concat();
        assert_eq!(dimensions(&j), Some((640, 480)));
        // Progressive (SOF2) and lossless (SOF3) headers count; DHT does not.
        for (sof, want) in [
            (0xC2, Some((640, 480))),
            (0xC3, Some((640, 480))),
            (0xC4, None),
        ] {
            let mut j = header();
            j[17] = sof;
            assert_eq!(dimensions(&j), want, "marker {sof:02X}");
        }
    }

    #[test]
    fn every_truncation_reads_as_none_not_a_panic() {
        let j = header();
        let sof_end = 2 + 8 + 6 + 9;
        for cut in 0..sof_end {
            assert_eq!(dimensions(&j[..cut]), None, "cut at {cut}");
        }
        assert_eq!(dimensions(&j[..sof_end]), Some((640, 480)));
    }

    #[test]
    fn broken_structure_reads_as_none() {
        // No SOI.
        assert_eq!(dimensions(&header()[2..]), None);
        // A byte where a marker belongs.
        let mut j = header();
        j[2] = 0x12;
        assert_eq!(dimensions(&j), None);
        // A segment length under 2 would never move on.
        let mut j = header();
        j[4..6].copy_from_slice(&[0x00, 0x01]);
        assert_eq!(dimensions(&j), None);
        // A frame header too short to hold a size.
        let mut j = header();
        j[19] = 0x05;
        assert_eq!(dimensions(&j), None);
        // A scan, EOI or FF00 before any frame header.
        for early in [SOS, EOI, 0x00, SOI] {
            let mut j = vec![0xFF, SOI, 0xFF, early, 0x00, 0x04, 0x00, 0x00];
            j.extend_from_slice(&header()[16..]);
            assert_eq!(dimensions(&j), None, "marker {early:02X}");
        }
        // A length that runs past the end.
        let mut j = header();
        j[4..6].copy_from_slice(&[0xFF, 0xF0]);
        assert_eq!(dimensions(&j), None);
        // A height of 0 (given later by DNL).
        let mut j = header();
        j[21..23].copy_from_slice(&[0x00, 0x00]);
        assert_eq!(dimensions(&j), None);
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic fuzz; fuzz/fuzz_targets/jpeg_header.rs goes further.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5000 {
            let mut j = vec![0xFF, SOI];
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                j.push(match x % 4 {
                    0 => 0xFF,
                    1 => 0xC0,
                    _ => (x >> 24) as u8,
                });
            }
            let _ = dimensions(&j);
        }
    }
}
