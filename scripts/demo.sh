#!/usr/bin/env bash
# The camera node's main job on its embedded default, no camera needed:
# a private mosquitto, one camera-node on the built-in test source, and what
# a user sees of it: the retained NodeInfo, one frame read over the TCP
# frame protocol (saved as a JPEG), then the live MQTT traffic until Ctrl+C.
#
# Usage: scripts/demo.sh [--once]   (--once: stop after saving the frame)
# Env:   CAMERA_NODE_BIN  use this binary instead of building one
#        DEMO_OUT         where to save the frame (default ./camfleet-demo.jpg)
set -euo pipefail
cd "$(dirname "$0")/.."
once=no
[ "${1:-}" = "--once" ] && once=yes
out=${DEMO_OUT:-$PWD/camfleet-demo.jpg}

scripts/install-deps.sh mosquitto mosquitto-clients
node_bin=${CAMERA_NODE_BIN:-}
if [ -z "$node_bin" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/camfleet-target}"
  echo "building camera-node (release; the first build takes a few minutes)..."
  cargo build --release --quiet -p camera-node
  node_bin="$CARGO_TARGET_DIR/release/camera-node"
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
broker="mqtt://127.0.0.1:$port"
for _ in $(seq 100); do port_free "$port" || break; sleep 0.1; done
port_free "$port" && { echo "mosquitto did not start:" >&2; cat "$work/mosquitto.log" >&2; exit 1; }
echo "broker:  $broker (private mosquitto)"

"$node_bin" --broker "$broker" --node-id demo-node --source test --width 640 --height 480 --fps 15 \
  --tcp-port 0 --advertise-host 127.0.0.1 2> "$work/node.log" &
pids+=($!)
echo "node:    camera-node --source test (log: $work/node.log)"

echo "waiting for the node to announce itself..."
if ! info=$(mosquitto_sub -p "$port" -t camfleet/node/demo-node/info -C 1 -W 30); then
  echo "no NodeInfo within 30 s; the node said:" >&2
  cat "$work/node.log" >&2
  exit 1
fi
echo "status:  $(mosquitto_sub -p "$port" -t camfleet/node/demo-node/status -C 1 -W 5)"
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
dd bs="$len" count=1 iflag=fullblock status=none <&3 > "$out"
exec 3<&-
echo "frame:   #$seq, $len bytes of JPEG from $tcp, saved to $out"

[ "$once" = yes ] && exit 0
echo
echo "live MQTT traffic (stats and CPU temperature every 10 s); Ctrl+C stops the demo:"
mosquitto_sub -p "$port" -t 'camfleet/#' -t 'sensor/#' -t 'response/getIP' -v &
pids+=($!)
wait
