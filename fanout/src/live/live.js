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
// when drawn, by its capture time), data-captured-ms (its capture time, ms
// since the epoch), data-seq and data-superseded (pictures that came while
// it was decoding and were replaced by a newer one, unseen, or that an
// H.264 tile stepped over to get back to the live edge: the page was
// short of CPU, not the link); its .live-info element, if
// it has one, says the rate and the age. An element with data-live-grid
// gets --live-cols, the columns that fit its tiles.
//
// An MJPEG camera's pictures are drawn on the tile's canvas. An H.264
// camera's frames come as fragmented MP4 and play in a <video> that takes
// the canvas's place, through Media Source Extensions (ManagedMediaSource
// where that is what the browser has). Its media time is capture time less
// an origin, so the tile knows each drawn frame's age; it keeps the live
// edge: a little behind, it plays faster, further behind (or in a gap the
// server left when it skipped to a keyframe) it jumps forward.
"use strict";
(() => {
  const KIND_JPEG = 1;
  const KIND_MP4 = 2;
  const HEADER_LEN = 22;
  // Seconds behind the newest frame: past LAG_FAST it plays a little
  // faster, past LAG_JUMP it jumps to just before the newest frame.
  const LAG_FAST = 0.15;
  const LAG_JUMP = 0.5;
  const MediaSourceType = window.ManagedMediaSource || window.MediaSource;
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
    [data-camera] canvas, [data-camera] video.live-video { display: block; width: 100%; height: auto; aspect-ratio: 4 / 3; object-fit: contain; background: #000; cursor: zoom-in; }
    [data-camera] { position: relative; }
    [data-camera] .live-info { position: absolute; top: .3rem; right: .4rem; padding: .05rem .35rem; border-radius: .25rem; background: #000a; color: #eee; font: 12px/1.4 system-ui, sans-serif; pointer-events: none; }
    [data-camera].live-enlarged { position: fixed; inset: 0; z-index: 100; margin: 0; border-radius: 0; background: #000; display: flex; flex-direction: column; }
    [data-camera].live-enlarged canvas, [data-camera].live-enlarged video.live-video { flex: 1; min-height: 0; height: 100%; aspect-ratio: auto; cursor: zoom-out; }
    body.live-enlarged { overflow: hidden; }
    [data-live-grid] { grid-template-columns: repeat(var(--live-cols, 3), minmax(0, 1fr)) !important; }
  `;
  document.head.append(style);

  function tile(el) {
    const canvas = el.querySelector("canvas");
    return {
      el, canvas, context: canvas.getContext("2d"), info: el.querySelector(".live-info"),
      frames: 0, superseded: 0, widthPx: 0, busy: false, pending: null, drawn: [], captured: null, mse: null,
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
      if (known) forget(known);
      const t = tile(el);
      el.dataset.frames = t.frames;
      t.canvas.addEventListener("click", () => enlarge(enlarged === key ? null : key));
      tiles.set(key, t);
      onScreen.observe(el);
      canvasTiles.set(t.canvas, t);
      sized.observe(t.canvas);
    }
    for (const [key, t] of tiles) {
      if (found.has(key)) continue;
      forget(t);
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

  function forget(t) {
    onScreen.unobserve(t.el);
    sized.unobserve(t.canvas);
  }

  // Each canvas's width on screen in device pixels, kept as it changes:
  // read per picture, clientWidth could force a layout each time.
  const canvasTiles = new WeakMap();
  const sized = new ResizeObserver((entries) => {
    for (const e of entries) {
      const t = canvasTiles.get(e.target);
      if (t) t.widthPx = Math.ceil(e.contentRect.width * devicePixelRatio);
    }
  });

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
      const kind = e.data.byteLength < HEADER_LEN ? 0 : view.getUint8(0);
      if (kind !== KIND_JPEG && kind !== KIND_MP4) return;
      const keyLen = view.getUint8(1);
      // Acknowledged at once: the server then sends this camera's newest.
      socket.send(JSON.stringify({ ack: view.getUint32(2) }));
      const t = tiles.get(names.decode(new Uint8Array(e.data, HEADER_LEN, keyLen)));
      if (!t) return;
      if (kind === KIND_MP4) {
        play(t, Number(view.getBigUint64(6)), Number(view.getBigUint64(14)) / 1000,
          new Uint8Array(e.data, HEADER_LEN + keyLen));
        return;
      }
      draw(t, {
        seq: Number(view.getBigUint64(6)),
        captured: Number(view.getBigUint64(14)) / 1000,
        jpeg: new Uint8Array(e.data, HEADER_LEN + keyLen),
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
    if (t.busy) {
      if (t.pending) t.el.dataset.superseded = ++t.superseded;
      t.pending = frame;
      return;
    }
    t.busy = true;
    decode(t, frame.jpeg).then((picture) => {
      const width = picture.displayWidth || picture.width;
      const height = picture.displayHeight || picture.height;
      if (t.canvas.width !== width || t.canvas.height !== height) {
        t.canvas.width = width;
        t.canvas.height = height;
        t.canvas.style.aspectRatio = width + " / " + height;
      }
      t.context.drawImage(picture, 0, 0);
      picture.close();
      drew(t, frame.seq, frame.captured);
    }).catch(() => {
      t.el.dataset.error = "a picture that does not decode";
    }).finally(() => {
      t.busy = false;
      const next = t.pending;
      t.pending = null;
      if (next) draw(t, next);
    });
  }

  // A picture, decoded at the size its tile shows it where the browser has
  // WebCodecs' ImageDecoder: JPEG decodes at 1/8 steps of its size for a
  // fraction of the work (a 640x480 picture in a 320-pixel tile takes about
  // a third of the time), which is what lets a dozen tiles keep their rate
  // on a small machine. Elsewhere createImageBitmap, at full size.
  async function decode(t, jpeg) {
    if (typeof ImageDecoder === "undefined") {
      return createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
    }
    const options = { data: jpeg, type: "image/jpeg" };
    const size = jpegSize(jpeg);
    // The smallest eighth of the picture at least as wide as the tile (the
    // decoder rounds a size between eighths down).
    const eighths = size && t.widthPx > 0 ? Math.ceil((8 * t.widthPx) / size[0]) : 8;
    if (eighths < 8) {
      options.desiredWidth = Math.ceil((size[0] * eighths) / 8);
      options.desiredHeight = Math.ceil((size[1] * eighths) / 8);
    }
    const decoder = new ImageDecoder(options);
    try {
      return (await decoder.decode()).image;
    } finally {
      decoder.close();
    }
  }

  // A JPEG's [width, height] from its frame header (SOFn), or null.
  function jpegSize(b) {
    for (let at = 2; at + 9 <= b.length;) {
      if (b[at] !== 0xff) return null;
      const marker = b[at + 1];
      if (marker === 0xff) { at++; continue; }
      const len = (b[at + 2] << 8) | b[at + 3];
      const sof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
      if (sof) return [(b[at + 7] << 8) | b[at + 8], (b[at + 5] << 8) | b[at + 6]];
      if (marker === 0xda) return null;
      at += 2 + len;
    }
    return null;
  }

  // The boxes at the top level of `bytes`: [type, start, end].
  function boxes(bytes) {
    const out = [];
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at + 8 <= bytes.length;) {
      const size = view.getUint32(at);
      if (size < 8) break;
      out.push([String.fromCharCode(...bytes.subarray(at + 4, at + 8)), at, at + size]);
      at += size;
    }
    return out;
  }

  // Where `type` (four letters) first occurs in `bytes` (its box's body
  // follows), or -1.
  function find(bytes, type) {
    const c = [...type].map((ch) => ch.charCodeAt(0));
    for (let i = 4; i + 4 <= bytes.length; i++) {
      if (bytes[i] === c[0] && bytes[i + 1] === c[1] && bytes[i + 2] === c[2] && bytes[i + 3] === c[3]) return i + 4;
    }
    return -1;
  }

  // An init segment's codec string (RFC 6381: avc1.PPCCLL from its avcC).
  function codecOf(init) {
    const at = find(init, "avcC");
    if (at < 0) return null;
    const hex = (b) => b.toString(16).padStart(2, "0");
    return "avc1." + hex(init[at + 1]) + hex(init[at + 2]) + hex(init[at + 3]);
  }

  // A fragment's decode time in seconds (tfdt, version 1, 90 kHz).
  function decodeTime(fragment) {
    const at = find(fragment, "tfdt");
    if (at < 0) return null;
    const view = new DataView(fragment.buffer, fragment.byteOffset + at);
    const ticks = view.getUint8(0) === 1 ? Number(view.getBigUint64(4)) : view.getUint32(4);
    return ticks / 90000;
  }

  // The tile's <video> and its MediaSource, made again for a new stream
  // (another codec, or a timeline that starts again).
  function openVideo(t, codec) {
    if (t.mse) {
      URL.revokeObjectURL(t.mse.url);
      t.mse.video.removeAttribute("src");
    }
    let video = t.el.querySelector("video.live-video");
    if (!video) {
      video = document.createElement("video");
      video.className = "live-video";
      video.muted = true;
      video.playsInline = true;
      video.disableRemotePlayback = true;
      video.addEventListener("click", () => enlarge(enlarged === t.el.dataset.camera ? null : t.el.dataset.camera));
      t.canvas.after(video);
      t.canvas.hidden = true;
    }
    const source = new MediaSourceType();
    const mse = { video, source, codec, buffer: null, queue: [], times: new Map(), origin: 0, last: -1, url: null };
    mse.url = URL.createObjectURL(source);
    video.src = mse.url;
    source.addEventListener("sourceopen", () => {
      try {
        mse.buffer = source.addSourceBuffer('video/mp4; codecs="' + codec + '"');
      } catch (err) {
        t.el.dataset.error = "this browser cannot play " + codec + ": " + err.message;
        return;
      }
      mse.buffer.mode = "segments";
      mse.buffer.addEventListener("updateend", () => { keepLive(t, mse); pump(mse); });
      pump(mse);
    });
    if (video.requestVideoFrameCallback) {
      let presented = 0;
      const drawn = (now, meta) => {
        if (t.mse !== mse) return;
        const at = mse.times.get(Math.round(meta.mediaTime * 1000));
        // Frames presented since the last callback (it may skip some).
        const more = Math.max(1, meta.presentedFrames - presented);
        presented = meta.presentedFrames;
        drew(t, at ? at.seq : null, at ? at.captured : mse.origin + meta.mediaTime * 1000, more);
        video.requestVideoFrameCallback(drawn);
      };
      video.requestVideoFrameCallback(drawn);
    }
    t.mse = mse;
    return mse;
  }

  function pump(mse) {
    if (!mse.buffer || mse.buffer.updating || !mse.queue.length) return;
    // What came while the last append ran goes in one append: a page short
    // of CPU catches up in one step, not one task per frame.
    let bytes = mse.queue[0];
    if (mse.queue.length > 1) {
      bytes = new Uint8Array(mse.queue.reduce((n, b) => n + b.length, 0));
      let at = 0;
      for (const b of mse.queue) { bytes.set(b, at); at += b.length; }
    }
    const taken = mse.queue.length;
    try {
      mse.buffer.appendBuffer(bytes);
      mse.queue.splice(0, taken);
    } catch (err) {
      // QuotaExceededError: what was played goes, the frame waits.
      const b = mse.buffer.buffered;
      if (b.length && mse.video.currentTime - b.start(0) > 1) mse.buffer.remove(b.start(0), mse.video.currentTime - 1);
    }
  }

  // Keeps the video at the newest frames and the buffer short.
  function keepLive(t, mse) {
    const video = mse.video;
    const b = mse.buffer.buffered;
    if (!b.length) return;
    const start = b.start(b.length - 1);
    const end = b.end(b.length - 1);
    const now = video.currentTime;
    const lag = end - now;
    // The range the video is in, or the first after it (a gap the server
    // left when it skipped to a keyframe: stepped over, not waited in).
    let next = 0;
    while (next < b.length && b.end(next) <= now) next++;
    if (lag > LAG_JUMP) {
      const to = Math.max(start, end - 0.05);
      // The frames stepped over to the live edge came but are not shown.
      let skipped = 0;
      for (const ms of mse.times.keys()) if (ms > now * 1000 && ms < to * 1000) skipped++;
      if (skipped) t.el.dataset.superseded = t.superseded += skipped;
      video.currentTime = to;
    } else if (next < b.length && now < b.start(next)) {
      video.currentTime = b.start(next);
    } else {
      video.playbackRate = lag > LAG_FAST ? 1.25 : 1;
    }
    if (video.paused) video.play().catch(() => {});
    if (!mse.buffer.updating && video.currentTime - b.start(0) > 20) {
      mse.buffer.remove(b.start(0), video.currentTime - 10);
    }
  }

  // One H.264 frame in MP4 (an init segment before it when the stream is
  // new): appended in order.
  function play(t, seq, captured, mp4) {
    const parts = boxes(mp4);
    const init = parts.length && parts[0][0] === "ftyp";
    const moof = parts.find((p) => p[0] === "moof");
    const time = moof ? decodeTime(mp4.subarray(moof[1], moof[2])) : null;
    if (time === null) return;
    let mse = t.mse;
    if (init) {
      const codec = codecOf(mp4);
      if (!codec) return;
      if (!mse || mse.codec !== codec || time <= mse.last) mse = openVideo(t, codec);
    }
    if (!mse) return; // a fragment without its init segment: wait for one
    mse.last = time;
    mse.origin = captured - time * 1000;
    mse.times.set(Math.round(time * 1000), { seq, captured });
    if (mse.times.size > 600) mse.times.delete(mse.times.keys().next().value);
    // The bytes are copied: the message's buffer is the socket's.
    mse.queue.push(mp4.slice());
    if (mse.queue.length > 300) mse.queue.splice(0, mse.queue.length - 300);
    pump(mse);
  }

  // A picture is on screen: the tile's counters.
  function drew(t, seq, captured, frames = 1) {
    const now = performance.now();
    t.frames += frames;
    t.captured = captured;
    t.drawn.push(now);
    while (t.drawn.length && t.drawn[0] < now - 2000) t.drawn.shift();
    t.el.dataset.frames = t.frames;
    if (seq !== null) t.el.dataset.seq = seq;
    t.el.dataset.ageMs = Math.round(Date.now() - captured);
    t.el.dataset.capturedMs = Math.round(captured);
    delete t.el.dataset.error;
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
