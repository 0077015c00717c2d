//! The RTSP push's reading of a server's bytes: framing into replies and
//! interleaved packets before them. Nothing may panic, framing always
//! makes progress or waits for more without holding over its cap, and a
//! packet, reply or refusal once found stays the same whatever follows.
#![no_main]

use camera_node::push::reply::{frame, Framed, MAX_FRAMED, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        let framed = frame(rest);
        let decided = match &framed {
            Framed::Incomplete => {
                assert!(rest.len() < MAX_FRAMED);
                false
            }
            Framed::Skip(n) => {
                assert!(*n > 0 && *n <= rest.len());
                // A run of line breaks may grow with more bytes.
                !matches!(rest[0], b'\r' | b'\n')
            }
            Framed::Reply(reply, used) => {
                assert!(*used > 0 && *used <= rest.len());
                assert!(reply.headers.len() <= MAX_HEADERS);
                assert!((100..=999).contains(&reply.status));
                let _ = reply.header("content-length");
                true
            }
            Framed::TooLarge | Framed::Malformed => true,
        };
        if decided {
            for cut in [rest.len() + 1, rest.len() + 7] {
                let mut longer = rest.to_vec();
                longer.resize(cut, b'$');
                assert_eq!(frame(&longer), framed, "more bytes changed a decided frame");
            }
        }
        match framed {
            Framed::Skip(n) => rest = &rest[n..],
            Framed::Reply(_, used) => rest = &rest[used..],
            Framed::Incomplete | Framed::TooLarge | Framed::Malformed => break,
        }
    }
});
