//! The viewer's config file (TOML, unknown keys refused) merged with
//! empty flags, and the mosquitto-format password file the embedded
//! broker and the dashboard read. Nothing may panic.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use viewer::config::{Cli, FileConfig, ViewerConfig};
use viewer::security::passwd;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = toml::from_str::<FileConfig>(text) {
        let cli = Cli::parse_from(["viewer"]);
        let _ = ViewerConfig::merge(cli, file);
    }
    if let Ok(users) = passwd::parse_file(text) {
        for (_, hash) in users.iter().take(4) {
            // Bounded work: hashes with huge iteration counts are refused.
            if !hash.starts_with("$7$") || hash.split('$').nth(2).is_some_and(|n| n.len() <= 4) {
                let _ = passwd::verify("pw", hash);
            }
        }
    }
});
