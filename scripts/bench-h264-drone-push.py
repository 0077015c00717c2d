#!/usr/bin/env python3
"""A drone's 720p30 H.264 through the node and pushed on to an RTSP server:
the CPU of the node and of the ffmpeg it runs (its converter), with the
stream copied (the default) against converted to MJPEG (`codec = "mjpeg"`,
what the node did before H.264 was copied).

The drone is ffmpeg publishing a 1280x720 30 fps x264 FLV at 3 Mbit/s in
real time to the node's own RTMP listener (`rtmp-listen://`); the RTSP
server is ffmpeg listening (`-rtsp_flags listen`), the node pushes to it.
CPU is user+system time of the node and its children over the window.

usage: scripts/bench-h264-drone-push.py NODE_BIN [SECONDS]
(after `cargo build --release -p camera-node`)
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, wait  # noqa: E402


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def listening(port):
    """Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        return f":{port:04X} 00000000:0000 0A" in f.read()


def tree_cpu(pid):
    """CPU seconds of `pid` and its children alive now."""
    total = cpu_seconds(pid)
    for child in children(pid):
        try:
            total += cpu_seconds(child)
        except OSError:
            pass
    return total


def run(node_bin, work, codec, seconds):
    flv = os.path.join(work, "drone.flv")
    broker, rtmp, rtsp, push = (free_port() for _ in range(4))
    received = os.path.join(work, f"received-{codec or 'copy'}.mkv")
    config = os.path.join(work, f"node-{codec or 'copy'}.toml")
    with open(config, "w") as f:
        f.write(f'node_id = "drone-bench"\nbroker = "mqtt://127.0.0.1:{broker}"\n')
        f.write(f"tcp_port = 0\nrtsp_port = {rtsp}\nhttp_port = 0\ncpu_temp = false\n")
        f.write('[[camera]]\nid = "drone"\n')
        f.write(f'source = "rtmp-listen://127.0.0.1:{rtmp}/live/d1"\n')
        if codec:
            f.write(f'codec = "{codec}"\n')
        f.write(f'push = ["rtsp://127.0.0.1:{push}/x"]\n')
    procs = []
    try:
        procs.append(subprocess.Popen(["mosquitto", "-p", str(broker)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_flags", "listen",
             "-rtsp_transport", "tcp", "-i", f"rtsp://127.0.0.1:{push}/x",
             "-c", "copy", "-y", received], stdin=subprocess.DEVNULL))
        wait("the RTSP server listening", lambda: listening(push), 10)
        node = subprocess.Popen([node_bin, "--config", config], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(node)
        wait("the node's RTMP listener", lambda: listening(rtmp), 30)
        procs.append(subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", flv, "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/d1"],
            stdin=subprocess.DEVNULL))
        wait("the push reaching the RTSP server",
             lambda: os.path.exists(received) and os.path.getsize(received) > 100_000, 60)
        time.sleep(3)  # warm-up: the converter's start is not its steady cost
        cpu0, t0 = tree_cpu(node.pid), time.monotonic()
        time.sleep(seconds)  # the measuring window
        cpu = (tree_cpu(node.pid) - cpu0) / (time.monotonic() - t0)
        return cpu, os.path.getsize(received)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    node_bin, seconds = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 15
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            ["ffmpeg", "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
             "testsrc2=size=1280x720:rate=30", "-t", "20", "-c:v", "libx264", "-preset",
             "veryfast", "-tune", "zerolatency", "-g", "30", "-b:v", "3M", "-pix_fmt",
             "yuv420p", "-f", "flv", os.path.join(work, "drone.flv")], check=True)
        copied, got_copy = run(node_bin, work, None, seconds)
        converted, got_mjpeg = run(node_bin, work, "mjpeg", seconds)
    print("| drone 720p30 to an RTSP push | node + its ffmpeg (cores) | pushed bytes received |")
    print("|---|---|---|")
    print(f"| converted to MJPEG (codec = \"mjpeg\") | {converted:.3f} | {got_mjpeg} |")
    print(f"| copied (default) | {copied:.3f} | {got_copy} |")
    print(f"| copy / convert | {copied / converted:.3f} | |")


if __name__ == "__main__":
    main()
