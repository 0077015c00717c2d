//! The wall clock as the fleet counts it: microseconds since the Unix
//! epoch (capture times, clock offsets, segment names), and the NTP epoch
//! that RTCP sender reports and MP4 `prft` boxes count from.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01):
/// RFC 5905, section 6.
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Microseconds since the Unix epoch by this machine's clock (0 before it).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_after_2020_and_the_ntp_offset_is_70_years() {
        assert!(now_us() > 1_577_836_800_000_000);
        // 70 years of 365 days and 17 leap days.
        assert_eq!(NTP_UNIX_OFFSET_S, (70 * 365 + 17) * 86_400);
    }
}
