//! A V4L2 device's own formats: a USB camera that encodes MJPEG or H.264
//! itself (most UVC webcams do MJPEG, some H.264) is read in that format
//! and copied, not decoded and encoded again; one that gives raw pictures
//! only is converted as before.
//!
//! The formats come from `ffmpeg -f v4l2 -list_formats all -i DEVICE`,
//! which lists them on stderr, one line each:
//!
//! ```text
//! [video4linux2,v4l2 @ 0x55d0] Compressed:       mjpeg :          Motion-JPEG : 1920x1080 1280x720 640x480
//! [video4linux2,v4l2 @ 0x55d0] Compressed:        h264 :                H.264 : 1920x1080 1280x720 640x480
//! [video4linux2,v4l2 @ 0x55d0] Raw       :     yuyv422 :           YUYV 4:2:2 : 640x480 1280x720
//! ```

use shared::frame::Codec;

use super::{strings, Output, Plan, UrlSource};

/// The compressed formats a device offers that the node can copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceFormats {
    pub mjpeg: bool,
    pub h264: bool,
}

impl DeviceFormats {
    /// Reads ffmpeg's `-list_formats all` lines (its stderr).
    pub fn parse(listing: &str) -> DeviceFormats {
        let mut formats = DeviceFormats::default();
        for line in listing.lines() {
            let Some((_, rest)) = line.split_once("Compressed:") else {
                continue;
            };
            match rest.split(':').next().map(str::trim) {
                Some("mjpeg") => formats.mjpeg = true,
                Some("h264") => formats.h264 = true,
                _ => {}
            }
        }
        formats
    }

    /// What to read from the device for `out`: its H.264 copied unless
    /// MJPEG is asked for, else its MJPEG copied unless H.264 is asked
    /// for, else raw pictures converted to what is asked (MJPEG by
    /// default). The device itself captures at the size and rate asked
    /// for, so a size does not force a conversion.
    pub fn plan(self, out: &Output) -> Plan {
        match out.codec {
            None | Some(Codec::H264) if self.h264 => Plan::Copy(Codec::H264),
            None | Some(Codec::Mjpeg) if self.mjpeg => Plan::Copy(Codec::Mjpeg),
            want => Plan::Convert(want.unwrap_or_default()),
        }
    }
}

impl UrlSource {
    /// ffmpeg's arguments that list the device's formats (on stderr; it
    /// then exits with an error status whatever it found).
    pub fn list_formats_args(&self) -> Vec<String> {
        let mut args = strings(&["-hide_banner", "-f", "v4l2", "-list_formats", "all", "-i"]);
        args.push(self.secret().to_owned());
        args
    }
}

/// The `-input_format` that makes the device send what `plan` copies.
pub fn input_format(plan: Plan) -> Option<&'static str> {
    match plan {
        Plan::Copy(Codec::H264) => Some("h264"),
        Plan::Copy(Codec::Mjpeg) => Some("mjpeg"),
        Plan::Convert(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C920: &str = "\
[video4linux2,v4l2 @ 0x55d0] Raw       :     yuyv422 :           YUYV 4:2:2 : 640x480 1280x720
[video4linux2,v4l2 @ 0x55d0] Compressed:        h264 :                H.264 : 1920x1080 1280x720
[video4linux2,v4l2 @ 0x55d0] Compressed:       mjpeg :          Motion-JPEG : 1920x1080 1280x720
/dev/video0: Immediate exit requested";

    fn out(codec: Option<Codec>) -> Output {
        Output {
            width: Some(1280),
            height: Some(720),
            fps: Some(30),
            quality: 80,
            codec,
        }
    }

    #[test]
    fn a_webcams_own_h264_or_mjpeg_is_copied_and_raw_pictures_are_converted() {
        let c920 = DeviceFormats::parse(C920);
        assert_eq!(
            c920,
            DeviceFormats {
                mjpeg: true,
                h264: true
            }
        );
        assert_eq!(c920.plan(&out(None)), Plan::Copy(Codec::H264));
        assert_eq!(c920.plan(&out(Some(Codec::H264))), Plan::Copy(Codec::H264));
        assert_eq!(
            c920.plan(&out(Some(Codec::Mjpeg))),
            Plan::Copy(Codec::Mjpeg)
        );
        let webcam = DeviceFormats::parse(&C920.replace("h264", "hevc"));
        assert_eq!(webcam.plan(&out(None)), Plan::Copy(Codec::Mjpeg));
        assert_eq!(
            webcam.plan(&out(Some(Codec::H264))),
            Plan::Convert(Codec::H264)
        );
        let raw = DeviceFormats::parse("Raw : yuyv422 : YUYV 4:2:2 : 640x480\ngarbage: ::");
        assert_eq!(raw, DeviceFormats::default());
        assert_eq!(raw.plan(&out(None)), Plan::Convert(Codec::Mjpeg));
        assert_eq!(input_format(Plan::Copy(Codec::H264)), Some("h264"));
        assert_eq!(input_format(Plan::Convert(Codec::H264)), None);
    }
}
