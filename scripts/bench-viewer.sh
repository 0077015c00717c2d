#!/usr/bin/env bash
# Viewer benchmarks (docs/benchmarks.md):
#  1. Recording cost: N cameras (default 8) at 1920x1080 30 fps recorded at
#     once; the viewer's CPU per recorded camera, beside ffmpeg re-encoding
#     the same stream to H.264 (libx264 veryfast) in real time.
#  2. Discovery: from a node's start to its first frame in the viewer.
# Each node replays an ffmpeg-made 1080p MJPEG clip (-q:v 5, standard
# Huffman tables, ~94 KiB a frame, like the contract's camera) with the
# file: source, which costs far less than encoding on this 2-core machine.
# Usage: scripts/bench-viewer.sh [CAMERAS] [SECONDS]   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
cams=${1:-8}; secs=${2:-20}
bin=${CARGO_TARGET_DIR:-target}/release
for b in camera-node viewer; do [ -x "$bin/$b" ] || { echo "build first: cargo build --release -p camera-node -p viewer" >&2; exit 1; }; done
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pct() { awk -v a="$1" -v b="$2" -v t="$tck" -v s="$3" 'BEGIN{printf "%.1f", (b-a)/t/s*100}'; }

echo "making a 1080p MJPEG clip..."
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1920x1080:rate=30 -frames:v 60 \
  -f mjpeg -q:v 5 -huffman default "$work/clip.mjpeg"
kib=$(( $(stat -c %s "$work/clip.mjpeg") / 60 / 1024 ))

port=18900; while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port+1)); done
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/m.conf"
mosquitto -c "$work/m.conf" >/dev/null 2>&1 & pids+=($!)
sleep 0.3
url=mqtt://127.0.0.1:$port
"$bin/viewer" --broker "$url" --viewer-id bench --headless --recordings "$work/rec" 2> "$work/viewer.log" & vpid=$!; pids+=($vpid)
for i in $(seq "$cams"); do
  "$bin/camera-node" --broker "$url" --node-id "cam$i" --source "file:$work/clip.mjpeg" --fps 30 \
    --width 1920 --height 1080 --tcp-port 0 --rtsp-port 0 --http-port 0 --advertise-host 127.0.0.1 --no-cpu-temp 2>/dev/null & pids+=($!)
done
for _ in $(seq 200); do
  [ "$(grep -c 'first frame' "$work/viewer.log")" -ge "$cams" ] && break; sleep 0.1
done
mosquitto_pub -p "$port" -t command/rec -m start
sleep 3
c0=$(cpu "$vpid"); sleep "$secs"; c1=$(cpu "$vpid")
mosquitto_pub -p "$port" -t command/rec -m stop
for _ in $(seq 100); do [ "$(grep -c 'recording closed' "$work/viewer.log")" -ge "$cams" ] && break; sleep 0.1; done
viewer_pct=$(pct "$c0" "$c1" "$secs")
per_cam=$(awk -v p="$viewer_pct" -v n="$cams" 'BEGIN{printf "%.2f", p/n}')
frames=$(grep -o 'recording closed: [0-9]* frames' "$work/viewer.log" | awk '{s+=$3} END{print s}')
bytes=$(du -sb "$work/rec" | cut -f1)

# The same stream, re-encoded to H.264 in real time, one camera.
ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$work/clip.mjpeg" -t "$((secs + 3))" \
  -c:v libx264 -preset veryfast -pix_fmt yuv420p -y "$work/x264.mp4" & fpid=$!
sleep 3; f0=$(cpu "$fpid"); sleep "$secs"; f1=$(cpu "$fpid"); wait "$fpid" || true
x264_pct=$(pct "$f0" "$f1" "$secs")
ratio=$(awk -v a="$x264_pct" -v b="$per_cam" 'BEGIN{ if (b > 0) printf "%.0f", a/b; else print "inf" }')

# Discovery: one more node, started now.
t0=$(date +%s.%N)
"$bin/camera-node" --broker "$url" --node-id late --source "file:$work/clip.mjpeg" --fps 30 \
  --tcp-port 0 --rtsp-port 0 --http-port 0 --advertise-host 127.0.0.1 --no-cpu-temp 2>/dev/null & pids+=($!)
for _ in $(seq 100); do grep -q 'camera=late/cam0.*first frame\|first frame.*camera=late/cam0' "$work/viewer.log" && break; sleep 0.02; done
line=$(grep 'first frame' "$work/viewer.log" | grep 'late/cam0' | head -1)
t1=$(date -d "$(awk '{print $1}' <<< "$line")" +%s.%N)
disc_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", (b-a)*1000}')

echo
echo "| figure | value |"
echo "|---|---|"
echo "| cameras recorded at once (1920x1080, 30 fps, ${kib} KiB a frame) | $cams |"
echo "| frames written in ${secs} s (+ stop) / expected at least | $frames / $((cams * 30 * secs)) |"
echo "| viewer CPU, all cameras (% of one core) | $viewer_pct% |"
echo "| viewer CPU per recorded camera | $per_cam% |"
echo "| ffmpeg re-encoding one camera to H.264 (libx264 veryfast) | $x264_pct% |"
echo "| re-encoding / recording as stored, per camera | ${ratio}x |"
echo "| written to disk | $((bytes / 1024 / 1024)) MiB |"
echo "| discovery: node start to first frame in the viewer | $disc_ms ms |"
