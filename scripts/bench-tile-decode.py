#!/usr/bin/env python3
"""What a live tile's picture costs the browser to decode and draw.

Headless Chromium (through chromedriver) decodes one 640x480 JPEG of
ffmpeg's test pattern over and over, one chain at a time and twelve chains
at once (a dozen tiles), in the ways a page can: createImageBitmap (what
live.js did), createImageBitmap with a resize, WebCodecs' ImageDecoder at
full size and at 320x240 (what live.js does for a 320-pixel tile), and an
<img>. Prints milliseconds per picture, decode and drawImage on a canvas.

    python3 scripts/bench-tile-decode.py [rounds]

Needs chromium, chromedriver and ffmpeg.
"""
import functools
import http.server
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PAGE = """<html><body><canvas id=c width=640 height=480></canvas><script>
async function run(method, chains, per) {
  const buf = new Uint8Array(await (await fetch('pattern.jpg')).arrayBuffer());
  const ctx = document.getElementById('c').getContext('2d');
  const blob = () => new Blob([buf], {type: 'image/jpeg'});
  async function once() {
    let picture;
    if (method === 'createImageBitmap') picture = await createImageBitmap(blob());
    else if (method === 'createImageBitmap resized to 320') picture = await createImageBitmap(blob(), {resizeWidth: 320, resizeHeight: 240, resizeQuality: 'low'});
    else if (method === 'img') {
      const img = new Image(); img.src = URL.createObjectURL(blob()); await img.decode();
      ctx.drawImage(img, 0, 0); URL.revokeObjectURL(img.src); return;
    } else {
      const options = {data: buf, type: 'image/jpeg'};
      if (method.endsWith('320')) { options.desiredWidth = 320; options.desiredHeight = 240; }
      const decoder = new ImageDecoder(options);
      picture = (await decoder.decode()).image; decoder.close();
    }
    ctx.drawImage(picture, 0, 0); picture.close();
  }
  const started = performance.now();
  await Promise.all([...Array(chains)].map(async () => { for (let i = 0; i < per; i++) await once(); }));
  return (performance.now() - started) / (chains * per);
}
</script></body></html>"""

METHODS = [
    "createImageBitmap",
    "createImageBitmap resized to 320",
    "ImageDecoder",
    "ImageDecoder at 320",
    "img",
]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    root = Path(tempfile.mkdtemp(prefix="tile-decode-"))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=1",
         "-frames:v", "1", "-q:v", "5", str(root / "pattern.jpg")],
        check=True,
    )
    (root / "index.html").write_text(PAGE)
    handler = functools.partial(Quiet, directory=root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL)

    def call(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data,
                                         headers={"Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(request, timeout=600))["value"]

    try:
        for _ in range(100):
            try:
                call("GET", "/status")
                break
            except OSError:
                time.sleep(0.1)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        session = call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}})["sessionId"]
        call("POST", f"/session/{session}/timeouts", {"script": 600000})
        call("POST", f"/session/{session}/url", {"url": f"http://127.0.0.1:{server.server_port}/index.html"})
        print(f"{'ms per 640x480 picture':34} {'1 tile':>8} {'12 tiles':>9}   (best of {rounds})", flush=True)
        for method in METHODS:
            best = {}
            for _ in range(rounds):
                for chains, per in [(1, 100), (12, 20)]:
                    script = f"const done = arguments[0]; run({json.dumps(method)}, {chains}, {per}).then(done, e => done(String(e)))"
                    ms = call("POST", f"/session/{session}/execute/async", {"script": script, "args": []})
                    best[chains] = min(best.get(chains, ms), ms) if isinstance(ms, float) else ms
            print(f"{method:34} {best[1]:8.2f} {best[12]:9.2f}", flush=True)
        call("DELETE", f"/session/{session}")
    finally:
        driver.terminate()
        server.shutdown()


if __name__ == "__main__":
    main()
