//! The viewer's reading of a node's HTTP/1.1 replies, on any bytes (a
//! node, or whatever answers at its address): the head parser and the
//! chunked-body decoder never panic, never keep more than their caps, give
//! the same answer whatever follows a decided head, and decode a chunked
//! body fed in pieces exactly as in one go.
#![no_main]

use libfuzzer_sys::fuzz_target;
use viewer::node_http::response::{parse_head, Chunked, Decoded, Head, MAX_HEAD};

/// A small body cap, so that the fuzzer reaches it.
const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, data)) = data.split_first() else {
        return;
    };
    let head = parse_head(data);
    match &head {
        Head::Incomplete => assert!(data.len() < MAX_HEAD),
        Head::Complete(h) => {
            assert!(h.len > 0 && h.len <= data.len().min(MAX_HEAD));
            assert!((100..=999).contains(&h.status));
            assert!(h
                .content_type
                .as_ref()
                .is_none_or(|t| t.len() <= 3 * MAX_HEAD));
            assert_eq!(
                parse_head(&data[..h.len]),
                head,
                "the head alone reads the same"
            );
        }
        Head::TooLarge | Head::Malformed => {}
    }
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        let prefix = parse_head(&data[..cut]);
        if prefix != Head::Incomplete {
            assert_eq!(prefix, head, "a prefix of {cut} bytes decided otherwise");
        }
    }

    // The body: after a head when there is one, else all of it.
    let body = match &head {
        Head::Complete(h) => &data[h.len..],
        _ => data,
    };
    let mut whole = Chunked::new(MAX_BODY);
    let at_once = whole.feed(body);
    assert!(whole.body().len() <= MAX_BODY);
    match at_once {
        Decoded::More(used) => assert!(used <= body.len() && body.len() - used < MAX_HEAD),
        Decoded::Done(used) => assert!(used <= body.len()),
        Decoded::TooLarge | Decoded::Malformed => {}
    }

    // The same bytes in pieces, as the async reader feeds them.
    let piece = usize::from(piece).max(1);
    let mut chunked = Chunked::new(MAX_BODY);
    let mut held = Vec::new();
    let mut taken = 0;
    let mut in_pieces = Decoded::More(0);
    for bytes in body.chunks(piece) {
        let before = held.len();
        held.extend_from_slice(bytes);
        in_pieces = chunked.feed(&held);
        match in_pieces {
            Decoded::More(used) => {
                assert!(held.len() - used < MAX_HEAD + piece);
                taken += used;
                held.drain(..used);
            }
            Decoded::Done(used) => {
                assert!(used >= before, "the body ended in bytes fed before");
                taken += used;
                break;
            }
            Decoded::TooLarge | Decoded::Malformed => break,
        }
        assert!(chunked.body().len() <= MAX_BODY);
    }
    match (at_once, in_pieces) {
        (Decoded::More(used), Decoded::More(_)) | (Decoded::Done(used), Decoded::Done(_)) => {
            assert_eq!(used, taken);
            assert_eq!(whole.body(), chunked.body());
        }
        (a, b) => assert_eq!(a, b),
    }
});
