//! The node's camera API bodies (`POST /api/v1/cameras`, `PATCH
//! /api/v1/cameras/{id}`, `POST .../pushes`) and the checks they go
//! through before anything runs: ids, source text, push URLs, camera
//! controls. Nothing may panic; a source the checks pass is one of the
//! known kinds; controls the checks pass become rpicam-vid options.
#![no_main]

use camera_node::cameras::{CameraPatch, NewCamera};
use camera_node::config::check_id;
use camera_node::push::PushUrl;
use camera_node::source::controls::{self, Controls};
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

/// Checked controls become options (`--name` and at most one value each)
/// and apply over themselves unchanged.
fn camera_controls(wanted: &Controls) {
    if let Ok(checked) = controls::checked(wanted) {
        let args = controls::args(&checked);
        // One `--name` per control, each followed by at most one value.
        let mut names = 0;
        let mut after_name = false;
        for arg in &args {
            if arg.starts_with("--") {
                names += 1;
                after_name = true;
            } else {
                assert!(after_name, "a value without its option: {args:?}");
                after_name = false;
            }
        }
        assert!(names <= checked.len(), "{args:?}");
        let again = controls::apply(&checked, &checked).expect("checked controls apply");
        assert_eq!(again, checked);
        let _ = controls::camera_index(&checked);
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
        camera_controls(&new.controls);
    }
    if let Ok(patch) = serde_json::from_slice::<CameraPatch>(data) {
        if let Some(text) = &patch.source {
            source(text);
        }
        if let Some(Some(changes)) = &patch.controls {
            let _ = controls::apply(&Controls::new(), changes);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        source(text);
        let _ = PushUrl::parse(text);
    }
});
