//! Which cameras the Pi has: `rpicam-vid --list-cameras`, asked once at
//! start, read into NodeInfo, and checked before a camera process is
//! started with `--camera N`, so a camera that is not there gets one
//! sentence naming what is.

use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use anyhow::{bail, Result};
use shared::messages::{PiCamera, SensorMode};

use super::controls::{camera_index, Controls};

/// How long `--list-cameras` may take (libcamera starts in about a second).
const LIST_LIMIT: Duration = Duration::from_secs(10);

/// What the listing at start found; `None` when it was not asked or failed.
static LISTED: RwLock<Option<Vec<PiCamera>>> = RwLock::new(None);

/// Runs `program --list-cameras` and keeps what it finds for
/// [`check_camera`]. A failure is logged: the cameras then start unchecked.
pub async fn list_cameras(program: &Path) -> Vec<PiCamera> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--list-cameras")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let answer = match tokio::time::timeout(LIST_LIMIT, cmd.output()).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::warn!("cannot run {} --list-cameras: {e}", program.display());
            return Vec::new();
        }
        Err(_) => {
            tracing::warn!(
                "{} --list-cameras gave no answer within {} s",
                program.display(),
                LIST_LIMIT.as_secs()
            );
            return Vec::new();
        }
    };
    // rpicam-apps print the list on stdout, older libcamera-apps on stderr.
    let text = [answer.stdout, answer.stderr].concat();
    if !answer.status.success() {
        tracing::warn!(
            "{} --list-cameras failed ({}): {}; cameras start unchecked",
            program.display(),
            answer.status,
            String::from_utf8_lossy(&text).trim()
        );
        return Vec::new();
    }
    let found = parse_list(&String::from_utf8_lossy(&text));
    match found.is_empty() {
        true => tracing::warn!("{} --list-cameras found no camera", program.display()),
        false => tracing::info!("the Pi's cameras: {}", describe(&found)),
    }
    *LISTED.write().unwrap_or_else(|e| e.into_inner()) = Some(found.clone());
    found
}

/// `0: imx708, 1: imx219`, or `none`.
fn describe(found: &[PiCamera]) -> String {
    if found.is_empty() {
        return "none".into();
    }
    found
        .iter()
        .map(|c| format!("{}: {} {}x{}", c.index, c.model, c.width, c.height))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a `camera` control naming a camera the listing did not find.
pub fn check_camera(controls: &Controls) -> Result<()> {
    let index = camera_index(controls);
    let listed = LISTED.read().unwrap_or_else(|e| e.into_inner());
    match listed.as_deref() {
        Some(found) if !found.iter().any(|c| c.index == index) => bail!(
            "cannot start: there is no camera {index} on this Pi; rpicam-vid --list-cameras found {}",
            describe(found)
        ),
        _ => Ok(()),
    }
}

/// The cameras in `--list-cameras` output:
///
/// ```text
/// 0 : imx708 [4608x2592 10-bit RGGB] (/base/soc/i2c0mux/i2c@1/imx708@1a)
///     Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
///                              2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]
/// ```
pub fn parse_list(text: &str) -> Vec<PiCamera> {
    let mut found: Vec<PiCamera> = Vec::new();
    let mut format = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((index, rest)) = trimmed.split_once(" : ") {
            if let Ok(index) = index.trim().parse::<u32>() {
                let model = rest.split_whitespace().next().unwrap_or("").to_owned();
                let (width, height) = rest
                    .split_once('[')
                    .and_then(|(_, r)| size(r.split_whitespace().next()?))
                    .unwrap_or((0, 0));
                found.push(PiCamera {
                    index,
                    model,
                    width,
                    height,
                    modes: Vec::new(),
                });
                continue;
            }
        }
        let Some(camera) = found.last_mut() else {
            continue;
        };
        let mut mode = trimmed;
        if let Some(rest) = trimmed.strip_prefix("Modes:") {
            let Some((name, rest)) = rest.split_once(" : ") else {
                continue;
            };
            format = name.trim().trim_matches('\'').to_owned();
            mode = rest.trim();
        } else if let Some((name, rest)) = trimmed.split_once(" : ") {
            // A second pixel format of the same camera.
            if name.starts_with('\'') {
                format = name.trim_matches('\'').to_owned();
                mode = rest.trim();
            }
        }
        let Some((dims, rest)) = mode.split_once(" [") else {
            continue;
        };
        let (Some((width, height)), Some(fps)) = (
            size(dims),
            rest.split_whitespace()
                .next()
                .and_then(|f| f.parse::<f64>().ok()),
        ) else {
            continue;
        };
        camera.modes.push(SensorMode {
            format: format.clone(),
            width,
            height,
            fps,
        });
    }
    found
}

fn size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "Available cameras
-----------------
0 : imx708 [4608x2592 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)
    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]
                             2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]
                             4608x2592 [14.35 fps - (0, 0)/4608x2592 crop]

1 : imx219 [3280x2464 10-bit RGGB] (/base/axi/pcie@120000/rp1/i2c@80000/imx219@10)
    Modes: 'SRGGB10_CSI2P' : 640x480 [206.65 fps - (1000, 752)/1280x960 crop]
                             1640x1232 [41.85 fps - (0, 0)/3280x2464 crop]
           'SRGGB8' : 640x480 [206.65 fps - (1000, 752)/1280x960 crop]
";

    #[test]
    fn a_two_camera_listing_is_read() {
        let found = parse_list(TWO);
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].index, found[0].model.as_str(), found[0].width),
            (0, "imx708", 4608)
        );
        assert_eq!(found[0].modes.len(), 3);
        assert_eq!(found[0].modes[0].fps, 120.13);
        assert_eq!(found[1].model, "imx219");
        assert_eq!(found[1].modes.len(), 3);
        assert_eq!(found[1].modes[2].format, "SRGGB8");
        assert_eq!(describe(&found), "0: imx708 4608x2592, 1: imx219 3280x2464");
    }

    #[test]
    fn no_camera_is_an_empty_list() {
        assert!(parse_list("No cameras available!\n").is_empty());
        assert!(parse_list("").is_empty());
        assert!(parse_list("\u{0}\u{1} : x [").len() <= 1);
    }
}
