#!/usr/bin/env python3
"""Runtime cameras, measured: the node's and its converter's CPU per input
(RTMP H.264 720p30 converted to MJPEG, RTSP MJPEG copied, HTTP MJPEG
copied) and per push, and the time from the POST that adds a camera to its
first frame at a TCP viewer.

Real parts on loopback: an upstream camera-node serving a 1280x720 30 fps
MJPEG camera (ffmpeg's test source), nginx with the RTMP module and an
ffmpeg drone publishing 720p30 H.264, the node under test (whose own camera
is a tiny 160x120 1 fps test pattern), and ffmpeg listening as an RTSP
server for the push. Needs target/release/camera-node (cargo build
--release -p camera-node), ffmpeg, nginx and libnginx-mod-rtmp.

Usage: scripts/bench-sources.py [--seconds 10] [--rounds 3]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import cpu_seconds, free_port, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE = os.environ.get("CAMFLEET_NODE", os.path.join(ROOT, "target/release/camera-node"))


def start_node(node_id, source, extra, log):
    args = [NODE, "--node-id", node_id, "--source", source, "--broker", "mqtt://127.0.0.1:1",
            "--tcp-port", "0", "--rtsp-port", "0", "--http-port", "0", "--advertise-host", "127.0.0.1",
            "--no-cpu-temp", *extra]
    proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "info"})
    return proc


def logged(path, before, after):
    def find():
        text = open(path).read()
        at = text.find(before)
        if at < 0:
            return None
        rest = text[at + len(before):]
        end = rest.find(after)
        return rest[:end] if end >= 0 else None
    return wait(f"{before!r} in {path}", find)


def api(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            text = r.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path}: {e.code} {e.read()!r}")


def first_frame(port, limit=30.0):
    """Connects to the camera's TCP port and returns when a whole frame came."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
                buf = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) >= 11 + 20:
                        length = int.from_bytes(buf[11:15], "big")
                        if len(buf) >= 11 + 20 + length:
                            return
        except OSError:
            time.sleep(0.01)
    sys.exit(f"no frame on port {port}")


def measure(node_pid, converter_pid, seconds):
    """CPU percent of one core of the node and the converter over `seconds`."""
    n0 = cpu_seconds(node_pid)
    c0 = cpu_seconds(converter_pid) if converter_pid else 0.0
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    node = (cpu_seconds(node_pid) - n0) / elapsed * 100
    conv = (cpu_seconds(converter_pid) - c0) / elapsed * 100 if converter_pid else 0.0
    return node, conv


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for program in ["ffmpeg", "nginx"]:
        if not shutil.which(program):
            sys.exit(f"{program} is missing: scripts/install-deps.sh")
    if not os.path.exists(NODE):
        sys.exit(f"{NODE} is missing: cargo build --release -p camera-node")
    work = tempfile.mkdtemp(prefix="camfleet-bench-sources-")
    children = []
    try:
        up_log = open(os.path.join(work, "up.log"), "w")
        camera = ("cmd:exec ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 "
                  "-f mjpeg -q:v 5 -huffman default -")
        up = start_node("bench-up", camera, ["--width", "1280", "--height", "720", "--fps", "30"], up_log)
        children.append(up)
        up_rtsp = logged(up_log.name, "RTSP on ", "/<camera>")
        up_http = logged(up_log.name, "web page and API on ", "/\n")

        rtmp_port = free_port()
        module = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"load_module {module};\ndaemon off;\nmaster_process off;\npid {work}/nginx.pid;\n"
                    f"error_log {work}/nginx.log;\nevents {{ worker_connections 64; }}\n"
                    f"rtmp {{ server {{ listen 127.0.0.1:{rtmp_port}; application live {{ live on; }} }} }}\n")
        children.append(subprocess.Popen(["nginx", "-p", work, "-c", conf]))
        wait("nginx", lambda: socket.create_connection(("127.0.0.1", rtmp_port)).close() or True)
        rtmp = f"rtmp://127.0.0.1:{rtmp_port}/live/d1"
        children.append(subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
             "testsrc2=size=1280x720:rate=30", "-c:v", "libx264", "-preset", "ultrafast", "-tune",
             "zerolatency", "-g", "30", "-pix_fmt", "yuv420p", "-f", "flv", rtmp], stdin=subprocess.DEVNULL))

        log = open(os.path.join(work, "node.log"), "w")
        node = start_node("bench-node", "test", ["--width", "160", "--height", "120", "--fps", "1"], log)
        children.append(node)
        base = logged(log.name, "web page and API on ", "/\n").replace("0.0.0.0", "127.0.0.1")
        wait("the node's API", lambda: api(base, "GET", "/api/v1/cameras"))
        time.sleep(2)

        inputs = [
            ("RTMP H.264 720p30 -> MJPEG 720p30", {"source": rtmp, "width": 1280, "height": 720, "fps": 30}),
            ("RTSP MJPEG 720p30, copied", {"source": f"{up_rtsp}/cam0".replace("0.0.0.0", "127.0.0.1")}),
            ("HTTP MJPEG 720p30, copied", {"source": f"{up_http}/cameras/cam0/stream.mjpg".replace("0.0.0.0", "127.0.0.1")}),
        ]
        idle_node, _ = measure(node.pid, None, args.seconds)
        print(f"node alone (its own 160x120 1 fps camera): {idle_node:.1f}% of a core")
        print()
        print("| input | POST to first frame (s), per round | node CPU % | converter CPU % |")
        print("|---|---|---|---|")
        for name, body in inputs:
            firsts, node_cpu, conv_cpu = [], [], []
            for r in range(args.rounds):
                t0 = time.monotonic()
                cam = api(base, "POST", "/api/v1/cameras", {"id": "x", **body})
                first_frame(cam["tcp_port"])
                firsts.append(time.monotonic() - t0)
                time.sleep(1)
                pid = wait("the converter", lambda: (api(base, "GET", "/api/v1/cameras/x").get("converter") or {}).get("pid"))
                n, c = measure(node.pid, pid, args.seconds)
                node_cpu.append(n)
                conv_cpu.append(c)
                api(base, "DELETE", "/api/v1/cameras/x")
            median = lambda xs: sorted(xs)[len(xs) // 2]
            print(f"| {name} | {' / '.join(f'{f:.2f}' for f in firsts)} | {median(node_cpu):.1f} | {median(conv_cpu):.1f} |")

        # A push: the upstream node's 720p30 camera pushed to ffmpeg listening.
        print()
        push_port = free_port()
        sink = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_flags", "listen",
                                 "-rtsp_transport", "tcp", "-i", f"rtsp://127.0.0.1:{push_port}/x",
                                 "-c", "copy", "-f", "null", "-"], stdin=subprocess.DEVNULL)
        children.append(sink)
        want = f":{push_port:04X} 00000000:0000 0A"
        wait("the RTSP sink", lambda: want in open("/proc/net/tcp").read())
        cam = api(base, "POST", "/api/v1/cameras", {"id": "p", "source": inputs[1][1]["source"]})
        first_frame(cam["tcp_port"])
        time.sleep(1)
        pid = api(base, "GET", "/api/v1/cameras/p")["converter"]["pid"]
        without, _ = measure(node.pid, pid, args.seconds)
        api(base, "POST", "/api/v1/cameras/p/pushes", {"url": f"rtsp://127.0.0.1:{push_port}/x"})
        wait("the push recording", lambda: api(base, "GET", "/api/v1/cameras/p")["pushes"][0]["state"] == "recording")
        time.sleep(1)
        with_push, _ = measure(node.pid, pid, args.seconds)
        push = api(base, "GET", "/api/v1/cameras/p")["pushes"][0]
        print(f"push of a 720p30 MJPEG camera over RTSP/TCP: node {without:.1f}% -> {with_push:.1f}% of a core "
              f"(+{with_push - without:.1f}); {push['frames_sent']} frames sent, {push['frames_skipped']} skipped, "
              f"{push['rtcp_reports']} sender reports")
    finally:
        for child in reversed(children):
            try:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=5)
            except Exception:
                child.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
