#!/usr/bin/env bash
# Shows one camera's TCP frame stream with ffplay: strips the protocol's
# headers and pipes the JPEGs to `ffplay -f mjpeg`. Needs python3 and ffplay.
# Usage: scripts/watch-camera.sh HOST[:PORT]   (PORT defaults to 8000, cam0)
set -euo pipefail
[ $# -eq 1 ] || { sed -n '2,4p' "$0"; exit 2; }
host=${1%:*}; port=8000
[[ "$1" == *:* ]] && port=${1##*:}
python3 -u - "$host" "$port" <<'PY' | ffplay -hide_banner -loglevel error -f mjpeg -window_title "camfleet $1" -i -
import socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
f = s.makefile("rb")
if f.read(11) != b"CAMFLEET/1\n":
    sys.exit("not a camfleet frame port")
out = sys.stdout.buffer
while True:
    head = f.read(20)
    if len(head) < 20:
        break
    length, seq, captured_us = struct.unpack(">IQQ", head)
    if length > 16 * 1024 * 1024:
        sys.exit("frame too large")
    out.write(f.read(length))
PY
