//! RTP/JPEG both ways: any bytes as a JPEG through the RFC 2435 check and
//! the packetiser, then back through the depacketiser, which must return
//! the same scan data, tables and header; and any bytes as RTP packets into
//! the depacketiser, which must never panic.
#![no_main]

use camera_node::rtp::depacketise::Depacketiser;
use camera_node::rtp::{jpeg, RtpStream, MAX_PACKET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(scan) = jpeg::parse(data) {
        let mut stream = RtpStream::new();
        let mut depacketiser = Depacketiser::default();
        let mut frames = Vec::new();
        stream.packetise(&scan, 1_700_000_000_000_000, |header, chunk| {
            let packet = [header, chunk].concat();
            assert!(packet.len() <= MAX_PACKET);
            if let Some(frame) = depacketiser.push(&packet).expect("own packets depacketise") {
                frames.push(frame);
            }
        });
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        assert_eq!(frame.scan, scan.scan);
        assert_eq!(frame.tables, [scan.tables[0], scan.tables[1]].concat());
        assert_eq!((frame.kind, frame.restart_interval), (scan.kind, scan.restart_interval));
        assert_eq!(frame.width, scan.width.div_ceil(8) * 8);
    }
    let mut depacketiser = Depacketiser::default();
    for packet in data.split(|&b| b == 0xA5) {
        let _ = depacketiser.push(packet);
    }
});
