#!/usr/bin/env bash
# Bytes per second of one natural scene, MJPEG vs H.264, at 1280x720 and
# 1920x1080, 30 fps: a photograph panned and zoomed (ffmpeg's zoompan) with
# a little temporal noise, as a camera sensor has; MJPEG as the node's
# default quality 80 gives it (ffmpeg -q:v 7), H.264 at the node's default
# bitrate (width x height x fps / 12) with the Pi 4 encoder's shape (Main,
# no B-frames, a keyframe a second, CBR-like). Quality is judged by SSIM
# and PSNR against the uncompressed scene.
# Usage: scripts/bench-h264-bytes.sh [PHOTO] [SECONDS]
set -euo pipefail
photo=${1:-$(find / -xdev -path '*embedded-book/assets/f3.jpg' 2>/dev/null | head -1)}
secs=${2:-10}
[ -f "$photo" ] || { echo "give a photograph (JPEG/PNG) as the first argument" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "scene: $photo panned for $secs s"
for size in 1280x720 1920x1080; do
  w=${size%x*}; h=${size#*x}
  ffmpeg -y -hide_banner -loglevel error -loop 1 -i "$photo" -t "$secs" \
    -vf "scale=$((w * 2)):-2,zoompan=z='1.3+0.2*sin(on/90)':x='iw/2-(iw/zoom/2)+iw/8*sin(on/120)':y='ih/2-(ih/zoom/2)':d=1:s=${size}:fps=30,noise=alls=3:allf=t,format=yuv420p" \
    -c:v ffv1 "$work/ref.mkv"
  ffmpeg -y -hide_banner -loglevel error -i "$work/ref.mkv" -c:v mjpeg -q:v 7 -huffman default -pix_fmt yuvj420p "$work/mjpeg.mkv"
  bitrate=$((w * h * 30 / 12))
  ffmpeg -y -hide_banner -loglevel error -i "$work/ref.mkv" -c:v libx264 -preset veryfast -profile:v main -bf 0 -g 30 \
    -b:v "$bitrate" -maxrate "$bitrate" -bufsize "$((bitrate / 2))" "$work/h264.mkv"
  for codec in mjpeg h264; do
    bytes=$(ffprobe -v error -show_entries format=size -of csv=p=0 "$work/$codec.mkv")
    ssim=$(ffmpeg -hide_banner -i "$work/$codec.mkv" -i "$work/ref.mkv" -lavfi "ssim;[0:v][1:v]psnr" -f null - 2>&1 |
      grep -oE '(All:[0-9.]+|average:[0-9.]+)' | tr '\n' ' ')
    printf '%-9s %-5s %8.2f Mbit/s  %s\n' "$size" "$codec" "$(echo "$bytes * 8 / $secs / 1000000" | bc -l)" "$ssim"
    eval "${codec}_bytes=$bytes"
  done
  printf '%-9s h264/mjpeg bytes = %.3f\n' "$size" "$(echo "$h264_bytes / $mjpeg_bytes" | bc -l)"
done
