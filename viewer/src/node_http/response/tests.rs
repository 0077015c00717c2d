use super::*;

fn complete(text: &[u8]) -> ResponseHead {
    match parse_head(text) {
        Head::Complete(head) => head,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(text)),
    }
}

fn decode_all(body: &[u8], max: usize) -> (Decoded, Vec<u8>) {
    let mut chunked = Chunked::new(max);
    let result = chunked.feed(body);
    (result, chunked.into_body())
}

#[test]
fn a_head_gives_status_length_type_and_where_the_body_starts() {
    let text =
        b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nContent-Type: application/json\r\n\r\n{}";
    let head = complete(text);
    assert_eq!(head.status, 201);
    assert_eq!(head.content_length, Some(2));
    assert_eq!(head.content_type.as_deref(), Some("application/json"));
    assert_eq!(&text[head.len..], b"{}");
    assert_eq!(head.framing(), Framing::Length(2));
    // Bare LF line ends, no reason phrase.
    let text = b"HTTP/1.0 200\nContent-Length:  7 \n\nrest";
    let head = complete(text);
    assert_eq!((head.status, head.content_length), (200, Some(7)));
    assert_eq!(&text[head.len..], b"rest");
}

#[test]
fn every_cut_before_the_blank_line_is_incomplete() {
    let text = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for cut in 0..text.len() {
        assert_eq!(parse_head(&text[..cut]), Head::Incomplete, "cut at {cut}");
    }
    assert_eq!(complete(text).len, text.len());
}

#[test]
fn the_body_framing_follows_rfc_9112() {
    let head = complete(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    );
    assert_eq!(
        (head.content_length, head.framing()),
        (None, Framing::Chunked)
    );
    let head = complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    assert_eq!(head.framing(), Framing::UntilClose);
    let head = complete(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(head.framing(), Framing::UntilClose);
    for status in [100, 204, 304] {
        let text = format!("HTTP/1.1 {status} X\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(complete(text.as_bytes()).framing(), Framing::Empty);
    }
    assert!(complete(b"HTTP/1.1 100 Continue\r\n\r\n").is_interim());
    // The same length twice is one length; two lengths are none.
    let head = complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(head.content_length, Some(3));
    assert_eq!(
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
        Head::Malformed
    );
}

#[test]
fn what_is_not_a_response_head_is_malformed() {
    for text in [
        &b"garbage"[..],
        b"\x00\x01",
        b"\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"RTSP/1.0 200 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        assert_eq!(
            parse_head(text),
            Head::Malformed,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    // Garbage is refused before its end, and a bad line before the head's.
    assert_eq!(parse_head(b"HTX"), Head::Malformed);
    assert_eq!(parse_head(b"HTTP/1.1 OK\r\nmore"), Head::Malformed);
}

#[test]
fn a_head_over_its_caps_is_too_large() {
    let mut big = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    big.resize(MAX_HEAD, b'a');
    assert_eq!(parse_head(&big), Head::TooLarge);
    assert_eq!(parse_head(&big[..MAX_HEAD - 1]), Head::Incomplete);
    // Exactly MAX_HEAD bytes with the blank line is still a head.
    let mut fits = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    fits.resize(MAX_HEAD - 4, b'a');
    fits.extend_from_slice(b"\r\n\r\n");
    assert_eq!(complete(&fits).len, MAX_HEAD);
    // Header lines: MAX_HEADERS pass, one more does not.
    let lines = |n: usize| {
        let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..n {
            text.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        text.extend_from_slice(b"\r\n");
        text
    };
    assert!(matches!(parse_head(&lines(MAX_HEADERS)), Head::Complete(_)));
    assert_eq!(parse_head(&lines(MAX_HEADERS + 1)), Head::TooLarge);
}

#[test]
fn chunked_bodies_decode_whole_or_a_byte_at_a_time() {
    let body = b"3\r\nabc\r\n2;ext=1\r\nde\r\nA\nfghijklmno\n0\r\nX-Trailer: t\r\n\r\nNEXT";
    let end = body.len() - 4;
    assert_eq!(
        decode_all(body, 100),
        (Decoded::Done(end), b"abcdefghijklmno".to_vec())
    );
    let mut chunked = Chunked::new(100);
    let mut held = Vec::new();
    let mut done = None;
    for (i, &b) in body.iter().enumerate() {
        held.push(b);
        match chunked.feed(&held) {
            Decoded::More(used) => {
                held.drain(..used);
                assert!(held.len() < 64, "held {held:?}");
            }
            Decoded::Done(used) => {
                assert_eq!(used, held.len());
                done = Some(i + 1);
                break;
            }
            other => panic!("{other:?} at byte {i}"),
        }
    }
    assert_eq!(done, Some(end));
    assert_eq!(chunked.body(), b"abcdefghijklmno");
}

#[test]
fn broken_chunked_bodies_are_malformed() {
    for body in [
        &b"zz\r\nab\r\n0\r\n\r\n"[..],
        b"\r\n",
        b"2\r\nabX\r\n0\r\n\r\n",
        b"+2\r\nab\r\n0\r\n\r\n",
    ] {
        assert_eq!(
            decode_all(body, 100).0,
            Decoded::Malformed,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Cut short: more is wanted, not an error.
    assert_eq!(
        decode_all(b"5\r\nab", 100),
        (Decoded::More(5), b"ab".to_vec())
    );
    assert_eq!(decode_all(b"5", 100).0, Decoded::More(0));
}

#[test]
fn chunked_bodies_over_their_caps_are_too_large() {
    // Refused from the size line, before any of its data.
    assert_eq!(decode_all(b"65\r\n", 100), (Decoded::TooLarge, Vec::new()));
    assert_eq!(
        decode_all(b"60\r\n", 100).0,
        Decoded::More(4),
        "0x60 bytes fit in 100"
    );
    // Two chunks that fit alone but not together.
    let mut two = b"32\r\n".to_vec();
    two.extend_from_slice(&[b'a'; 50]);
    two.extend_from_slice(b"\r\n33\r\n");
    assert_eq!(decode_all(&two, 100).0, Decoded::TooLarge);
    assert_eq!(
        decode_all(b"FFFFFFFFFFFFFFFFF\r\n", 100).0,
        Decoded::TooLarge
    );
    let long_ext = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE));
    assert_eq!(decode_all(long_ext.as_bytes(), 100).0, Decoded::TooLarge);
    let mut trailers = b"0\r\n".to_vec();
    for _ in 0..=MAX_HEADERS {
        trailers.extend_from_slice(b"X: y\r\n");
    }
    assert_eq!(decode_all(&trailers, 100).0, Decoded::TooLarge);
}
