//! The node's camera API bodies (`POST /api/v1/cameras`, `PATCH
//! /api/v1/cameras/{id}`, `POST .../pushes`) and the checks they go
//! through before anything runs: ids, source text, push URLs. Nothing may
//! panic; a source the checks pass is one of the known kinds.
#![no_main]

use camera_node::cameras::{CameraPatch, NewCamera};
use camera_node::config::check_id;
use camera_node::push::PushUrl;
use camera_node::source::secrets::check_text;
use camera_node::source::SourceSpec;
use libfuzzer_sys::fuzz_target;

fn source(text: &str) {
    if check_text(text).is_ok() {
        if let Ok(spec) = text.parse::<SourceSpec>() {
            let shown = spec.to_string();
            assert!(!shown.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(new) = serde_json::from_slice::<NewCamera>(data) {
        if let Some(id) = &new.id {
            let _ = check_id("id", id);
        }
        source(&new.source);
        for push in &new.pushes {
            let _ = PushUrl::parse(push);
        }
    }
    if let Ok(patch) = serde_json::from_slice::<CameraPatch>(data) {
        if let Some(text) = &patch.source {
            source(text);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        source(text);
        let _ = PushUrl::parse(text);
    }
});
