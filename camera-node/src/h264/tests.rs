use super::*;

/// SPS for 64x48 baseline (from the test pattern's encoder) and a PPS.
fn params() -> (Vec<u8>, Vec<u8>) {
    let sps = crate::source::h264_pattern::sps_nal(64, 48, 30);
    let pps = crate::source::h264_pattern::pps_nal();
    (sps, pps)
}

fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
    nals.iter()
        .flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat())
        .collect()
}

fn split(s: &mut Splitter) -> (Vec<AccessUnit>, Vec<Warning>) {
    let (mut units, mut warnings) = (Vec::new(), Vec::new());
    while let Some(r) = s.next_unit() {
        match r {
            Ok(u) => units.push(u),
            Err(w) => warnings.push(w),
        }
    }
    (units, warnings)
}

fn nal_types(au: &AccessUnit) -> Vec<u8> {
    h264::avcc_nals(&au.data).map(h264::nal_type).collect()
}

const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
const P0: &[u8] = &[0x41, 0x9A, 0x02];
const P_SECOND_SLICE: &[u8] = &[0x41, 0x46, 0x02];

#[test]
fn pictures_are_cut_at_first_slices_and_parameter_sets() {
    let (sps, pps) = params();
    let stream = annex_b(&[&sps, &pps, IDR, P0, P_SECOND_SLICE, P0, &sps, &pps, IDR, P0]);
    let mut s = Splitter::new();
    s.push(&stream);
    let (units, warnings) = split(&mut s);
    assert!(
        matches!(
            warnings[..],
            [Warning::NewParams {
                width: 64,
                height: 48,
                ..
            }]
        ),
        "{warnings:?}"
    );
    // The last picture is held until the next one starts.
    let types: Vec<Vec<u8>> = units.iter().map(nal_types).collect();
    assert_eq!(types, [vec![7, 8, 5], vec![1, 1], vec![1], vec![7, 8, 5]]);
    assert_eq!(
        units.iter().map(|u| u.key).collect::<Vec<_>>(),
        [true, false, false, true]
    );
    s.push(&annex_b(&[P0]));
    let (units, _) = split(&mut s);
    assert_eq!(units.len(), 1);
}

#[test]
fn a_keyframe_without_parameter_sets_gets_the_remembered_ones() {
    let (sps, pps) = params();
    let mut s = Splitter::new();
    s.push(&annex_b(&[&sps, &pps, IDR, P0, IDR, P0]));
    let (units, _) = split(&mut s);
    assert_eq!(nal_types(&units[2]), [7, 8, 5]);
    assert_eq!(Params::of_keyframe(&units[2].data).unwrap().info.width, 64);
}

#[test]
fn bytes_fed_one_at_a_time_split_the_same() {
    let (sps, pps) = params();
    let stream = annex_b(&[&sps, &pps, IDR, P0, P_SECOND_SLICE, P0, IDR, P0]);
    let mut whole = Splitter::new();
    whole.push(&stream);
    let mut bytewise = Splitter::new();
    let mut units = Vec::new();
    for b in &stream {
        bytewise.push(&[*b]);
        units.extend(split(&mut bytewise).0);
    }
    assert_eq!(units, split(&mut whole).0);
}

#[test]
fn garbage_bad_units_and_absurd_sps_are_dropped_and_the_stream_recovers() {
    let (sps, pps) = params();
    let mut absurd = sps.clone();
    absurd[4] = 0; // width in macroblocks becomes an absurd ue(v)
    absurd.truncate(6);
    let mut s = Splitter::new();
    s.push(b"garbage before the stream");
    s.push(&annex_b(&[
        &sps,
        &pps,
        IDR,
        P0,
        &[0xFF, 0xFF, 0xFF],
        &absurd,
        P0,
        IDR,
        P0,
    ]));
    let (units, warnings) = split(&mut s);
    assert!(
        warnings.contains(&Warning::Garbage { bytes: 25 }),
        "{warnings:?}"
    );
    assert!(
        warnings.contains(&Warning::NotNal { bytes: 3 }),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| matches!(w, Warning::BadParams(_))),
        "{warnings:?}"
    );
    assert_eq!(units.iter().filter(|u| u.key).count(), 2);
}

#[test]
fn a_picture_over_the_cap_is_dropped_and_memory_stays_bounded() {
    let (sps, pps) = params();
    let mut s = Splitter::new();
    s.push(&annex_b(&[&sps, &pps, IDR]));
    // A slice that never ends: no start code for more than the cap.
    let chunk = vec![0x55u8; 1024 * 1024];
    let mut warned = false;
    for _ in 0..(MAX_AU_LEN / chunk.len() + 2) {
        s.push(&chunk);
        warned |= split(&mut s)
            .1
            .iter()
            .any(|w| matches!(w, Warning::TooLarge { .. }));
        assert!(s.buffered() <= MAX_AU_LEN + chunk.len() + READ_CHUNK);
    }
    assert!(warned);
    s.push(&annex_b(&[P0, P0, &sps, &pps, IDR, P0, P0]));
    let (units, _) = split(&mut s);
    assert!(
        units[0].key,
        "recovers at the next keyframe, dropping the pictures before it: {units:?}"
    );
    assert!(units.iter().all(|u| !u.data.is_empty()));
    // Too many NAL units in one picture.
    let mut many = vec![&sps[..], &pps[..], IDR];
    let slice = [0x41u8, 0x46, 0x02];
    many.extend(std::iter::repeat_n(&slice[..], MAX_NALS + 10));
    many.push(P0);
    let mut s = Splitter::new();
    s.push(&annex_b(&many));
    let (_, warnings) = split(&mut s);
    assert!(warnings.contains(&Warning::TooManyNals), "{warnings:?}");
}

#[test]
fn a_truncated_unit_is_passed_on_and_b_frames_are_told_once() {
    let (sps, pps) = params();
    let mut s = Splitter::new();
    // An IDR slice cut after its header byte, then the stream goes on.
    s.push(&annex_b(&[&sps, &pps, &[0x65], P0, &sps, &pps, IDR, P0]));
    let (units, warnings) = split(&mut s);
    assert_eq!(units.iter().filter(|u| u.key).count(), 2, "{warnings:?}");
    // A B slice (slice_type 1: first_mb 1, type 010) is told once.
    const B: &[u8] = &[0x01, 0xA4, 0x02];
    s.push(&annex_b(&[B, P0, B, P0, IDR]));
    let (_, warnings) = split(&mut s);
    assert_eq!(
        warnings.iter().filter(|w| **w == Warning::BFrames).count(),
        1,
        "{warnings:?}"
    );
}

#[test]
fn a_stream_that_changes_size_says_so() {
    let (sps, pps) = params();
    let big = crate::source::h264_pattern::sps_nal(128, 96, 30);
    let mut s = Splitter::new();
    s.push(&annex_b(&[&sps, &pps, IDR, P0, &big, &pps, IDR, P0]));
    let (units, warnings) = split(&mut s);
    let sizes: Vec<(u32, u32)> = warnings
        .iter()
        .filter_map(|w| match w {
            Warning::NewParams { width, height, .. } => Some((*width, *height)),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [(64, 48), (128, 96)]);
    assert_eq!(Params::of_keyframe(&units[2].data).unwrap().info.width, 128);
}

#[test]
fn annex_b_is_told_from_jpeg() {
    assert!(looks_like_annex_b(&[0, 0, 0, 1, 0x67, 0x42]));
    assert!(looks_like_annex_b(&[0, 0, 1, 0x09, 0x10]));
    assert!(!looks_like_annex_b(&[0xFF, 0xD8, 0xFF, 0xE0]));
    assert!(!looks_like_annex_b(&[0, 0, 0, 1, 0xE7]));
}
