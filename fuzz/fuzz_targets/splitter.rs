//! The MJPEG splitter on arbitrary camera output, fed in arbitrary chunks:
//! it never panics, every frame it yields is SOI..EOI within the cap, and
//! it never holds more than the cap plus one chunk.
#![no_main]

use camera_node::mjpeg::Splitter;
use libfuzzer_sys::fuzz_target;

const CAP: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut splitter = Splitter::new(CAP);
    for piece in rest.chunks(chunk) {
        splitter.push(piece);
        while let Some(result) = splitter.next_frame() {
            if let Ok(frame) = result {
                assert!(frame.starts_with(&[0xFF, 0xD8]) && frame.ends_with(&[0xFF, 0xD9]));
                assert!(frame.len() <= CAP + 2);
            }
        }
        assert!(splitter.buffered() <= CAP + chunk + 2, "buffered {}", splitter.buffered());
    }
});
