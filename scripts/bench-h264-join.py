#!/usr/bin/env python3
"""Time from a viewer's connect to its first decodable picture (a v2 stream's
first keyframe, read in full) on a running node's H.264 camera, N times at
random moments in the keyframe interval.
Usage: scripts/bench-h264-join.py HOST:PORT [N]"""
import random, socket, struct, sys, time

def first_picture(addr):
    host, port = addr.rsplit(":", 1)
    t0 = time.monotonic()
    s = socket.create_connection((host, int(port)))
    f = s.makefile("rb")
    assert f.read(11) == b"CAMFLEET/2\n", "not an H.264 camera's port"
    while True:
        length, kind, flags, header_len = struct.unpack(">IBBH", f.read(8))
        f.read(header_len - 8)
        f.read(length)
        if kind == 1:
            s.close()
            return time.monotonic() - t0, bool(flags & 1)

addr, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20
times = []
for _ in range(n):
    time.sleep(random.uniform(0.1, 1.1))
    t, key = first_picture(addr)
    assert key, "the first picture was not a keyframe"
    times.append(t * 1000)
times.sort()
print(f"first decodable picture after connect, {n} joins: median {times[n // 2]:.1f} ms, max {times[-1]:.1f} ms")
