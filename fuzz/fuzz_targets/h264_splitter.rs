//! The H.264 access-unit splitter on arbitrary camera output, fed in
//! arbitrary chunks: it never panics; every picture it yields is a walk of
//! whole AVCC NAL units within the caps; a keyframe starts with an SPS and
//! a PPS; it never holds more than the cap plus one chunk.
#![no_main]

use camera_node::h264::{Splitter, MAX_AU_LEN, MAX_NALS};
use libfuzzer_sys::fuzz_target;
use shared::h264::{avcc_nals, nal_type, MAX_PARAM_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut splitter = Splitter::new();
    for piece in rest.chunks(chunk) {
        splitter.push(piece);
        while let Some(result) = splitter.next_unit() {
            if let Ok(au) = result {
                assert!(au.data.len() <= MAX_AU_LEN + 2 * (MAX_PARAM_LEN + 4));
                let walked: usize = avcc_nals(&au.data).map(|n| 4 + n.len()).sum();
                assert_eq!(walked, au.data.len(), "whole NAL units");
                assert!(avcc_nals(&au.data).count() <= MAX_NALS + 2);
                if au.key {
                    let types: Vec<u8> = avcc_nals(&au.data).map(nal_type).collect();
                    assert!(types.contains(&7) && types.contains(&8), "{types:?}");
                }
            }
        }
        assert!(splitter.buffered() <= MAX_AU_LEN + chunk + 8, "buffered {}", splitter.buffered());
    }
});
