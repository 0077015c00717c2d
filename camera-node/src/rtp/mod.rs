//! RTP for the RTSP server: JPEG frames as RTP/JPEG packets (RFC 2435),
//! RTCP sender reports (RFC 3550), and a depacketiser that checks the
//! round trip in tests and fuzzing.

pub mod depacketise;
pub mod jpeg;

use std::hash::{BuildHasher, RandomState};
use std::time::{SystemTime, UNIX_EPOCH};

use self::jpeg::JpegScan;

/// RFC 3551's static payload type for JPEG.
pub const PAYLOAD_TYPE: u8 = 26;
pub const CLOCK_RATE: u32 = 90_000;
/// The largest RTP packet sent (header included): fits a 1500-byte
/// Ethernet MTU with IP and UDP headers and room for tunnels.
pub const MAX_PACKET: usize = 1400;

const RTP_HEADER: usize = 12;
const JPEG_HEADER: usize = 8;
const RESTART_HEADER: usize = 4;
const QUANT_HEADER: usize = 4 + 128;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A fresh random number (SSRCs, first sequence numbers, session ids).
pub fn random_u64() -> u64 {
    RandomState::new().hash_one(SystemTime::now())
}

/// One RTP stream to one client: its SSRC, sequence numbers and the
/// mapping from capture time to RTP time.
#[derive(Debug)]
pub struct RtpStream {
    ssrc: u32,
    next_seq: u16,
    /// RTP time at the Unix epoch; capture times map onto the 90 kHz clock
    /// from there, so RTP time and sender reports agree with the node clock.
    epoch_ts: u32,
    packets: u32,
    octets: u32,
}

impl Default for RtpStream {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpStream {
    pub fn new() -> Self {
        let r = random_u64();
        RtpStream {
            ssrc: r as u32,
            next_seq: (r >> 32) as u16,
            epoch_ts: random_u64() as u32,
            packets: 0,
            octets: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number of the next packet (for RTP-Info).
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// The RTP time of a capture time, microseconds since the Unix epoch.
    pub fn timestamp(&self, us: u64) -> u32 {
        self.epoch_ts.wrapping_add((us * 9 / 100) as u32)
    }

    /// Cuts one frame into RTP packets of at most [`MAX_PACKET`] bytes and
    /// hands each to `packet` as its headers and its slice of scan data.
    pub fn packetise(
        &mut self,
        frame: &JpegScan<'_>,
        captured_at_us: u64,
        mut packet: impl FnMut(&[u8], &[u8]),
    ) {
        let ts = self.timestamp(captured_at_us);
        let mut header = [0u8; RTP_HEADER + JPEG_HEADER + RESTART_HEADER + QUANT_HEADER];
        let mut offset = 0usize;
        loop {
            let mut len = RTP_HEADER;
            header[len] = 0; // type-specific: progressive
            header[len + 1..len + 4].copy_from_slice(&(offset as u32).to_be_bytes()[1..]);
            header[len + 4] = frame.kind;
            header[len + 5] = 255; // Q: tables in band
            header[len + 6] = frame.width.div_ceil(8) as u8;
            header[len + 7] = frame.height.div_ceil(8) as u8;
            len += JPEG_HEADER;
            if frame.kind >= 64 {
                header[len..len + 2].copy_from_slice(&frame.restart_interval.to_be_bytes());
                // F = L = 1, count 0x3fff: packets are not aligned to restart intervals.
                header[len + 2..len + 4].copy_from_slice(&[0xff, 0xff]);
                len += RESTART_HEADER;
            }
            if offset == 0 {
                header[len..len + 4].copy_from_slice(&[0, 0, 0, 128]);
                header[len + 4..len + 68].copy_from_slice(frame.tables[0]);
                header[len + 68..len + 132].copy_from_slice(frame.tables[1]);
                len += QUANT_HEADER;
            }
            let room = MAX_PACKET - len;
            let chunk = &frame.scan[offset..frame.scan.len().min(offset + room)];
            offset += chunk.len();
            let last = offset >= frame.scan.len();
            header[0] = 0x80;
            header[1] = PAYLOAD_TYPE | if last { 0x80 } else { 0 };
            header[2..4].copy_from_slice(&self.next_seq.to_be_bytes());
            header[4..8].copy_from_slice(&ts.to_be_bytes());
            header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
            self.next_seq = self.next_seq.wrapping_add(1);
            self.packets = self.packets.wrapping_add(1);
            self.octets = self
                .octets
                .wrapping_add((len - RTP_HEADER + chunk.len()) as u32);
            packet(&header[..len], chunk);
            if last {
                return;
            }
        }
    }

    /// An RTCP compound packet: a sender report for `now` and the CNAME.
    pub fn sender_report(&self, now: SystemTime, cname: &str) -> Vec<u8> {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let ntp_seconds = (since_epoch.as_secs() + NTP_UNIX_OFFSET) as u32;
        let ntp_fraction = ((u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000) as u32;
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[0x80, 200, 0, 6]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&ntp_seconds.to_be_bytes());
        out.extend_from_slice(&ntp_fraction.to_be_bytes());
        out.extend_from_slice(&self.timestamp(since_epoch.as_micros() as u64).to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());
        // SDES with one chunk: SSRC, CNAME item, end, padding to 32 bits.
        let cname = &cname.as_bytes()[..cname.len().min(255)];
        let chunk_len = 4 + 2 + cname.len() + 1;
        let padded = chunk_len.div_ceil(4) * 4;
        out.extend_from_slice(&[0x81, 202]);
        out.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[1, cname.len() as u8]);
        out.extend_from_slice(cname);
        out.resize(out.len() + padded - chunk_len + 1, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::depacketise::Depacketiser;
    use super::*;

    #[tokio::test]
    async fn frames_survive_the_round_trip_in_small_packets() {
        let jpeg = jpeg::tests::pattern_frame(640, 480).await;
        let scan = jpeg::parse(&jpeg).unwrap();
        let mut stream = RtpStream::new();
        let first_seq = stream.next_seq();
        let mut packets = Vec::new();
        stream.packetise(&scan, 1_700_000_000_000_000, |h, d| {
            packets.push([h, d].concat());
        });
        assert!(packets.len() > 3);
        assert!(packets.iter().all(|p| p.len() <= MAX_PACKET));
        let markers: Vec<bool> = packets.iter().map(|p| p[1] & 0x80 != 0).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(markers.last().unwrap());
        assert_eq!(
            u16::from_be_bytes([packets[0][2], packets[0][3]]),
            first_seq
        );

        let mut depacketiser = Depacketiser::default();
        let mut frames = Vec::new();
        for p in &packets {
            if let Some(frame) = depacketiser.push(p).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 1);
        let frame = &frames[0];
        assert_eq!(frame.timestamp, stream.timestamp(1_700_000_000_000_000));
        assert_eq!((frame.kind, frame.width, frame.height), (65, 640, 480));
        assert_eq!(frame.scan, scan.scan);
        let rebuilt = frame.to_jpeg();
        let decoded = image::load_from_memory(&rebuilt).unwrap();
        let original = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (640, 480));
        assert_eq!(decoded.to_rgb8().as_raw(), original.to_rgb8().as_raw());
    }

    #[test]
    fn timestamps_follow_capture_time_at_90_khz() {
        let s = RtpStream::new();
        let t0 = 1_763_700_000_000_000u64;
        assert_eq!(
            s.timestamp(t0 + 1_000_000).wrapping_sub(s.timestamp(t0)),
            90_000
        );
        assert_eq!(
            s.timestamp(t0 + 33_333).wrapping_sub(s.timestamp(t0)),
            2_999
        );
    }

    #[test]
    fn sender_reports_are_whole_rtcp_packets() {
        let s = RtpStream::new();
        let sr = s.sender_report(SystemTime::now(), "cam0@pi-door");
        assert_eq!(sr.len() % 4, 0);
        let first = (usize::from(u16::from_be_bytes([sr[2], sr[3]])) + 1) * 4;
        assert_eq!((sr[1], first), (200, 28));
        let second = (usize::from(u16::from_be_bytes([sr[first + 2], sr[first + 3]])) + 1) * 4;
        assert_eq!((sr[first + 1], first + second), (202, sr.len()));
    }
}
