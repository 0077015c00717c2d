#!/usr/bin/env python3
"""What locking the fleet down costs, measured against the plain set-up in
the same run:

1. the node's MQTT over TLS (mqtts:// with a user) against plain mqtt://:
   the node's CPU with a 1280x720 30 fps test camera, no viewers;
2. the dashboard's live MJPEG tile over HTTPS against HTTP: the viewer's
   CPU per stream, STREAMS curl clients reading one 1280x720 30 fps
   camera's tile;
3. Home Assistant's snapshots at the default rate (one JPEG per camera
   every 10 s) for CAMERAS cameras: messages and bytes a second through
   the broker, and mosquitto's CPU with and without them.

Real parts on loopback: mosquitto started from `viewer broker-config`'s
files (TLS, users, ACL) and a plain one, the release camera-node and
viewer, curl. Needs target/release/{camera-node,viewer} (cargo build
--release -p camera-node -p viewer), mosquitto, mosquitto-clients, curl.

Usage: scripts/bench-security.py [--seconds 20] [--streams 4] [--cameras 10]
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import cpu_seconds, free_port, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE = os.path.join(ROOT, "target/release/camera-node")
VIEWER = os.path.join(ROOT, "target/release/viewer")


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def cpu_over(pid, seconds):
    """Percent of one core `pid` used over `seconds`."""
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) * 100 / (time.monotonic() - t0)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Fleet:
    """A locked broker from broker-config and a plain one."""

    def __init__(self, tmp, cameras):
        self.tmp = tmp
        self.port = free_port()
        nodes = ",".join(f"pi-{i}" for i in range(cameras))
        out = subprocess.run(
            [VIEWER, "broker-config", "--nodes", nodes, "--viewers", "ws", "--operators", "alice",
             "--host", "127.0.0.1", "--port", str(self.port), "--out", f"{tmp}/broker",
             "--cert-for", "dashboard=127.0.0.1"],
            check=True, capture_output=True, text=True).stdout
        self.passwords = {m[2]: m[3] for m in re.finditer(r"^(node|viewer|operator)\s+(\S+)\s+(\S+)$", out, re.M)}
        conf = open(f"{tmp}/broker/mosquitto.conf").read() + "\nuser root\npersistence false\n"
        open(f"{tmp}/locked.conf", "w").write(conf)
        self.locked = subprocess.Popen(["mosquitto", "-c", f"{tmp}/locked.conf"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.plain_port = free_port()
        open(f"{tmp}/plain.conf", "w").write(
            f"listener {self.plain_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.plain = subprocess.Popen(["mosquitto", "-c", f"{tmp}/plain.conf"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("the brokers", lambda: listening(self.port) and listening(self.plain_port))
        self.ca = f"{tmp}/broker/ca.crt"

    def url(self, user, tls):
        if tls:
            return f"mqtts://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"
        return f"mqtt://127.0.0.1:{self.plain_port}"

    def close(self):
        stop(self.locked)
        stop(self.plain)


def node(fleet, node_id, tls, size="1280x720", fps="30"):
    w, h = size.split("x")
    log = open(f"{fleet.tmp}/{node_id}-{tls}.log", "w")
    args = [NODE, "--node-id", node_id, "--source", "test", "--broker", fleet.url(node_id, tls),
            "--ca-file", fleet.ca, "--width", w, "--height", h, "--fps", fps,
            "--tcp-port", "0", "--rtsp-port", "0", "--http-port", "0", "--no-cpu-temp"]
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    wait(f"{node_id} on MQTT", lambda: "connected to MQTT broker" in open(log.name).read())
    return proc


def viewer(fleet, tls, extra):
    log = open(f"{fleet.tmp}/viewer-{tls}-{len(extra)}.log", "w")
    dash = free_port()
    args = [VIEWER, "--broker", fleet.url("ws", tls), "--ca-file", fleet.ca, "--viewer-id", "ws",
            "--headless", "--no-record", "--dashboard", f"127.0.0.1:{dash}",
            "--recordings", f"{fleet.tmp}/rec"] + extra
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    wait("the viewer's dashboard", lambda: listening(dash))
    return proc, dash, log.name


def mqtt_tls_cost(fleet, seconds):
    print("1. node MQTT: TLS against plain (node CPU %, 720p30 test camera, no viewers)")
    for tls in (False, True):
        proc = node(fleet, "pi-0", tls)
        time.sleep(2)
        cpu = cpu_over(proc.pid, seconds)
        print(f"   {'mqtts (TLS, user)' if tls else 'mqtt (plain)':<20} node CPU {cpu:5.2f}%")
        stop(proc)


def tile_tls_cost(fleet, seconds, streams):
    print(f"2. dashboard MJPEG tile: HTTPS against HTTP (viewer CPU %, {streams} streams of a 720p30 camera)")
    cam = node(fleet, "pi-0", False)
    cert, key = f"{fleet.tmp}/broker/certs/dashboard.crt", f"{fleet.tmp}/broker/certs/dashboard.key"
    results = {}
    for tls in (False, True):
        extra = ["--tls-cert", cert, "--tls-key", key] if tls else []
        proc, dash, log = viewer(fleet, False, extra)
        wait("the camera in the viewer", lambda: "camera{camera=pi-0/cam0}: connected" in open(log).read())
        time.sleep(2)
        idle = cpu_over(proc.pid, seconds / 2)
        scheme = "https" if tls else "http"
        url = f"{scheme}://127.0.0.1:{dash}/cameras/pi-0/cam0/stream.mjpg"
        clients = [subprocess.Popen(["curl", "-s", "-N", "--cacert", fleet.ca, "-o", "/dev/null",
                                     "-w", "%{size_download}", "--max-time", str(seconds + 4), url],
                                    stdout=subprocess.PIPE, text=True) for _ in range(streams)]
        time.sleep(2)
        busy = cpu_over(proc.pid, seconds)
        got = [int(c.communicate()[0] or 0) for c in clients]
        per = (busy - idle) / streams
        results[tls] = per
        print(f"   {scheme:<6} viewer CPU idle {idle:5.2f}%  with {streams} streams {busy:5.2f}%  "
              f"per stream {per:5.2f}%  ({sum(got) / 1e6 / (seconds + 2):.1f} MB/s read in all)")
        stop(proc)
    stop(cam)
    if results[False] > 0:
        print(f"   HTTPS/HTTP CPU per stream: {results[True] / results[False]:.2f}")


def snapshot_load(fleet, seconds, cameras):
    print(f"3. Home Assistant snapshots, {cameras} cameras (640x480 10 fps) at the default rate")
    nodes = [node(fleet, f"pi-{i}", False, "640x480", "10") for i in range(cameras)]
    for ha in (False, True):
        extra = ["--homeassistant"] if ha else []
        proc, _, log = viewer(fleet, False, extra)
        wait("every camera in the viewer", lambda: open(log).read().count(": connected") >= cameras, 60)
        counter = subprocess.Popen(["mosquitto_sub", "-p", str(fleet.plain_port), "-t", "camfleet/viewer/ws/snapshot/#",
                                    "-W", str(seconds + 2), "-F", "%l"], stdout=subprocess.PIPE, text=True)
        broker = cpu_over(fleet.plain.pid, seconds)
        sizes = [int(x) for x in counter.communicate()[0].split()]
        label = "--homeassistant" if ha else "without"
        print(f"   {label:<16} mosquitto CPU {broker:5.2f}%  snapshots {len(sizes) / seconds:.2f}/s "
              f"{sum(sizes) / 1024 / seconds:.1f} KiB/s (mean {sum(sizes) / max(len(sizes), 1) / 1024:.0f} KiB)")
        stop(proc)
    for n in nodes:
        stop(n)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--cameras", type=int, default=10)
    a = p.parse_args()
    for exe in (NODE, VIEWER):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: cargo build --release -p camera-node -p viewer")
    with tempfile.TemporaryDirectory(prefix="camfleet-bench-security-") as tmp:
        fleet = Fleet(tmp, a.cameras)
        try:
            mqtt_tls_cost(fleet, a.seconds)
            tile_tls_cost(fleet, a.seconds, a.streams)
            snapshot_load(fleet, max(a.seconds, 30), a.cameras)
        finally:
            fleet.close()


if __name__ == "__main__":
    main()
