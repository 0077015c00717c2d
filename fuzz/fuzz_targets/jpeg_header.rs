//! A JPEG's size from its frame header, on any bytes (a camera, a peer or
//! a damaged recording can send anything): it never panics, a size it
//! finds is never 0 and belongs to bytes that start with SOI, and more
//! bytes after a header it read never change its answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::jpeg::dimensions;

fuzz_target!(|data: &[u8]| {
    let whole = dimensions(data);
    if let Some((width, height)) = whole {
        assert!(width > 0 && height > 0);
        assert!(data.starts_with(&[0xFF, 0xD8]));
    }
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        if let Some(size) = dimensions(&data[..cut]) {
            assert_eq!(Some(size), whole, "a prefix of {cut} bytes read otherwise");
        }
    }
});
