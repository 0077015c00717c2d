#!/usr/bin/env bash
# camfleet on its embedded default, no camera and no broker needed: a private
# mosquitto, three camera nodes on the built-in test pattern, and the viewer
# (windows when there is a display, headless otherwise). It prints what the
# fleet announces, reads one frame over the TCP protocol, records a short
# session with `command/rec` and lists the segments; then it keeps running
# (live MQTT traffic on screen) until Ctrl+C.
#
# Usage: scripts/demo.sh [--once]   (--once: stop after the recording)
# Env:   CAMERA_NODE_BIN, VIEWER_BIN  use these binaries instead of building
#        DEMO_DIR                     where to put the frame and recordings
#                                     (default ./camfleet-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
once=no
[ "${1:-}" = "--once" ] && once=yes
out=${DEMO_DIR:-$PWD/camfleet-demo}
mkdir -p "$out"

scripts/install-deps.sh mosquitto mosquitto-clients ffmpeg
node_bin=${CAMERA_NODE_BIN:-}
viewer_bin=${VIEWER_BIN:-}
if [ -z "$node_bin" ] || [ -z "$viewer_bin" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/camfleet-target}"
  features=""
  # The live windows need OpenCV; without it the viewer runs headless.
  pkg-config --exists opencv4 2>/dev/null || features="--no-default-features"
  echo "building camera-node and viewer (release; the first build takes a few minutes)..."
  cargo build --release --quiet -p camera-node
  cargo build --release --quiet -p viewer $features
  node_bin="$CARGO_TARGET_DIR/release/camera-node"
  viewer_bin="$CARGO_TARGET_DIR/release/viewer"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=18830
while ! port_free "$port"; do port=$((port + 1)); done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do port_free "$port" || break; sleep 0.1; done
port_free "$port" && { echo "mosquitto did not start:" >&2; cat "$work/mosquitto.log" >&2; exit 1; }
broker="mqtt://127.0.0.1:$port"
echo "broker:  $broker (private mosquitto)"

sizes=(640x480 640x480 320x240)
for i in 0 1 2; do
  "$node_bin" --broker "$broker" --node-id "demo-$i" --source test --width "${sizes[$i]%x*}" \
    --height "${sizes[$i]#*x}" --fps 15 --tcp-port 0 --rtsp-port 0 --http-port 0 --advertise-host 127.0.0.1 2> "$work/node$i.log" &
  pids+=($!)
done
echo "nodes:   demo-0, demo-1, demo-2 (camera-node --source test)"

"$viewer_bin" --broker "$broker" --viewer-id demo --recordings "$out/recordings" --segment-seconds 2 \
  2> "$work/viewer.log" &
pids+=($!)
where="headless"
[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && where="a window per camera"
echo "viewer:  $where, recordings in $out/recordings (log: $work/viewer.log)"

echo "waiting for the fleet..."
if ! info=$(mosquitto_sub -p "$port" -t camfleet/node/demo-0/info -C 1 -W 30); then
  echo "no NodeInfo within 30 s; the node said:" >&2
  cat "$work/node0.log" >&2
  exit 1
fi
for _ in $(seq 150); do
  [ "$(grep -c 'first frame' "$work/viewer.log")" -ge 3 ] && break; sleep 0.2
done
echo "online:  $(mosquitto_sub -p "$port" -t 'camfleet/node/+/status' -C 3 -W 5 -v | tr '\n' ' ')"
echo "info:    $info"

# One frame over TCP frame protocol v1: "CAMFLEET/1\n", then a 20-byte
# big-endian header (u32 length, u64 sequence, u64 capture time in us), then the JPEG.
tcp=$(sed -n 's/.*"tcp":"\([^"]*\)".*/\1/p' <<< "$info")
exec 3<>"/dev/tcp/${tcp%:*}/${tcp##*:}"
hello=$(dd bs=11 count=1 iflag=fullblock status=none <&3)
[ "$hello" = "CAMFLEET/1" ] || { echo "unexpected greeting: $hello" >&2; exit 1; }
read -r -a h <<< "$(dd bs=20 count=1 iflag=fullblock status=none <&3 | od -An -tu1 -v)"
len=$(( (h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3] ))
seq=0
for i in 4 5 6 7 8 9 10 11; do seq=$(( (seq << 8) | h[i] )); done
dd bs="$len" count=1 iflag=fullblock status=none <&3 > "$out/frame.jpg"
exec 3<&-
echo "frame:   #$seq, $len bytes of JPEG from $tcp, saved to $out/frame.jpg"

# Record about four seconds, as a user would.
mosquitto_pub -p "$port" -t command/rec -m start
echo "record:  mosquitto_pub -t command/rec -m start ... (4 s) ... stop"
sleep 4
mosquitto_pub -p "$port" -t command/rec -m stop
for _ in $(seq 100); do
  [ "$(grep -c 'recording closed' "$work/viewer.log")" -ge 3 ] && break; sleep 0.1
done
echo "state:   $(mosquitto_sub -p "$port" -t camfleet/viewer/demo/recording -C 1 -W 5 | cut -c1-120)..."
echo "segments:"
find "$out/recordings" -name '*.mp4' | sort | while read -r seg; do
  frames=$(ffprobe -v error -count_packets -show_entries stream=nb_read_packets,width,height -of csv=p=0 "$seg")
  echo "  ${seg#"$out"/}  ($frames: width,height,frames)"
done

[ "$once" = yes ] && exit 0
echo
echo "live MQTT traffic; record again with: mosquitto_pub -p $port -t command/rec -m start"
echo "Ctrl+C stops the demo."
mosquitto_sub -p "$port" -t 'camfleet/#' -t 'sensor/#' -t 'command/#' -v &
pids+=($!)
wait
