//! Sources named by a URL (`rtmp://`, `rtsp://`, `http(s)://`, `srt://`,
//! `rtmp-listen://`) or a V4L2 device path, each turned into a fixed ffmpeg
//! argument list: the text is one argument, never a shell line.
//!
//! Input that is already MJPEG or H.264 (found by `ffprobe` for RTSP and
//! HTTP, by the device's format list for V4L2, assumed H.264 for RTMP
//! and SRT) is copied; anything else is converted with a bounded size,
//! rate and quality. A password in a URL is never shown: [`redact`] is what logs,
//! the API and MQTT get.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use shared::frame::Codec;

use super::secrets::{check_text, password_span, redact};
use super::Output;

mod device;
pub use device::{DeviceFormats, Offer};

/// Largest picture a conversion may produce.
pub const MAX_WIDTH: u32 = 3840;
pub const MAX_HEIGHT: u32 = 2160;
pub const MAX_FPS: u32 = 60;
/// A conversion with no size asked for keeps the input's, within this box.
const DEFAULT_BOX: (u32, u32) = (1920, 1080);
/// How long `ffprobe` may take to tell what an input carries.
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// How long an RTSP input may stay silent before ffmpeg gives up itself.
const RTSP_SOCKET_TIMEOUT_US: &str = "10000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Rtmp,
    /// The node is the RTMP server and waits for one publisher.
    RtmpListen,
    Rtsp,
    Http,
    Srt,
    /// A V4L2 device such as `/dev/video0`.
    Device,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Rtmp => "rtmp",
            Scheme::RtmpListen => "rtmp-listen",
            Scheme::Rtsp => "rtsp",
            Scheme::Http => "http",
            Scheme::Srt => "srt",
            Scheme::Device => "v4l2",
        }
    }
}

/// A source given as a URL or device path, as typed (password included:
/// ffmpeg and the state file need it; everything else shows [`redact`]).
#[derive(Clone, PartialEq, Eq)]
pub struct UrlSource {
    pub scheme: Scheme,
    text: String,
}

/// What `ffprobe` found in an input's first video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: Option<u32>,
}

impl UrlSource {
    /// `None` when `text` is not a URL or device source (so another kind
    /// may claim it); an error when it is one but malformed.
    pub fn parse(text: &str) -> Option<Result<UrlSource, String>> {
        let scheme = if text.starts_with("/dev/") {
            Scheme::Device
        } else {
            let (name, _) = text.split_once("://")?;
            // Only a scheme before "://" makes a URL: `cmd:ffmpeg -i
            // http://...` is a command line with a URL inside.
            let scheme_like = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !scheme_like {
                return None;
            }
            match name.to_ascii_lowercase().as_str() {
                "rtmp" | "rtmps" => Scheme::Rtmp,
                "rtmp-listen" => Scheme::RtmpListen,
                "rtsp" | "rtsps" => Scheme::Rtsp,
                "http" | "https" => Scheme::Http,
                "srt" => Scheme::Srt,
                other => {
                    return Some(Err(format!(
                        "unknown scheme {other:?}; use rtmp, rtmp-listen, rtsp, http, https, srt or a /dev/video path"
                    )))
                }
            }
        };
        Some(Self::check(scheme, text).map(|()| UrlSource {
            scheme,
            text: text.to_owned(),
        }))
    }

    fn check(scheme: Scheme, text: &str) -> Result<(), String> {
        check_text(text)?;
        if scheme == Scheme::Device {
            let name = &text["/dev/".len()..];
            let ok = !name.is_empty()
                && !name.contains("..")
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
            return if ok {
                Ok(())
            } else {
                Err(format!("{text:?} is not a device path"))
            };
        }
        let rest = &text[text.find("://").map_or(0, |i| i + 3)..];
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Err(format!("{} has no host", redact(text)));
        }
        if scheme == Scheme::RtmpListen {
            let path = &rest[authority.len()..];
            if path.trim_matches('/').split('/').count() < 2 {
                return Err("rtmp-listen:// needs ADDR[:PORT]/app/key".into());
            }
        }
        Ok(())
    }

    /// The text as given, password included: for ffmpeg and the state file.
    pub fn secret(&self) -> &str {
        &self.text
    }

    /// The password in the URL, for scrubbing a converter's log lines.
    pub fn password(&self) -> Option<&str> {
        let (start, end) = password_span(&self.text, 0)?;
        Some(&self.text[start..end])
    }

    /// Whether the node waits for a publisher instead of fetching.
    pub fn waits_for_publisher(&self) -> bool {
        self.scheme == Scheme::RtmpListen
    }

    /// The URL ffmpeg opens.
    fn input(&self) -> String {
        match self.scheme {
            Scheme::RtmpListen => {
                let rest = &self.text["rtmp-listen://".len()..];
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let authority = if authority.rsplit('@').next().is_some_and(has_port) {
                    authority.to_owned()
                } else {
                    format!("{authority}:1935")
                };
                format!("rtmp://{authority}{path}")
            }
            _ => self.text.clone(),
        }
    }

    /// Whether `ffprobe` is asked first (it answers quickly only for inputs
    /// that are already flowing; RTMP and SRT carry H.264 or H.265 anyway).
    pub fn worth_probing(&self) -> bool {
        matches!(self.scheme, Scheme::Rtsp | Scheme::Http)
    }

    /// `ffprobe`'s arguments for the input's first video stream.
    pub fn probe_args(&self) -> Vec<String> {
        let mut args = strings(&["-hide_banner", "-v", "error"]);
        args.extend(self.input_options());
        args.extend(strings(&[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,avg_frame_rate",
            "-of",
            "json",
        ]));
        args.push(self.input());
        args
    }

    fn input_options(&self) -> Vec<String> {
        match self.scheme {
            Scheme::Rtsp => {
                strings(&["-rtsp_transport", "tcp", "-timeout", RTSP_SOCKET_TIMEOUT_US])
            }
            Scheme::RtmpListen => strings(&["-listen", "1"]),
            Scheme::Device => strings(&["-f", "v4l2"]),
            _ => Vec::new(),
        }
    }

    /// ffmpeg's arguments: MJPEG or H.264 Annex B on stdout, copied or
    /// converted to `out` as `plan` says.
    pub fn ffmpeg_args(&self, out: &Output, plan: Plan) -> Vec<String> {
        let mut args = strings(&["-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]);
        if matches!(
            self.scheme,
            Scheme::Rtsp | Scheme::Rtmp | Scheme::RtmpListen | Scheme::Srt
        ) {
            // Start on the first second of a live stream rather than
            // ffmpeg's five of analysis: the first frame sooner.
            args.extend(strings(&[
                "-fflags",
                "nobuffer",
                "-analyzeduration",
                "1000000",
                "-probesize",
                "1000000",
            ]));
        }
        args.extend(self.input_options());
        if self.scheme == Scheme::Device {
            if let Some(format) = device::input_format(plan) {
                args.extend(["-input_format".into(), format.into()]);
            }
            if let (Some(w), Some(h)) = (out.width, out.height) {
                args.extend(["-video_size".into(), format!("{w}x{h}")]);
            }
            if let Some(fps) = out.fps {
                args.extend(["-framerate".into(), fps.to_string()]);
            }
        }
        args.extend(["-i".into(), self.input()]);
        args.extend(strings(&["-map", "0:v:0", "-an", "-sn", "-dn"]));
        match plan {
            Plan::Copy(Codec::Mjpeg) => args.extend(strings(&["-c:v", "copy", "-f", "mjpeg"])),
            Plan::Copy(Codec::H264) => {
                args.extend(strings(&["-c:v", "copy"]));
                if matches!(self.scheme, Scheme::Rtsp | Scheme::Http) {
                    // Parameter sets that came only in the SDP go in band,
                    // before each keyframe. (RTMP's avcC is turned into
                    // Annex B with them by the h264 muxer itself.)
                    args.extend(strings(&["-bsf:v", "dump_extra=freq=keyframe"]));
                }
                // Each picture to the pipe as it comes, not 32 KiB at a
                // time: the node stamps a picture when it has read it.
                args.extend(strings(&["-flush_packets", "1", "-f", "h264"]));
            }
            Plan::Convert(Codec::Mjpeg) => {
                args.extend(["-vf".into(), filters(out)]);
                // Standard Huffman tables: RTP/JPEG (RFC 2435) carries no others.
                args.extend(strings(&[
                    "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-huffman", "default",
                ]));
                args.extend(["-q:v".into(), qscale(out.quality).to_string()]);
                args.extend(strings(&["-f", "mjpeg"]));
            }
            Plan::Convert(Codec::H264) => {
                args.extend(["-vf".into(), filters(out)]);
                // What a live viewer needs: no B-frames, a keyframe a
                // second with its parameter sets, no encoder delay.
                args.extend(strings(&[
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-tune",
                    "zerolatency",
                    "-bf",
                    "0",
                    "-pix_fmt",
                    "yuv420p",
                    "-force_key_frames",
                    "expr:gte(t,n_forced*1)",
                    "-x264-params",
                    "repeat-headers=1",
                    "-flush_packets",
                    "1",
                    "-f",
                    "h264",
                ]));
            }
        }
        args.push("-".into());
        args
    }
}

/// What ffmpeg does with a URL source's video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Passed on as it came (demuxed only).
    Copy(Codec),
    /// Decoded and encoded to this.
    Convert(Codec),
}

impl Plan {
    /// For an input that is not probed (RTMP, SRT: H.264 in practice;
    /// devices are listed instead, [`DeviceFormats`]): H.264 copied unless
    /// MJPEG, or a size or rate, is asked for.
    pub fn unprobed(out: &Output) -> Plan {
        let resized = out.width.is_some() || out.height.is_some() || out.fps.is_some();
        match out.codec {
            None | Some(Codec::H264) if !resized => Plan::Copy(Codec::H264),
            want => Plan::Convert(want.unwrap_or_default()),
        }
    }

    /// For a probed input: copied when it is what `out` asks for (MJPEG or
    /// H.264 when no codec is asked for) at the size and rate asked for;
    /// else converted, to MJPEG unless H.264 is asked for.
    pub fn of(probed: &Probed, out: &Output) -> Plan {
        let same_size = out.width.is_none_or(|w| w == probed.width)
            && out.height.is_none_or(|h| h == probed.height)
            && out.fps.is_none_or(|f| Some(f) == probed.fps);
        let input = match probed.codec.as_str() {
            "mjpeg" => Some(Codec::Mjpeg),
            "h264" => Some(Codec::H264),
            _ => None,
        };
        match (input, out.codec) {
            (Some(have), want) if same_size && want.is_none_or(|w| w == have) => Plan::Copy(have),
            (_, want) => Plan::Convert(want.unwrap_or_default()),
        }
    }

    pub fn codec(self) -> Codec {
        match self {
            Plan::Copy(c) | Plan::Convert(c) => c,
        }
    }

    /// For the camera's state: `<what> copied (H.264)` or `converted to MJPEG`.
    pub fn describe(self, what: &str) -> String {
        match self {
            Plan::Copy(Codec::H264) => format!("{what} input copied (H.264, not re-encoded)"),
            Plan::Copy(Codec::Mjpeg) => format!("{what} input copied (already MJPEG)"),
            Plan::Convert(Codec::H264) => format!("{what} input converted to H.264"),
            Plan::Convert(Codec::Mjpeg) => format!("{what} input converted to MJPEG"),
        }
    }
}

impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UrlSource({})", redact(&self.text))
    }
}

impl fmt::Display for UrlSource {
    /// Redacted: a password never reaches a log line through Display.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.text))
    }
}

/// Reads `ffprobe -of json` output.
pub fn parse_probe(json: &[u8]) -> Result<Probed, String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        streams: Vec<Stream>,
    }
    #[derive(Deserialize)]
    struct Stream {
        codec_name: Option<String>,
        width: Option<u32>,
        height: Option<u32>,
        avg_frame_rate: Option<String>,
    }
    let answer: Answer =
        serde_json::from_slice(json).map_err(|e| format!("ffprobe's answer: {e}"))?;
    let stream = answer
        .streams
        .into_iter()
        .next()
        .ok_or("the input has no video stream")?;
    let fps = stream.avg_frame_rate.as_deref().and_then(|r| {
        let (n, d) = r.split_once('/')?;
        let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
        (d > 0.0 && n > 0.0).then(|| (n / d).round() as u32)
    });
    Ok(Probed {
        codec: stream.codec_name.unwrap_or_default(),
        width: stream.width.unwrap_or(0),
        height: stream.height.unwrap_or(0),
        fps,
    })
}

fn filters(out: &Output) -> String {
    let scale = match (out.width, out.height) {
        (Some(w), Some(h)) => format!("scale={w}:{h}"),
        (Some(w), None) => format!("scale={w}:-2"),
        (None, Some(h)) => format!("scale=-2:{h}"),
        (None, None) => format!(
            "scale=w='min(iw,{})':h='min(ih,{})':force_original_aspect_ratio=decrease:force_divisible_by=2",
            DEFAULT_BOX.0, DEFAULT_BOX.1
        ),
    };
    match out.fps {
        Some(fps) => format!("{scale},fps={fps}"),
        None => scale,
    }
}

/// JPEG quality 1-100 as ffmpeg's `-q:v` (2 best, 31 worst).
fn qscale(quality: u8) -> u32 {
    let q = u32::from(quality.clamp(1, 100));
    2 + (100 - q) * 29 / 99
}

fn has_port(host: &str) -> bool {
    host.rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests;
