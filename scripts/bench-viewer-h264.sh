#!/usr/bin/env bash
# The viewer with H.264 beside MJPEG (docs/benchmarks.md):
#  1. Disk per camera-hour and the viewer's CPU to record N cameras (default
#     8) of one natural scene (a photograph panned and zoomed with a little
#     sensor noise, as scripts/bench-h264-bytes.sh makes it), at 1280x720
#     and 1920x1080, 30 fps: MJPEG at the node's default quality (ffmpeg
#     -q:v 7) against H.264 at the node's default bitrate in the Pi 4
#     encoder's shape (Main, no B-frames, a keyframe a second).
#  2. Showing one 1920x1080 30 fps camera in a window (under Xvfb): the
#     viewer's CPU, and for H.264 its decoding ffmpeg's.
# Each node replays its clip through `cmd:ffmpeg -re -stream_loop -1 ...
# -c copy`, which costs the same little for both codecs.
# Usage: scripts/bench-viewer-h264.sh [CAMERAS] [SECONDS] [PHOTO]   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
cams=${1:-8}; secs=${2:-30}
photo=${3:-$(find / -xdev -path '*embedded-book/assets/f3.jpg' 2>/dev/null | head -1)}
[ -f "$photo" ] || { echo "give a photograph (JPEG/PNG) as the third argument" >&2; exit 2; }
bin=${CARGO_TARGET_DIR:-target}/release
for b in camera-node viewer; do [ -x "$bin/$b" ] || { echo "build first: cargo build --release -p camera-node -p viewer" >&2; exit 1; }; done
work=$(mktemp -d)
pids=()
stop_all() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$work"' EXIT
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pct() { awk -v a="$1" -v b="$2" -v t="$tck" -v s="$3" 'BEGIN{printf "%.1f", (b-a)/t/s*100}'; }
wait_lines() { # FILE PATTERN COUNT: up to 60 s
  for _ in $(seq 600); do [ "$(grep -c "$2" "$1" || true)" -ge "$3" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $3 x '$2' in $1" >&2; tail -20 "$1" >&2; exit 1
}
broker() {
  port=18950; while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port+1)); done
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/m.conf"
  mosquitto -c "$work/m.conf" >/dev/null 2>&1 & pids+=($!)
  sleep 0.3
  url=mqtt://127.0.0.1:$port
}
nodes() { # CODEC COUNT SIZE
  local fmt=$1 ext=$1; [ "$1" = h264 ] || fmt=mjpeg
  for i in $(seq "$2"); do
    "$bin/camera-node" --broker "$url" --node-id "n$i" \
      --source "cmd:ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i $work/scene.$ext -c copy -f $fmt -" \
      --width "${3%x*}" --height "${3#*x}" --fps 30 --tcp-port 0 --rtsp-port 0 --http-port 0 \
      --advertise-host 127.0.0.1 --no-cpu-temp 2>/dev/null & pids+=($!)
  done
}

echo "| size | codec | cameras | viewer CPU (% of a core) | per camera | disk per camera-hour | frames written / expected |"
echo "|---|---|---|---|---|---|---|"
for size in 1280x720 1920x1080; do
  w=${size%x*}; h=${size#*x}
  ffmpeg -y -hide_banner -loglevel error -loop 1 -i "$photo" -t 10 \
    -vf "scale=$((w * 2)):-2,zoompan=z='1.3+0.2*sin(on/90)':x='iw/2-(iw/zoom/2)+iw/8*sin(on/120)':y='ih/2-(ih/zoom/2)':d=1:s=${size}:fps=30,noise=alls=3:allf=t,format=yuv420p" \
    -c:v ffv1 "$work/ref.mkv"
  ffmpeg -y -hide_banner -loglevel error -i "$work/ref.mkv" -c:v mjpeg -q:v 7 -huffman default -pix_fmt yuvj420p -f mjpeg "$work/scene.mjpeg"
  rate=$((w * h * 30 / 12))
  ffmpeg -y -hide_banner -loglevel error -i "$work/ref.mkv" -c:v libx264 -preset veryfast -profile:v main -bf 0 -g 30 \
    -keyint_min 30 -sc_threshold 0 -b:v "$rate" -maxrate "$rate" -bufsize "$((rate / 2))" \
    -x264-params repeat-headers=1:aud=0 -f h264 "$work/scene.h264"
  for codec in mjpeg h264; do
    broker
    rec="$work/rec-$codec-$size"
    "$bin/viewer" --broker "$url" --viewer-id bench --headless --recordings "$rec" 2> "$work/viewer.log" & vpid=$!; pids+=($vpid)
    nodes "$codec" "$cams" "$size"
    wait_lines "$work/viewer.log" 'first frame' "$cams"
    mosquitto_pub -p "$port" -t command/rec -m start
    sleep 3
    b0=$(du -sb "$rec" | cut -f1); c0=$(cpu "$vpid")
    sleep "$secs"
    b1=$(du -sb "$rec" | cut -f1); c1=$(cpu "$vpid")
    mosquitto_pub -p "$port" -t command/rec -m stop
    wait_lines "$work/viewer.log" 'recording closed' "$cams"
    frames=$(grep -o 'recording closed: [0-9]* frames' "$work/viewer.log" | awk '{s+=$3} END{print s}')
    all=$(pct "$c0" "$c1" "$secs")
    per=$(awk -v p="$all" -v n="$cams" 'BEGIN{printf "%.2f", p/n}')
    hour=$(awk -v a="$b0" -v b="$b1" -v n="$cams" -v s="$secs" 'BEGIN{printf "%.2f GiB", (b-a)/n/s*3600/1073741824}')
    echo "| $size | $codec | $cams | $all% | $per% | $hour | $frames / $((cams * 30 * (secs + 3))) |"
    stop_all
  done
done

# Showing one 1080p30 camera in a window.
command -v Xvfb >/dev/null || { echo "(no Xvfb: the window figures are left out; apt-get install xvfb)"; exit 0; }
Xvfb :97 -screen 0 1920x1200x24 -nolisten tcp >/dev/null 2>&1 & pids_x=$!
sleep 1
echo
echo "| shown in a window (1920x1080, 30 fps) | viewer CPU | decoding ffmpeg CPU | together |"
echo "|---|---|---|---|"
for codec in mjpeg h264; do
  broker
  DISPLAY=:97 "$bin/viewer" --broker "$url" --viewer-id show --recordings "$work/show" --layout windows 2> "$work/show.log" & vpid=$!; pids+=($vpid)
  nodes "$codec" 1 1920x1080
  wait_lines "$work/show.log" 'showing n1/cam0' 1
  sleep 4
  dec=$(pgrep -P "$vpid" ffmpeg | head -1 || true)
  c0=$(cpu "$vpid"); d0=$( [ -n "$dec" ] && cpu "$dec" || echo 0)
  sleep "$secs"
  c1=$(cpu "$vpid"); d1=$( [ -n "$dec" ] && cpu "$dec" || echo 0)
  v=$(pct "$c0" "$c1" "$secs"); d=$(pct "$d0" "$d1" "$secs")
  echo "| $codec | $v% | $d% | $(awk -v a="$v" -v b="$d" 'BEGIN{printf "%.1f", a+b}')% |"
  stop_all
done
kill "$pids_x" 2>/dev/null || true
