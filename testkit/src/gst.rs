//! GStreamer as an RTSP player: `rtspsrc`, the codec's depayloader and
//! decoder, grey pictures on stdout, and the judgement of what it said.

use std::process::{Command, Output, Stdio};

use crate::require;

/// The elements after `rtspsrc` for a codec: depayloader, then decoder.
#[derive(Debug, Clone, Copy)]
pub enum Depay {
    Jpeg,
    H264,
}

impl Depay {
    fn elements(self) -> [&'static str; 2] {
        match self {
            Depay::Jpeg => ["rtpjpegdepay", "jpegdec"],
            Depay::H264 => ["rtph264depay", "avdec_h264"],
        }
    }
}

/// Plays `url` over `protocol` (`tcp`, `udp`) until `buffers` pictures
/// (`identity` ends the stream in place of the last, so one fewer comes
/// out), as 8-bit grey pictures on stdout; a minute at most.
pub fn gstreamer_gray(url: &str, protocol: &str, depay: Depay, buffers: u32) -> Output {
    let packages = "gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-libav";
    require("gst-launch-1.0", packages);
    let [depayloader, decoder] = depay.elements();
    Command::new("timeout")
        .args(["60", "gst-launch-1.0", "-q", "rtspsrc"])
        .args([format!("location={url}"), format!("protocols={protocol}")])
        .args(["!", depayloader, "!", decoder, "!", "videoconvert"])
        .args(["!", "video/x-raw,format=GRAY8", "!", "identity"])
        .arg(format!("eos-after={buffers}"))
        .args(["!", "fdsink", "fd=1"])
        .stdin(Stdio::null())
        .output()
        .expect("run gst-launch-1.0")
}

/// GStreamer gave `pictures` grey pictures of `size` bytes and none
/// failed to depacketise or decode (those elements say so on stderr).
/// rtspsrc's own errors are left out, and with them the exit status: at
/// an early end of stream it sends PAUSE while it tears the connection
/// down, and now and then fails that and exits 1 (its race, not ours).
pub fn assert_gstreamer_decoded(
    out: &Output,
    what: &str,
    depay: Depay,
    pictures: usize,
    size: usize,
) {
    let said = String::from_utf8_lossy(&out.stderr);
    let [depayloader, decoder] = depay.elements();
    let failed = said.lines().any(|l| {
        l.contains(depayloader)
            || l.contains(decoder)
            || (l.starts_with("ERROR") && !l.contains("GstRTSPSrc"))
    });
    assert!(!failed, "GStreamer {what}: {said}");
    assert!(
        out.stdout.len() >= pictures * size,
        "GStreamer {what}: {} of {pictures} pictures ({}; {said})",
        out.stdout.len() / size,
        out.status
    );
}
