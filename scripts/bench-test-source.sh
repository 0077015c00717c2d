#!/usr/bin/env bash
# What the built-in test source costs: three 640x480 nodes and one
# 1920x1080 30 fps node on the test pattern, each with one TCP viewer
# reading every frame, for SECONDS (default 20). Prints each node's CPU
# (% of one core), peak RSS and the pattern's start-up encoding time.
# Usage: scripts/bench-test-source.sh [SECONDS]   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
bin=${CAMERA_NODE_BIN:-${CARGO_TARGET_DIR:-target}/release/camera-node}
[ -x "$bin" ] || { echo "build first: cargo build --release -p camera-node" >&2; exit 1; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

sizes=(640x480 640x480 640x480 1920x1080)
for i in "${!sizes[@]}"; do
  w=${sizes[$i]%x*}; h=${sizes[$i]#*x}
  "$bin" --broker mqtt://127.0.0.1:1 --node-id "t$i" --source test --width "$w" --height "$h" --fps 30 \
    --tcp-port 0 --rtsp-port 0 --http-port 0 --advertise-host 127.0.0.1 --no-cpu-temp 2> "$work/n$i.log" &
  pids+=($!)
done
ports=()
for i in "${!sizes[@]}"; do
  for _ in $(seq 200); do
    p=$(sed -n 's/.*on TCP port \([0-9]*\).*/\1/p' "$work/n$i.log" | head -1)
    [ -n "$p" ] && grep -q "first frame" "$work/n$i.log" && break
    sleep 0.1
  done
  ports+=("$p")
  # A viewer that reads everything.
  (exec 3<>"/dev/tcp/127.0.0.1/$p"; cat <&3 > /dev/null) &
  pids+=($!)
done
declare -a c0
for i in "${!sizes[@]}"; do c0[$i]=$(cpu "${pids[$i]}"); done
sleep "$secs"
echo "| node | size | CPU (% of one core) | peak RSS (MiB) | pattern encoded at start in |"
echo "|---|---|---|---|---|"
for i in "${!sizes[@]}"; do
  c1=$(cpu "${pids[$i]}")
  pct=$(awk -v a="${c0[$i]}" -v b="$c1" -v t="$tck" -v s="$secs" 'BEGIN{printf "%.1f", (b-a)/t/s*100}')
  rss=$(awk '/VmHWM/{printf "%.1f", $2/1024}' "/proc/${pids[$i]}/status")
  enc=$(sed -n 's/.*encoded in \([0-9]* ms\).*/\1/p' "$work/n$i.log")
  echo "| t$i | ${sizes[$i]} | $pct% | $rss | $enc |"
done
