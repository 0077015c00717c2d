#!/usr/bin/env python3
"""The dashboard's live tiles in headless Chromium (docs/benchmarks.md):

  ws:    N cameras (default 16) in one tab, all over the live WebSocket;
  mjpeg: one <img> multipart stream per camera, the way tiles were drawn
         before, at 5 cameras (the most a browser shows: six connections
         per host, one kept by the page's event stream).

Each camera is a node replaying a 640x480 MJPEG clip at 15 fps (the file
source: encoding 16 test patterns would take this 2-core machine's CPU
from what is measured). Reported per run: frames drawn per second against
frames the cameras sent, the viewer's CPU in all and per tile, and the
bytes per second the browser received from the dashboard.

Usage: scripts/bench-live.py [CAMERAS] [SECONDS]
(after cargo build --release -p camera-node -p viewer; needs chromium,
chromium-driver, mosquitto, ffmpeg)"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import cpu_seconds, free_port, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
FPS = 15


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["value"]


class Chromium:
    def __init__(self):
        port = free_port()
        self.driver = subprocess.Popen(["chromedriver", f"--port={port}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        wait("chromedriver", lambda: call(self.base, "GET", "/status")["ready"])
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1200"]}}}}
        self.session = call(self.base, "POST", "/session", caps)["sessionId"]

    def go(self, url):
        call(self.base, "POST", f"/session/{self.session}/url", {"url": url})

    def run(self, script):
        return call(self.base, "POST", f"/session/{self.session}/execute/sync",
                    {"script": script, "args": []})

    def close(self):
        try:
            call(self.base, "DELETE", f"/session/{self.session}")
        finally:
            self.driver.kill()


def browser_bytes(port):
    """Bytes the browser's sockets to `port` have received (ss -ti)."""
    out = subprocess.run(["ss", "-Htni", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return sum(int(w.split(":")[1]) for w in out.split() if w.startswith("bytes_received:"))


TILES = """return Object.fromEntries([...document.querySelectorAll('[data-camera]')]
  .map(t => [t.dataset.camera, [Number(t.dataset.frames || 0), Number(t.dataset.seq || 0)]]))"""


def measure(mode, cams, secs, work, clip):
    procs = []
    try:
        mport = free_port()
        with open(f"{work}/m.conf", "w") as f:
            f.write(f"listener {mport} 127.0.0.1\nallow_anonymous true\n")
        procs.append(subprocess.Popen(["mosquitto", "-c", f"{work}/m.conf"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        broker = f"mqtt://127.0.0.1:{mport}"
        dport = free_port()
        log = open(f"{work}/viewer-{mode}.log", "w")
        viewer = subprocess.Popen([f"{BIN}/viewer", "--broker", broker, "--viewer-id", "bench",
                                   "--headless", "--recordings", f"{work}/rec",
                                   "--dashboard", f"127.0.0.1:{dport}"], stderr=log)
        procs.append(viewer)
        for i in range(1, cams + 1):
            procs.append(subprocess.Popen(
                [f"{BIN}/camera-node", "--broker", broker, "--node-id", f"bench-{i}",
                 "--source", f"file:{clip}", "--fps", str(FPS), "--width", "640", "--height", "480",
                 "--tcp-port", "0", "--rtsp-port", "0", "--http-port", "0",
                 "--advertise-host", "127.0.0.1", "--no-cpu-temp"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        dash = f"http://127.0.0.1:{dport}"

        def fleet():
            with urllib.request.urlopen(dash + "/api/state", timeout=5) as r:
                state = json.load(r)
            fresh = [c for c in state["cameras"] if (c["last_frame_age_s"] or 99) < 2]
            return len(fresh) == cams
        wait(f"{cams} cameras in the viewer", fleet, 60)
        chrome = Chromium()
        try:
            if mode == "ws":
                chrome.go(dash + "/")
                wait("every tile drawing",
                     lambda: len(chrome.run(TILES)) == cams and all(
                         f > 0 for f, _ in chrome.run(TILES).values()), 30)
            else:
                # The page from a server of its own on loopback, as the
                # dashboard's tiles were (a data: page may not load
                # loopback images).
                imgs = "".join(f'<img width=320 src="{dash}/cameras/bench-{i}/cam0/stream.mjpg">'
                               for i in range(1, cams + 1))
                os.makedirs(f"{work}/page", exist_ok=True)
                with open(f"{work}/page/index.html", "w") as f:
                    f.write(f"<!doctype html><title>tiles</title>{imgs}")
                pport = free_port()
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "http.server", str(pport), "--bind", "127.0.0.1",
                     "--directory", f"{work}/page"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait("the page server", lambda: urllib.request.urlopen(
                    f"http://127.0.0.1:{pport}/", timeout=2).status == 200)
                chrome.go(f"http://127.0.0.1:{pport}/")
                wait("every image loaded", lambda: chrome.run(
                    "return [...document.images].every(i => i.naturalWidth > 0)"), 30)
            time.sleep(3)  # settle: tiles drawing at their rate
            t0, c0, b0 = time.monotonic(), cpu_seconds(viewer.pid), browser_bytes(dport)
            tiles0 = chrome.run(TILES) if mode == "ws" else {}
            time.sleep(secs)  # the measuring window
            t1, c1, b1 = time.monotonic(), cpu_seconds(viewer.pid), browser_bytes(dport)
            tiles1 = chrome.run(TILES) if mode == "ws" else {}
        finally:
            chrome.close()
        span = t1 - t0
        cpu = (c1 - c0) / span * 100
        drawn = sum(tiles1[k][0] - tiles0[k][0] for k in tiles1) / span if tiles1 else None
        sent = sum(tiles1[k][1] - tiles0[k][1] for k in tiles1) / span if tiles1 else cams * FPS
        return {"mode": mode, "cams": cams, "drawn": drawn, "sent": sent, "cpu": cpu,
                "cpu_tile": cpu / cams, "mbit": (b1 - b0) * 8 / span / 1e6}
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def main():
    cams = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    for b in ("camera-node", "viewer"):
        if not os.access(f"{BIN}/{b}", os.X_OK):
            sys.exit("build first: cargo build --release -p camera-node -p viewer")
    with tempfile.TemporaryDirectory() as work:
        clip = f"{work}/clip.mjpeg"
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                        f"testsrc2=size=640x480:rate={FPS}", "-frames:v", "60", "-f", "mjpeg",
                        "-q:v", "5", "-huffman", "default", clip], check=True)
        kib = os.path.getsize(clip) / 60 / 1024
        runs = [measure("ws", cams, secs, work, clip), measure("ws", 5, secs, work, clip),
                measure("mjpeg", 5, secs, work, clip)]
    print(f"\n640x480 at {FPS} fps, {kib:.0f} KiB a frame, {secs:.0f} s measured\n")
    print("| tiles | how | frames drawn/s | frames sent/s | viewer CPU | CPU per tile | received |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        drawn = f"{r['drawn']:.1f}" if r["drawn"] is not None else "(not observable)"
        how = "one WebSocket" if r["mode"] == "ws" else "one multipart stream each"
        print(f"| {r['cams']} | {how} | {drawn} | {r['sent']:.1f} | {r['cpu']:.1f}% | "
              f"{r['cpu_tile']:.2f}% | {r['mbit']:.1f} Mbit/s |")


if __name__ == "__main__":
    main()
