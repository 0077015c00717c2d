#!/usr/bin/env bash
# CPU of a drone's 720p30 H.264 on its way into the fleet: the converter the
# node ran before (decode, scale, encode MJPEG at quality 80) against the
# copy it runs now (demux only), each over the same 20 s recorded RTMP-like
# stream (FLV, x264 at 3 Mbit/s) read in real time; user+system CPU seconds
# per second of video, from /usr/bin/time.
# Usage: scripts/bench-h264-drone.sh [SECONDS]
set -euo pipefail
secs=${1:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ffmpeg -y -hide_banner -loglevel error -f lavfi -i "testsrc2=size=1280x720:rate=30" -t "$secs" \
  -c:v libx264 -preset veryfast -tune zerolatency -g 30 -b:v 3M -pix_fmt yuv420p -f flv "$work/drone.flv"
cpu() {
  /usr/bin/time -f "%U %S" -o "$work/time" ffmpeg -hide_banner -loglevel error -re -i "$work/drone.flv" -map 0:v:0 "$@" > /dev/null
  awk -v s="$secs" '{ printf "%.3f", ($1 + $2) / s }' "$work/time"
}
convert=$(cpu -vf "scale='min(iw,1920)':-2" -c:v mjpeg -pix_fmt yuvj420p -huffman default -q:v 7 -f mjpeg -)
copy=$(cpu -c:v copy -flush_packets 1 -f h264 -)
echo "720p30 drone: converted to MJPEG ${convert} cores, copied ${copy} cores, copy/convert $(echo "$copy / $convert" | bc -l | cut -c1-5)"
