//! The player's reading of recorded segments (fragmented MP4: moof, tfhd,
//! tfdt, trun), which a damaged disk or a hand-made file can feed
//! anything. Nothing may panic; every sample it indexes lies inside the
//! file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("camfleet-fuzz-segment-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(index) = viewer::playback::index::read(&path, 1_795_000_000_000_000) {
        for sample in &index.samples {
            assert!(sample.offset.saturating_add(u64::from(sample.len)) <= data.len() as u64);
        }
    }
});
