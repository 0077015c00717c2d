//! The TCP frame protocol v1 decoder on arbitrary bytes from a peer: it
//! never panics and never yields a frame over the cap.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shared::frame::{FrameDecoder, MAX_FRAME_LEN};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    for piece in data.chunks(7) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => assert!(frame.jpeg.len() <= MAX_FRAME_LEN),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
