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

/// One compressed format a device offers, at the sizes it lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    sizes: Vec<(u32, u32)>,
    /// The driver listed a range (`{32-1920, 2}x{32-1080, 2}`), not sizes.
    any_size: bool,
}

impl Offer {
    fn parse(sizes: &str) -> Offer {
        let mut offer = Offer::default();
        for size in sizes.split_whitespace() {
            match size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
            {
                Some(wh) => offer.sizes.push(wh),
                None => offer.any_size = true,
            }
        }
        offer.any_size |= offer.sizes.is_empty();
        offer
    }

    /// Whether the device sends this format at the size `out` asks for as
    /// it is: no size asked, or both sides asked and listed. (A driver
    /// given a size it lacks picks another one, and a copy cannot scale.)
    fn fits(&self, out: &Output) -> bool {
        match (out.width, out.height) {
            (None, None) => true,
            (Some(w), Some(h)) => self.any_size || self.sizes.contains(&(w, h)),
            _ => false,
        }
    }
}

/// The compressed formats a device offers that the node can copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFormats {
    pub mjpeg: Option<Offer>,
    pub h264: Option<Offer>,
}

impl DeviceFormats {
    /// Reads ffmpeg's `-list_formats all` lines (its stderr).
    pub fn parse(listing: &str) -> DeviceFormats {
        let mut formats = DeviceFormats::default();
        for line in listing.lines() {
            let Some((_, rest)) = line.split_once("Compressed:") else {
                continue;
            };
            let mut fields = rest.splitn(3, " : ");
            let (Some(name), Some(_), sizes) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let offer = Some(Offer::parse(sizes.unwrap_or_default()));
            match name.trim() {
                "mjpeg" => formats.mjpeg = offer,
                "h264" => formats.h264 = offer,
                _ => {}
            }
        }
        formats
    }

    /// What to read from the device for `out`: its H.264 copied unless
    /// MJPEG is asked for, else its MJPEG copied unless H.264 is asked
    /// for, each only at a size the device lists; else raw pictures
    /// converted to what is asked (MJPEG by default).
    pub fn plan(&self, out: &Output) -> Plan {
        let fits = |offer: &Option<Offer>| offer.as_ref().is_some_and(|o| o.fits(out));
        match out.codec {
            None | Some(Codec::H264) if fits(&self.h264) => Plan::Copy(Codec::H264),
            None | Some(Codec::Mjpeg) if fits(&self.mjpeg) => Plan::Copy(Codec::Mjpeg),
            want => Plan::Convert(want.unwrap_or_default()),
        }
    }

    /// For the camera's state: what the device offers of its own.
    pub fn describe(&self) -> &'static str {
        match (&self.h264, &self.mjpeg) {
            (Some(_), Some(_)) => "H.264 and MJPEG of its own",
            (Some(_), None) => "H.264 of its own",
            (None, Some(_)) => "MJPEG of its own",
            (None, None) => "raw pictures only",
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
        let listed = Offer {
            sizes: vec![(1920, 1080), (1280, 720)],
            any_size: false,
        };
        assert_eq!(c920.h264.as_ref(), Some(&listed));
        assert_eq!(c920.mjpeg.as_ref(), Some(&listed));
        assert_eq!(c920.describe(), "H.264 and MJPEG of its own");
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
        assert_eq!(raw.describe(), "raw pictures only");
        assert_eq!(raw.plan(&out(None)), Plan::Convert(Codec::Mjpeg));
        assert_eq!(input_format(Plan::Copy(Codec::H264)), Some("h264"));
        assert_eq!(input_format(Plan::Convert(Codec::H264)), None);
    }

    #[test]
    fn a_size_the_device_does_not_list_is_converted_not_copied() {
        let c920 = DeviceFormats::parse(C920);
        let at = |width, height| Output {
            width,
            height,
            ..out(None)
        };
        assert_eq!(
            c920.plan(&at(Some(640), Some(480))),
            Plan::Convert(Codec::Mjpeg)
        );
        assert_eq!(
            c920.plan(&at(Some(1280), None)),
            Plan::Convert(Codec::Mjpeg)
        );
        assert_eq!(c920.plan(&at(None, None)), Plan::Copy(Codec::H264));
        let stepwise = DeviceFormats::parse(
            "[v4l2 @ 0x1] Compressed:       mjpeg :          Motion-JPEG : {32-1920, 2}x{32-1080, 2}",
        );
        assert_eq!(
            stepwise.plan(&at(Some(640), Some(480))),
            Plan::Copy(Codec::Mjpeg)
        );
    }
}
