#!/usr/bin/env bash
# Per-viewer CPU of the bench's floor server and of camera-node, serving
# protocol v1 from frames of 94 KiB (../shared/bench's 1080p clip) and of
# 24 KiB (the size of an H.264 frame at the node's default bitrate): what a
# quarter of the bytes saves a server that does the least work possible.
#
# usage: scripts/bench-floor-frame-size.sh NODE_BIN [SECONDS]
# (from the checkout, with ../shared/bench beside it; after
#  `cargo build --release -p camera-node`)
set -euo pipefail

NODE=${1:?usage: $0 NODE_BIN [SECONDS]}
T=${2:-15}
B=$(cd "$(dirname "$0")/../../shared/bench" && pwd)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/camfleet-floor-XXXXXX")
LARGE=/tmp/bench-1080p30-stdhuff.mjpeg
SMALL=/tmp/bench-720p30-q31-stdhuff.mjpeg
[ -s "$LARGE" ] || ffmpeg -hide_banner -nostdin -loglevel error -y -f lavfi \
    -i testsrc2=size=1920x1080:rate=30 -frames:v 300 -q:v 5 -huffman default -f mjpeg "$LARGE"
[ -s "$SMALL" ] || ffmpeg -hide_banner -nostdin -loglevel error -y -f lavfi \
    -i testsrc2=size=1280x720:rate=30 -frames:v 300 -q:v 31 -huffman default -f mjpeg "$SMALL"

for clip in "$LARGE" "$SMALL"; do
    echo "clip $clip: $(($(stat -c %s "$clip") / 300 / 1024)) KiB a frame" >&2
    for n in 1 64; do
        timeout 200 python3 "$B/fanout.py" --name "floor-$(basename "$clip")" --clients "$n" \
            --seconds "$T" --warmup 5 --src-readahead 16 --clip "$clip" --proto tcp \
            --tcp-framing v1 --url tcp://127.0.0.1:9301 --json "$OUT/r.jsonl" \
            --server-cmd "$B/peers/floor_tcp_v1.sh 9301 127.0.0.1" </dev/null >&2
        timeout 200 python3 "$B/fanout.py" --name "node-$(basename "$clip")" --clients "$n" \
            --seconds "$T" --warmup 5 --src-readahead 16 --clip "$clip" --proto tcp \
            --tcp-framing v1 --url tcp://127.0.0.1:9302 --json "$OUT/r.jsonl" \
            --server-cmd "$B/adapters/camera_node_stdin.sh $NODE 9302 --max-viewers 128" </dev/null >&2
    done
done

python3 - "$OUT/r.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = {(r["server"], r["clients"]): r["cpu_pct"] for r in rows}
print("| server | clip | 1 viewer | 64 viewers | per viewer |")
print("|---|---|---|---|---|")
for (server, n), c in sorted(cpu.items()):
    if n == 64:
        one = cpu.get((server, 1), 0.0)
        name, clip = server.split("-", 1)
        print("| %s | %s | %.1f%% | %.1f%% | %.3f%% |" % (name, clip, one, c, (c - one) / 63))
PY
