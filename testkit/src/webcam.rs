//! A USB webcam for tests, where there is no `/dev/video` device: an
//! `ffmpeg` earlier in `PATH` than the real one. Asked to list a device's
//! formats it lists a webcam's; asked to read a device it runs the real
//! ffmpeg with the node's arguments on what that device would give (the
//! webcam's own H.264 or MJPEG when `-input_format` asks for it, else raw
//! pictures), at the size asked for when the webcam lists it, else at
//! 640x480 as a V4L2 driver would; anything else goes to the real ffmpeg.
//! Each device read is logged with its arguments, so a test sees what
//! the node asked for.
//!
//! `/dev/video0` is a webcam that encodes H.264 and MJPEG itself (as
//! Logitech's C920 does; its JPEGs use the standard Huffman tables of
//! JPEG Annex K, as webcams' encoders do); any other device gives raw
//! pictures only.

use std::path::PathBuf;
use std::process::Command;

use crate::{require, TempDir};

/// The stand-in `ffmpeg` in `dir` (put `dir` first in the node's `PATH`);
/// returns the log of the device reads, one line of arguments each.
pub fn fake_webcam_ffmpeg(dir: &TempDir) -> PathBuf {
    require("ffmpeg", "ffmpeg");
    let found = Command::new("sh")
        .args(["-c", "command -v ffmpeg"])
        .output()
        .expect("run sh");
    let real = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    assert!(!real.is_empty(), "no ffmpeg in PATH");
    let log = dir.path("device-reads");
    dir.script(
        "ffmpeg",
        &format!(
            r#"#!/bin/bash
real='{real}'
args=" $* "
case "$args" in
  *" -list_formats "*)
    echo "[video4linux2,v4l2 @ 0x5] Raw       :     yuyv422 :           YUYV 4:2:2 : 640x480 1280x720" >&2
    case "$args" in *" /dev/video0 "*)
      echo "[video4linux2,v4l2 @ 0x5] Compressed:        h264 :                H.264 : 640x480 1280x720" >&2
      echo "[video4linux2,v4l2 @ 0x5] Compressed:       mjpeg :          Motion-JPEG : 640x480 1280x720" >&2;;
    esac
    echo "${{@: -1}}: Immediate exit requested" >&2
    exit 1;;
  *" -f v4l2 "*) ;;
  *) exec "$real" "$@";;
esac
echo "$*" >> '{log}'
# The options before the device (v4l2's taken out), the device, and the
# node's own options for what it reads: those run on the real ffmpeg.
format=raw; size=640x480; rate=15; device=; before=(); after=()
while [ $# -gt 0 ]; do
  if [ -n "$device" ]; then after+=("$1"); shift; continue; fi
  case "$1" in
    -input_format) format=$2; shift;; -video_size) size=$2; shift;; -framerate) rate=$2; shift;;
    -f) shift;; -i) device=$2; shift;;
    *) before+=("$1");;
  esac
  shift
done
case " 640x480 1280x720 " in
  *" $size "*) ;;
  *) echo "[video4linux2,v4l2 @ 0x5] The V4L2 driver changed the video from $size to 640x480" >&2
     size=640x480;;
esac
camera="-hide_banner -loglevel error -re -f lavfi -i testsrc2=size=$size:rate=$rate"
case "$format" in
  h264) exec "$real" "${{before[@]}}" -f h264 -i pipe:3 "${{after[@]}}" \
          3< <(exec "$real" $camera -c:v libx264 -preset ultrafast -tune zerolatency -g $rate -pix_fmt yuv420p -f h264 -);;
  mjpeg) exec "$real" "${{before[@]}}" -f mjpeg -i pipe:3 "${{after[@]}}" \
          3< <(exec "$real" $camera -c:v mjpeg -huffman default -pix_fmt yuvj420p -q:v 5 -f mjpeg -);;
  *) exec "$real" "${{before[@]}}" -re -f lavfi -i "testsrc2=size=$size:rate=$rate" "${{after[@]}}";;
esac
"#,
            log = log.display()
        ),
    );
    log
}
