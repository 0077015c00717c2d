//! A Pi camera's controls: exposure, gain, white balance, focus, HDR,
//! flips, crop, denoise, picture tuning, sensor mode and which camera,
//! each one of rpicam-vid's options (docs/sources.md, "Camera controls").
//!
//! A control is named by rpicam-vid's long option without the dashes and
//! checked against [`CONTROLS`] before it is kept: a value out of range is
//! refused with a sentence naming the control and its range, so a camera
//! is never restarted with flags rpicam-vid would reject.

use std::collections::BTreeMap;

use serde_json::Value;

/// Controls set on a camera, by name, each value checked. Serialized as a
/// JSON object (`{"shutter":10000,"hflip":true}`).
pub type Controls = BTreeMap<String, Value>;

/// What a control takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A whole number within the bounds.
    Int(i64, i64),
    /// A number within the bounds.
    Float(f64, f64),
    /// `true` passes the bare flag; `false` leaves it out.
    Flag,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// One of these numbers.
    OneOf(&'static [i64]),
    /// Comma-separated numbers, each within the bounds (`"1.5,1.2"`).
    Numbers(usize, f64, f64),
    /// An absolute path to a JSON file.
    Path,
    /// rpicam-vid's `W:H:bit-depth:packing` (`4608:2592:10:P`).
    Mode,
}

/// One control: its name (rpicam-vid's option), what it takes, what it does.
#[derive(Debug)]
pub struct Control {
    pub name: &'static str,
    kind: Kind,
    pub what: &'static str,
}

const fn control(name: &'static str, kind: Kind, what: &'static str) -> Control {
    Control { name, kind, what }
}

/// Every control, in the order rpicam-vid is given them.
pub const CONTROLS: &[Control] = &[
    control(
        "camera",
        Kind::Int(0, 7),
        "which camera of the Pi (0 is the first connector)",
    ),
    control(
        "mode",
        Kind::Mode,
        "sensor mode W:H:bit-depth:packing, as --list-cameras shows",
    ),
    control(
        "tuning-file",
        Kind::Path,
        "the sensor's tuning file (absolute path)",
    ),
    control(
        "shutter",
        Kind::Int(1, 60_000_000),
        "fixed exposure time in microseconds",
    ),
    control("gain", Kind::Float(1.0, 64.0), "fixed analogue gain"),
    control(
        "ev",
        Kind::Float(-10.0, 10.0),
        "exposure compensation in stops",
    ),
    control(
        "metering",
        Kind::Choice(&["centre", "spot", "average", "custom"]),
        "metering mode",
    ),
    control(
        "exposure",
        Kind::Choice(&["normal", "sport", "long", "custom"]),
        "exposure profile",
    ),
    control(
        "awb",
        Kind::Choice(&[
            "auto",
            "incandescent",
            "tungsten",
            "fluorescent",
            "indoor",
            "daylight",
            "cloudy",
            "custom",
        ]),
        "white balance mode",
    ),
    control(
        "awbgains",
        Kind::Numbers(2, 0.0, 32.0),
        "fixed red and blue gains \"r,b\" (turns automatic white balance off)",
    ),
    control(
        "autofocus-mode",
        Kind::Choice(&["default", "manual", "auto", "continuous"]),
        "focus mode (Camera Module 3)",
    ),
    control(
        "lens-position",
        Kind::Float(0.0, 32.0),
        "manual focus in dioptres (0 is infinity)",
    ),
    control(
        "hdr",
        Kind::Choice(&["off", "auto", "sensor", "single-exp"]),
        "high dynamic range",
    ),
    control("hflip", Kind::Flag, "mirror left to right"),
    control("vflip", Kind::Flag, "flip upside down"),
    control("rotation", Kind::OneOf(&[0, 180]), "rotate by degrees"),
    control(
        "roi",
        Kind::Numbers(4, 0.0, 1.0),
        "crop (digital zoom) \"x,y,w,h\" as fractions of the picture",
    ),
    control(
        "denoise",
        Kind::Choice(&["auto", "off", "cdn_off", "cdn_fast", "cdn_hq"]),
        "denoise mode",
    ),
    control("sharpness", Kind::Float(0.0, 16.0), "1 is normal"),
    control("contrast", Kind::Float(0.0, 32.0), "1 is normal"),
    control("brightness", Kind::Float(-1.0, 1.0), "0 is normal"),
    control(
        "saturation",
        Kind::Float(0.0, 32.0),
        "1 is normal, 0 greyscale",
    ),
];

/// Longest text a control takes (a tuning file's path).
pub const MAX_CONTROL_TEXT: usize = 256;

fn find(name: &str) -> Result<&'static Control, String> {
    CONTROLS.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = CONTROLS.iter().map(|c| c.name).collect();
        format!(
            "{name:?} is not a camera control; the controls are {}",
            names.join(", ")
        )
    })
}

impl Control {
    /// What the control takes, in words, for refusals and docs.
    pub fn range(&self) -> String {
        match self.kind {
            Kind::Int(lo, hi) => format!("a whole number from {lo} to {hi}"),
            Kind::Float(lo, hi) => format!("a number from {lo} to {hi}"),
            Kind::Flag => "true or false".into(),
            Kind::Choice(words) => format!("one of {}", words.join(", ")),
            Kind::OneOf(numbers) => format!(
                "one of {}",
                numbers
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Numbers(n, lo, hi) => {
                format!("{n} comma-separated numbers, each from {lo} to {hi}")
            }
            Kind::Path => "an absolute path to a .json file".into(),
            Kind::Mode => "W:H:bit-depth:packing, such as 4608:2592:10:P".into(),
        }
    }

    /// The control for a form: `name`, `kind` (int, number, flag, choice,
    /// text), bounds or choices, `takes` and `what` in words.
    pub fn describe(&self) -> Value {
        let mut v = serde_json::json!({
            "name": self.name,
            "takes": self.range(),
            "what": self.what,
        });
        let (kind, extra) = match self.kind {
            Kind::Int(lo, hi) => ("int", serde_json::json!({"min": lo, "max": hi})),
            Kind::Float(lo, hi) => ("number", serde_json::json!({"min": lo, "max": hi})),
            Kind::Flag => ("flag", serde_json::json!({})),
            Kind::Choice(words) => ("choice", serde_json::json!({ "choices": words })),
            Kind::OneOf(numbers) => ("choice", serde_json::json!({ "choices": numbers })),
            Kind::Numbers(..) | Kind::Path | Kind::Mode => ("text", serde_json::json!({})),
        };
        v["kind"] = kind.into();
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    }

    /// `value` as kept, or why it is refused.
    fn check(&self, value: &Value) -> Result<Value, String> {
        let refuse = || format!("{}: {value} is not {}", self.name, self.range());
        let ok = match (self.kind, value) {
            (Kind::Int(lo, hi), v) => v.as_i64().filter(|n| (lo..=hi).contains(n)).is_some(),
            (Kind::Float(lo, hi), v) => v.as_f64().filter(|n| (lo..=hi).contains(n)).is_some(),
            (Kind::Flag, Value::Bool(_)) => true,
            (Kind::Choice(words), Value::String(s)) => words.contains(&s.as_str()),
            (Kind::OneOf(numbers), v) => v.as_i64().is_some_and(|n| numbers.contains(&n)),
            (Kind::Numbers(n, lo, hi), Value::String(s)) => {
                let parts: Vec<Option<f64>> =
                    s.split(',').map(|p| p.trim().parse::<f64>().ok()).collect();
                parts.len() == n
                    && parts
                        .iter()
                        .all(|p| p.is_some_and(|p| p.is_finite() && (lo..=hi).contains(&p)))
            }
            (Kind::Path, Value::String(s)) => {
                s.starts_with('/')
                    && s.ends_with(".json")
                    && s.len() <= MAX_CONTROL_TEXT
                    && !s.chars().any(|c| c.is_control())
            }
            (Kind::Mode, Value::String(s)) => {
                let parts: Vec<&str> = s.split(':').collect();
                (2..=4).contains(&parts.len())
                    && parts[..parts.len().min(3)]
                        .iter()
                        .all(|p| p.parse::<u32>().is_ok_and(|n| n > 0 && n <= 16384))
                    && parts.get(3).is_none_or(|p| matches!(*p, "P" | "U"))
            }
            _ => false,
        };
        if ok {
            Ok(value.clone())
        } else {
            Err(refuse())
        }
    }
}

/// `changes` applied to `current`: each value checked, `null` removing a
/// control (back to rpicam-vid's default). Nothing changes when one is
/// refused; the first refusal is the answer.
pub fn apply(current: &Controls, changes: &BTreeMap<String, Value>) -> Result<Controls, String> {
    let mut next = current.clone();
    for (name, value) in changes {
        let control = find(name)?;
        if value.is_null() {
            next.remove(name);
        } else {
            next.insert(name.clone(), control.check(value)?);
        }
    }
    Ok(next)
}

/// `controls` checked as a whole (the config file's, the state file's).
pub fn checked(controls: &Controls) -> Result<Controls, String> {
    apply(&Controls::new(), controls)
}

/// Which camera of the Pi the controls pick (0 unless `camera` is set).
pub fn camera_index(controls: &Controls) -> u32 {
    controls
        .get("camera")
        .and_then(Value::as_u64)
        .map_or(0, |n| n as u32)
}

/// rpicam-vid's flags for `controls`, in [`CONTROLS`] order.
pub fn args(controls: &Controls) -> Vec<String> {
    let mut args = Vec::new();
    for control in CONTROLS {
        let Some(value) = controls.get(control.name) else {
            continue;
        };
        let flag = format!("--{}", control.name);
        match value {
            Value::Bool(true) => args.push(flag),
            Value::Bool(false) => {}
            Value::String(s) => args.extend([flag, s.clone()]),
            other => args.extend([flag, other.to_string()]),
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn good_values_become_rpicam_flags() {
        let set = apply(
            &Controls::new(),
            &changes(
                json!({"shutter":10000,"gain":2.0,"hflip":true,"vflip":false,"awb":"indoor",
                "roi":"0.25,0.25,0.5,0.5","camera":1,"mode":"4608:2592:10:P","rotation":180}),
            ),
        )
        .unwrap();
        assert_eq!(
            args(&set).join(" "),
            "--camera 1 --mode 4608:2592:10:P --shutter 10000 --gain 2.0 --awb indoor \
             --hflip --rotation 180 --roi 0.25,0.25,0.5,0.5"
        );
        assert_eq!(camera_index(&set), 1);
        let unset = apply(&set, &changes(json!({"shutter":null,"camera":null}))).unwrap();
        assert!(!unset.contains_key("shutter"));
        assert_eq!(camera_index(&unset), 0);
    }

    #[test]
    fn bad_values_are_refused_naming_the_control_and_range() {
        for (bad, says) in [
            (
                json!({"shutter":0}),
                "shutter: 0 is not a whole number from 1 to 60000000",
            ),
            (
                json!({"gain":"2"}),
                "gain: \"2\" is not a number from 1 to 64",
            ),
            (
                json!({"awb":"purple"}),
                "awb: \"purple\" is not one of auto,",
            ),
            (json!({"hflip":1}), "hflip: 1 is not true or false"),
            (json!({"rotation":90}), "rotation: 90 is not one of 0, 180"),
            (
                json!({"roi":"0,0,1"}),
                "roi: \"0,0,1\" is not 4 comma-separated",
            ),
            (json!({"roi":"0,0,1,2"}), "roi"),
            (json!({"tuning-file":"x.json"}), "tuning-file"),
            (json!({"mode":"a:b"}), "mode"),
            (json!({"camera":8}), "camera: 8"),
            (
                json!({"iso":100}),
                "\"iso\" is not a camera control; the controls are camera,",
            ),
        ] {
            let why = apply(&Controls::new(), &changes(bad.clone())).unwrap_err();
            assert!(why.contains(says), "{bad}: {why}");
        }
        // One refusal leaves everything as it was.
        let before = checked(&changes(json!({"gain":2.0}))).unwrap();
        assert!(apply(&before, &changes(json!({"gain":3.0,"shutter":-1}))).is_err());
        assert_eq!(before["gain"], json!(2.0));
    }
}
