//! What RFC 2435 (RTP payload format for JPEG) needs from a JPEG, and the
//! check that a camera's JPEGs fit it: baseline, three components, 4:2:2 or
//! 4:2:0 luma sampling with 1x1 chroma, the standard Huffman tables of
//! JPEG Annex K (or none, which means them), 8-bit quantisation tables, at
//! most 2040 pixels wide and tall. The receiver rebuilds the headers from
//! the RTP/JPEG header alone, so anything else would decode wrongly.

use std::fmt;

/// The widest and tallest image RFC 2435 can describe (255 * 8).
pub const MAX_DIMENSION: u16 = 2040;

/// The parts of a JPEG that RTP/JPEG carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegScan<'a> {
    /// RFC 2435 type: 0 (4:2:2) or 1 (4:2:0), plus 64 with restart markers.
    pub kind: u8,
    pub width: u16,
    pub height: u16,
    /// Restart interval in MCUs (DRI); 0 without restart markers.
    pub restart_interval: u16,
    /// Luma then chroma quantisation table, 64 bytes each, zig-zag order.
    pub tables: [&'a [u8]; 2],
    /// The entropy-coded data after the scan header, up to (not including) EOI.
    pub scan: &'a [u8],
}

/// Why RFC 2435 cannot carry a JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    Malformed(&'static str),
    /// A frame type other than baseline DCT (SOF0).
    NotBaseline(u8),
    Components(u8),
    Sampling(String),
    TooLarge {
        width: u16,
        height: u16,
    },
    HuffmanTables,
    TablePrecision,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Malformed(what) => write!(f, "malformed JPEG: {what}"),
            Unsupported::NotBaseline(sof) => {
                write!(f, "not a baseline JPEG (SOF{})", sof & 0x0f)
            }
            Unsupported::Components(n) => {
                write!(f, "{n} colour components (RTP/JPEG carries YCbCr only)")
            }
            Unsupported::Sampling(s) => {
                write!(f, "sampling {s} (RTP/JPEG carries 4:2:0 and 4:2:2 only)")
            }
            Unsupported::TooLarge { width, height } => write!(
                f,
                "{width}x{height} is larger than RTP/JPEG's {MAX_DIMENSION}x{MAX_DIMENSION}"
            ),
            Unsupported::HuffmanTables => write!(
                f,
                "non-standard Huffman tables (RTP/JPEG assumes the tables of JPEG Annex K; \
                 ffmpeg writes them with -huffman default)"
            ),
            Unsupported::TablePrecision => write!(f, "16-bit quantisation tables"),
        }
    }
}

impl std::error::Error for Unsupported {}

/// Reads what RTP/JPEG needs from one complete JPEG (SOI..EOI).
pub fn parse(jpeg: &[u8]) -> Result<JpegScan<'_>, Unsupported> {
    if !jpeg.starts_with(&[0xff, 0xd8]) {
        return Err(Unsupported::Malformed("no SOI"));
    }
    if !jpeg.ends_with(&[0xff, 0xd9]) || jpeg.len() < 4 {
        return Err(Unsupported::Malformed("no EOI at the end"));
    }
    let mut tables: [Option<&[u8]>; 4] = [None; 4];
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0u16;
    let mut pos = 2;
    loop {
        // Markers may be padded with any number of 0xFF fill bytes.
        while jpeg.get(pos) == Some(&0xff) && jpeg.get(pos + 1) == Some(&0xff) {
            pos += 1;
        }
        let (Some(&0xff), Some(&marker)) = (jpeg.get(pos), jpeg.get(pos + 1)) else {
            return Err(Unsupported::Malformed("expected a marker"));
        };
        let len = match jpeg.get(pos + 2..pos + 4) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => return Err(Unsupported::Malformed("segment past the end")),
        };
        let body = jpeg
            .get(pos + 4..pos + 2 + len)
            .filter(|_| len >= 2)
            .ok_or(Unsupported::Malformed("segment past the end"))?;
        pos += 2 + len;
        match marker {
            0xdb => read_quant_tables(body, &mut tables)?,
            0xc4 => check_huffman_tables(body)?,
            0xdd => {
                let ri = body.get(..2).ok_or(Unsupported::Malformed("short DRI"))?;
                restart_interval = u16::from_be_bytes([ri[0], ri[1]]);
            }
            0xc0 => frame = Some(read_frame(body)?),
            0xc1..=0xcf if !matches!(marker, 0xc4 | 0xc8 | 0xcc) => {
                return Err(Unsupported::NotBaseline(marker));
            }
            0xda => {
                let frame = frame.ok_or(Unsupported::Malformed("scan before frame header"))?;
                check_scan_header(body)?;
                let tables = [
                    tables[usize::from(frame.luma_table)],
                    tables[usize::from(frame.chroma_table)],
                ];
                let [Some(luma), Some(chroma)] = tables else {
                    return Err(Unsupported::Malformed("missing quantisation table"));
                };
                let scan = jpeg
                    .get(pos..jpeg.len() - 2)
                    .ok_or(Unsupported::Malformed("no scan data"))?;
                let restart = if restart_interval > 0 { 64 } else { 0 };
                return Ok(JpegScan {
                    kind: frame.kind + restart,
                    width: frame.width,
                    height: frame.height,
                    restart_interval,
                    tables: [luma, chroma],
                    scan,
                });
            }
            _ => {} // APPn, COM and friends carry nothing RTP/JPEG needs
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: u8,
    width: u16,
    height: u16,
    luma_table: u8,
    chroma_table: u8,
}

fn read_frame(body: &[u8]) -> Result<Frame, Unsupported> {
    let [precision, h1, h0, w1, w0, count, components @ ..] = body else {
        return Err(Unsupported::Malformed("short frame header"));
    };
    if *precision != 8 {
        return Err(Unsupported::NotBaseline(0xc0));
    }
    let (width, height) = (
        u16::from_be_bytes([*w1, *w0]),
        u16::from_be_bytes([*h1, *h0]),
    );
    if *count != 3 {
        return Err(Unsupported::Components(*count));
    }
    let c = components
        .get(..9)
        .ok_or(Unsupported::Malformed("short frame header"))?;
    // Each component: id, sampling (H << 4 | V), table.
    let sampling = [c[1], c[4], c[7]];
    let kind = match sampling {
        [0x21, 0x11, 0x11] => 0,
        [0x22, 0x11, 0x11] => 1,
        other => {
            let s = other.map(|s| format!("{}x{}", s >> 4, s & 0x0f)).join(",");
            return Err(Unsupported::Sampling(s));
        }
    };
    if c[5] != c[8] || c.iter().skip(2).step_by(3).any(|&t| t > 3) {
        return Err(Unsupported::Malformed(
            "chroma components use different tables",
        ));
    }
    if width == 0 || height == 0 {
        return Err(Unsupported::Malformed("zero size"));
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(Unsupported::TooLarge { width, height });
    }
    Ok(Frame {
        kind,
        width,
        height,
        luma_table: c[2],
        chroma_table: c[5],
    })
}

fn read_quant_tables<'a>(
    mut body: &'a [u8],
    tables: &mut [Option<&'a [u8]>; 4],
) -> Result<(), Unsupported> {
    while let [pq_tq, rest @ ..] = body {
        if pq_tq >> 4 != 0 {
            return Err(Unsupported::TablePrecision);
        }
        let table = rest
            .get(..64)
            .ok_or(Unsupported::Malformed("short quantisation table"))?;
        tables[usize::from(pq_tq & 0x03)] = Some(table);
        body = &rest[64..];
    }
    Ok(())
}

fn check_huffman_tables(mut body: &[u8]) -> Result<(), Unsupported> {
    while let [class_id, rest @ ..] = body {
        let counts = rest
            .get(..16)
            .ok_or(Unsupported::Malformed("short Huffman table"))?;
        let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let values = rest
            .get(16..16 + n)
            .ok_or(Unsupported::Malformed("short Huffman table"))?;
        let standard = match class_id {
            0x00 => STANDARD_DC_LUMA,
            0x01 => STANDARD_DC_CHROMA,
            0x10 => STANDARD_AC_LUMA,
            0x11 => STANDARD_AC_CHROMA,
            _ => return Err(Unsupported::HuffmanTables),
        };
        if counts != standard.0 || values != standard.1 {
            return Err(Unsupported::HuffmanTables);
        }
        body = &rest[16 + n..];
    }
    Ok(())
}

/// One scan with all three components, luma on tables 0, chroma on 1.
fn check_scan_header(body: &[u8]) -> Result<(), Unsupported> {
    match body {
        [3, _, 0x00, _, 0x11, _, 0x11, ..] => Ok(()),
        [3, ..] => Err(Unsupported::HuffmanTables),
        _ => Err(Unsupported::Malformed("scan without all three components")),
    }
}

type HuffmanSpec = (&'static [u8], &'static [u8]);

/// The four standard tables with their DHT class/id byte, in DHT order.
pub fn standard_huffman_tables() -> [(u8, HuffmanSpec); 4] {
    [
        (0x00, STANDARD_DC_LUMA),
        (0x10, STANDARD_AC_LUMA),
        (0x01, STANDARD_DC_CHROMA),
        (0x11, STANDARD_AC_CHROMA),
    ]
}

// JPEG (ITU T.81) Annex K.3, tables K.3 to K.6: counts per code length, then values.
const STANDARD_DC_LUMA: HuffmanSpec = (
    &[0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const STANDARD_DC_CHROMA: HuffmanSpec = (
    &[0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
);
const STANDARD_AC_LUMA: HuffmanSpec = (
    &[0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
    &[
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
);
const STANDARD_AC_CHROMA: HuffmanSpec = (
    &[0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
    &[
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ],
);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::pattern::TestPattern;
    use crate::source::CaptureSettings;

    pub(crate) async fn pattern_frame(width: u32, height: u32) -> Vec<u8> {
        let settings = CaptureSettings {
            width,
            height,
            fps: 100,
            quality: 80,
            ..CaptureSettings::default()
        };
        let mut pattern = TestPattern::new(settings).await.unwrap();
        pattern.next_frame().await.unwrap().data.to_vec()
    }

    #[tokio::test]
    async fn the_test_pattern_fits_rtp_jpeg_with_restart_markers() {
        let jpeg = pattern_frame(320, 240).await;
        let scan = parse(&jpeg).unwrap();
        assert_eq!((scan.kind, scan.width, scan.height), (65, 320, 240));
        assert!(scan.restart_interval > 0);
        assert_eq!(scan.tables.map(<[u8]>::len), [64, 64]);
        assert!(scan.scan.len() > 100);
        assert_eq!(
            scan.scan.as_ptr_range().end,
            jpeg[jpeg.len() - 2..].as_ptr()
        );
    }

    #[test]
    fn the_standard_tables_add_up() {
        for (counts, values) in [
            STANDARD_DC_LUMA,
            STANDARD_DC_CHROMA,
            STANDARD_AC_LUMA,
            STANDARD_AC_CHROMA,
        ] {
            let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
            assert_eq!(n, values.len());
        }
    }

    #[tokio::test]
    async fn other_huffman_tables_are_refused() {
        let mut jpeg = pattern_frame(64, 48).await;
        // Swap two values of the first DHT's table.
        let dht = jpeg.windows(2).position(|w| w == [0xff, 0xc4]).unwrap();
        jpeg.swap(dht + 5 + 16, dht + 5 + 17);
        assert_eq!(parse(&jpeg), Err(Unsupported::HuffmanTables));
    }

    #[tokio::test]
    async fn oversize_grey_and_damaged_images_are_refused() {
        let jpeg = pattern_frame(64, 48).await;
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        let mut wide = jpeg.clone();
        wide[sof + 7..sof + 9].copy_from_slice(&2048u16.to_be_bytes());
        assert!(matches!(parse(&wide), Err(Unsupported::TooLarge { .. })));
        let mut sampling = jpeg.clone();
        sampling[sof + 11] = 0x11;
        assert!(matches!(parse(&sampling), Err(Unsupported::Sampling(_))));
        let mut progressive = jpeg.clone();
        progressive[sof + 1] = 0xc2;
        assert_eq!(parse(&progressive), Err(Unsupported::NotBaseline(0xc2)));
        for cut in [3, 20, sof + 5, jpeg.len() / 2] {
            let mut short = jpeg[..cut].to_vec();
            short.extend_from_slice(&[0xff, 0xd9]);
            assert!(parse(&short).is_err() || cut > sof + 20, "cut at {cut}");
        }
        assert!(parse(b"").is_err());
        assert!(parse(&[0xff, 0xd8, 0xff, 0xd9]).is_err());
    }
}
