// camfleet live tiles (docs/protocol.md, "The live WebSocket"). Every
// element of the page with a data-camera attribute and a <canvas> inside is
// drawn from one WebSocket, whatever the number of cameras: the page's
// other requests keep the browser's connections to themselves.
//
// The server puts it in the page inline, as <script data-socket="api/live">.
//
// A tile shows its camera while it is on screen; a click enlarges it (the
// only camera then shown, at its full rate), Escape goes back. Each tile
// keeps data-frames (pictures drawn), data-age-ms (how old the last one was
// when drawn, by its capture time) and data-seq; its .live-info element, if
// it has one, says the rate and the age. An element with data-live-grid
// gets --live-cols, the columns that fit its tiles.
"use strict";
(() => {
  const KIND_JPEG = 1;
  const HEADER_LEN = 22;
  const script = document.currentScript;
  const url = new URL(script.dataset.socket || "api/live", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";

  const tiles = new Map(); // camera key -> tile
  const visible = new Set();
  const names = new TextDecoder();
  let socket = null;
  let shown = "";
  let enlarged = null;
  let retry = 500;

  const style = document.createElement("style");
  style.textContent = `
    [data-camera] canvas { display: block; width: 100%; height: auto; aspect-ratio: 4 / 3; object-fit: contain; background: #000; cursor: zoom-in; }
    [data-camera] { position: relative; }
    [data-camera] .live-info { position: absolute; top: .3rem; right: .4rem; padding: .05rem .35rem; border-radius: .25rem; background: #000a; color: #eee; font: 12px/1.4 system-ui, sans-serif; pointer-events: none; }
    [data-camera].live-enlarged { position: fixed; inset: 0; z-index: 100; margin: 0; border-radius: 0; background: #000; display: flex; flex-direction: column; }
    [data-camera].live-enlarged canvas { flex: 1; min-height: 0; height: 100%; aspect-ratio: auto; cursor: zoom-out; }
    body.live-enlarged { overflow: hidden; }
    [data-live-grid] { grid-template-columns: repeat(var(--live-cols, 3), minmax(0, 1fr)) !important; }
  `;
  document.head.append(style);

  function tile(el) {
    const canvas = el.querySelector("canvas");
    return {
      el, canvas, context: canvas.getContext("2d"), info: el.querySelector(".live-info"),
      frames: 0, busy: false, pending: null, drawn: [], captured: null,
    };
  }

  // Finds the page's tiles (they come and go with the fleet).
  function scan() {
    const found = new Set();
    for (const el of document.querySelectorAll("[data-camera]")) {
      const key = el.dataset.camera;
      if (!el.querySelector("canvas")) continue;
      found.add(key);
      const known = tiles.get(key);
      if (known && known.el === el) continue;
      if (known) onScreen.unobserve(known.el);
      const t = tile(el);
      el.dataset.frames = t.frames;
      t.canvas.addEventListener("click", () => enlarge(enlarged === key ? null : key));
      tiles.set(key, t);
      onScreen.observe(el);
    }
    for (const [key, t] of tiles) {
      if (found.has(key)) continue;
      onScreen.unobserve(t.el);
      tiles.delete(key);
      visible.delete(key);
      if (enlarged === key) enlarge(null);
    }
    for (const grid of document.querySelectorAll("[data-live-grid]")) {
      const n = grid.querySelectorAll("[data-camera]").length;
      const fit = Math.max(1, Math.floor(grid.clientWidth / 200));
      grid.style.setProperty("--live-cols", Math.max(1, Math.min(Math.ceil(Math.sqrt(n)), fit, n)));
    }
    show();
  }

  const onScreen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const key = e.target.dataset.camera;
      if (e.isIntersecting) visible.add(key); else visible.delete(key);
    }
    show();
  }, { rootMargin: "200px" });

  // Tells the server which cameras the page shows now.
  function show() {
    let cameras = [];
    if (!document.hidden) cameras = enlarged ? [enlarged] : [...visible].filter((k) => tiles.has(k));
    const message = JSON.stringify({ show: cameras.map((camera) => ({ camera })) });
    if (socket && socket.readyState === WebSocket.OPEN && message !== shown) {
      socket.send(message);
      shown = message;
    }
  }

  function enlarge(key) {
    enlarged = key;
    document.body.classList.toggle("live-enlarged", key !== null);
    for (const [k, t] of tiles) t.el.classList.toggle("live-enlarged", k === key);
    show();
  }

  function connect() {
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => { retry = 500; shown = ""; show(); };
    socket.onmessage = (e) => {
      if (typeof e.data === "string") {
        const said = JSON.parse(e.data);
        const t = said.camera && tiles.get(said.camera);
        if (t) t.el.dataset.error = said.error;
        console.warn("camfleet live:", said.error);
        return;
      }
      const view = new DataView(e.data);
      if (e.data.byteLength < HEADER_LEN || view.getUint8(0) !== KIND_JPEG) return;
      const keyLen = view.getUint8(1);
      // Acknowledged at once: the server then sends this camera's newest.
      socket.send(JSON.stringify({ ack: view.getUint32(2) }));
      const t = tiles.get(names.decode(new Uint8Array(e.data, HEADER_LEN, keyLen)));
      if (!t) return;
      draw(t, {
        seq: Number(view.getBigUint64(6)),
        captured: Number(view.getBigUint64(14)) / 1000,
        jpeg: new Blob([new Uint8Array(e.data, HEADER_LEN + keyLen)], { type: "image/jpeg" }),
      });
    };
    socket.onclose = () => {
      socket = null;
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  // One picture decoding per tile; a newer one waiting replaces the last.
  function draw(t, frame) {
    if (t.busy) { t.pending = frame; return; }
    t.busy = true;
    createImageBitmap(frame.jpeg).then((bitmap) => {
      if (t.canvas.width !== bitmap.width || t.canvas.height !== bitmap.height) {
        t.canvas.width = bitmap.width;
        t.canvas.height = bitmap.height;
        t.canvas.style.aspectRatio = bitmap.width + " / " + bitmap.height;
      }
      t.context.drawImage(bitmap, 0, 0);
      bitmap.close();
      const now = performance.now();
      t.frames += 1;
      t.captured = frame.captured;
      t.drawn.push(now);
      while (t.drawn.length && t.drawn[0] < now - 2000) t.drawn.shift();
      t.el.dataset.frames = t.frames;
      t.el.dataset.seq = frame.seq;
      t.el.dataset.ageMs = Math.round(Date.now() - frame.captured);
      delete t.el.dataset.error;
    }).catch(() => {
      t.el.dataset.error = "a picture that does not decode";
    }).finally(() => {
      t.busy = false;
      const next = t.pending;
      t.pending = null;
      if (next) draw(t, next);
    });
  }

  // The rate drawn over the last two seconds and the picture's age, in the
  // info's own text node (a new child each time would wake the scan).
  function say(t, text) {
    if (!t.info.firstChild) t.info.append(document.createTextNode(""));
    t.info.firstChild.data = text;
  }
  setInterval(() => {
    for (const t of tiles.values()) {
      if (!t.info) continue;
      if (t.captured === null) { say(t, "no picture yet"); continue; }
      const age = (Date.now() - t.captured) / 1000;
      const fps = t.drawn.filter((at) => at > performance.now() - 2000).length / 2;
      say(t, fps.toFixed(1) + " fps · " + (age < 10 ? age.toFixed(2) : age.toFixed(0)) + " s");
    }
  }, 500);

  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && enlarged) enlarge(null); });
  document.addEventListener("visibilitychange", show);
  addEventListener("resize", scan);
  new MutationObserver(scan).observe(document.body, { childList: true, subtree: true });
  scan();
  connect();
})();
