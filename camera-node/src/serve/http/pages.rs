//! The index page and the Prometheus metrics, both rendered from the
//! node's live state.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use shared::messages::PushStatus;

use super::Shared;
use fanout::{HubFigures, Protocol};

/// Every camera live (all over one WebSocket, `fanout::live`), with its
/// links; plain HTML that reads on a phone.
pub async fn index(State(s): Shared) -> Html<String> {
    let info = s.node.info();
    let mut tiles = String::new();
    for cam in &info.cameras {
        let id = escape(&cam.id);
        let state = if cam.enabled { "" } else { " (stopped)" };
        let rtsp = cam.rtsp.as_deref().map(escape).unwrap_or_default();
        if cam.codec == "h264" {
            // Live H.264 in a browser is the viewer's (fMP4 over its live
            // socket); here a picture decoded each second.
            let _ = write!(
                tiles,
                r#"<figure data-snapshot="{id}"><img src="cameras/{id}/snapshot.jpg" width="{w}" height="{h}" alt="{id}" style="max-width:100%;height:auto">
<figcaption><b>{id}</b>{state} {w}x{h} @ {fps} fps H.264 {codec} · a snapshot each second · <a href="cameras/{id}/snapshot.jpg">snapshot</a> · <code>{rtsp}</code></figcaption></figure>
"#,
                w = cam.width,
                h = cam.height,
                fps = cam.fps,
                codec = escape(cam.codec_string.as_deref().unwrap_or("")),
            );
            continue;
        }
        let _ = write!(
            tiles,
            r#"<figure data-camera="{node}/{id}"><canvas width="{w}" height="{h}" title="{id} live: click to enlarge, Escape to go back"></canvas><span class="live-info"></span>
<figcaption><b>{id}</b>{state} {w}x{h} @ {fps} fps · <a href="cameras/{id}/snapshot.jpg">snapshot</a> · <a href="cameras/{id}/stream.mjpg">MJPEG</a> · <code>{rtsp}</code></figcaption></figure>
"#,
            w = cam.width,
            h = cam.height,
            fps = cam.fps,
            node = escape(&info.node_id),
        );
    }
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>camfleet {node}</title>
<link rel="icon" href="data:,">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; background: #111; color: #eee; }}
a {{ color: #8cf; }} code {{ font-size: .85em; }}
main {{ display: grid; gap: .6rem; }}
figure {{ margin: 0; }}
</style></head>
<body><h1>{node}</h1>
<main data-live-grid>
{tiles}</main>
{live}
<section id="relay"></section>
<script>
// The relay tree of each camera, live: who takes it from whom.
function tree(plan) {{
  const kids = {{}};
  for (const [id, e] of Object.entries(plan.viewers)) (kids[e.parent || ""] ||= []).push(id);
  const list = (parent) => {{
    const ul = document.createElement("ul");
    for (const id of (kids[parent] || []).sort()) {{
      const li = document.createElement("li");
      li.textContent = id + (plan.viewers[id].backup ? " (backup " + plan.viewers[id].backup + ")" : "");
      li.append(list(id));
      ul.append(li);
    }}
    return ul;
  }};
  return list("");
}}
async function relay() {{
  try {{
    const plans = await (await fetch("api/v1/relay")).json();
    const box = document.getElementById("relay");
    box.replaceChildren();
    for (const plan of Object.values(plans)) {{
      const h = document.createElement("h2");
      h.textContent = plan.camera + ": relay " + plan.topology + " of " + plan.max_member + ", epoch " + plan.epoch;
      const root = document.createElement("p");
      root.textContent = Object.keys(plan.viewers).length ? "node" : "node (no viewer relays it)";
      box.append(h, root, tree(plan));
    }}
  }} catch (e) {{}}
}}
relay(); setInterval(relay, 2000);
// H.264 cameras: their newest picture once a second, the next asked for
// only when the last has come.
for (const img of document.querySelectorAll("[data-snapshot] img")) {{
  const base = img.getAttribute("src");
  let busy = false;
  img.addEventListener("load", () => {{ busy = false; }});
  img.addEventListener("error", () => {{ busy = false; }});
  setInterval(() => {{ if (!busy && !document.hidden) {{ busy = true; img.src = base + "?t=" + Date.now(); }} }}, 1000);
}}
</script>
<p><a href="api/v1/status">status</a> · <a href="api/v1/relay">relay plans</a> · <a href="metrics">metrics</a> · <a href="healthz">health</a> · camfleet {version}</p>
</body></html>
"#,
        node = escape(&info.node_id),
        version = escape(&info.version),
        live = fanout::live::script_tag("api/v1/live"),
    ))
}

/// Prometheus text exposition format 0.0.4.
pub async fn metrics(State(s): Shared) -> Response {
    let cameras: Vec<Sample> = s
        .node
        .hubs()
        .iter()
        .map(|h| Sample {
            camera: h.camera_id().to_owned(),
            figures: h.snapshot(),
            healthy: s.node.health(h).is_fine(),
            enabled: h.is_enabled(),
        })
        .collect();
    let mut out = String::new();
    let mut per_camera = |name: &str, kind: &str, help: &str, value: fn(&Sample) -> String| {
        header(&mut out, name, kind, help);
        for c in &cameras {
            let _ = writeln!(
                out,
                "camfleet_{name}{{camera=\"{}\"}} {}",
                c.camera,
                value(c)
            );
        }
    };
    per_camera(
        "frames_total",
        "counter",
        "Frames captured since the node started.",
        |c| c.figures.frames.to_string(),
    );
    per_camera(
        "bytes_total",
        "counter",
        "JPEG bytes captured since the node started.",
        |c| c.figures.bytes.to_string(),
    );
    per_camera(
        "camera_restarts_total",
        "counter",
        "Times the camera program was restarted.",
        |c| c.figures.restarts.to_string(),
    );
    per_camera(
        "camera_enabled",
        "gauge",
        "1 while capture is on, 0 when stopped through the API.",
        |c| u8::from(c.enabled).to_string(),
    );
    per_camera(
        "camera_healthy",
        "gauge",
        "1 while the camera delivers frames within its watchdog (or is stopped on purpose).",
        |c| u8::from(c.healthy).to_string(),
    );
    per_camera(
        "last_frame_age_seconds",
        "gauge",
        "Seconds since the camera's last frame (NaN before the first).",
        |c| {
            c.figures.last_frame_at.map_or("NaN".to_owned(), |t| {
                format!("{:.3}", t.elapsed().as_secs_f64())
            })
        },
    );
    let mut per_protocol =
        |name: &str, kind: &str, help: &str, value: fn(&HubFigures, usize) -> String| {
            header(&mut out, name, kind, help);
            for c in &cameras {
                for p in Protocol::ALL {
                    let _ = writeln!(
                        out,
                        "camfleet_{name}{{camera=\"{}\",protocol=\"{}\"}} {}",
                        c.camera,
                        p.name(),
                        value(&c.figures, p as usize)
                    );
                }
            }
        };
    per_protocol("viewers", "gauge", "Viewers connected now.", |f, i| {
        f.viewers_by[i].to_string()
    });
    per_protocol(
        "frames_dropped_total",
        "counter",
        "Frames viewers skipped because they were slower than the camera.",
        |f, i| f.dropped_by[i].to_string(),
    );
    push_metrics(&mut out, &s.node.cameras.list());
    if let Some(h) = s.node.machine.lock().expect("health lock").as_ref() {
        health_metrics(&mut out, h);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The machine's figures, each where the sample has it.
fn health_metrics(out: &mut String, h: &shared::messages::NodeHealth) {
    let flag = |b: Option<bool>| b.map(|b| f64::from(u8::from(b)));
    let wifi = h.wifi.as_ref();
    let gauges: [(&str, &str, Option<f64>); 16] = [
        (
            "node_under_voltage",
            "1 while the Pi's supply is under-volted.",
            flag(h.under_voltage),
        ),
        (
            "node_under_voltage_since_boot",
            "1 when the supply was under-volted since boot.",
            flag(h.under_voltage_since_boot),
        ),
        (
            "node_throttled",
            "1 while the firmware throttles the CPU.",
            flag(h.throttled),
        ),
        (
            "node_throttled_since_boot",
            "1 when the CPU was throttled since boot.",
            flag(h.throttled_since_boot),
        ),
        (
            "node_freq_capped",
            "1 while the ARM frequency is capped.",
            flag(h.freq_capped),
        ),
        (
            "node_freq_capped_since_boot",
            "1 when the ARM frequency was capped since boot.",
            flag(h.freq_capped_since_boot),
        ),
        (
            "node_soc_temperature_celsius",
            "SoC temperature.",
            h.soc_temp_c,
        ),
        (
            "node_cpu_percent",
            "Busy share of all cores over the last stats interval.",
            h.cpu_percent,
        ),
        ("node_load1", "One-minute load average.", h.load_1m),
        (
            "node_memory_total_bytes",
            "Memory in all.",
            h.mem_total_mb.map(|m| (m * 1024 * 1024) as f64),
        ),
        (
            "node_memory_available_bytes",
            "Memory available.",
            h.mem_available_mb.map(|m| (m * 1024 * 1024) as f64),
        ),
        (
            "node_wifi_signal_dbm",
            "Wi-Fi signal level.",
            wifi.and_then(|w| w.signal_dbm),
        ),
        (
            "node_wifi_bitrate_mbit_s",
            "Wi-Fi transmit bit rate.",
            wifi.and_then(|w| w.bitrate_mbit_s),
        ),
        (
            "node_wifi_retries",
            "Wi-Fi packets given up after retries since the interface came up.",
            wifi.and_then(|w| w.retries).map(|r| r as f64),
        ),
        (
            "node_state_free_ratio",
            "Free share of the state directory's file system.",
            h.state_free_percent.map(|p| p / 100.0),
        ),
        (
            "node_log_free_ratio",
            "Free share of the logs' file system.",
            h.log_free_percent.map(|p| p / 100.0),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "camfleet_{name} {value}");
        }
    }
    header(
        out,
        "node_warnings",
        "gauge",
        "Health figures past their line now.",
    );
    let _ = writeln!(out, "camfleet_node_warnings {}", h.warnings.len());
}

/// Per push: frames, skips, connections, and whether it is recording now.
fn push_metrics(out: &mut String, cameras: &[std::sync::Arc<crate::cameras::Entry>]) {
    use crate::push::PushView;
    let pushes: Vec<(String, PushView)> = cameras
        .iter()
        .flat_map(|e| e.pushes().into_iter().map(|p| (e.id.clone(), p.view())))
        .collect();
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&PushView) -> u64,
    );
    let series: [Series; 4] = [
        (
            "push_frames_total",
            "counter",
            "Frames sent to the RTSP server the camera is pushed to.",
            |p| p.frames_sent,
        ),
        (
            "push_frames_skipped_total",
            "counter",
            "Frames the push skipped because the server took them slower than the camera.",
            |p| p.frames_skipped,
        ),
        (
            "push_connects_total",
            "counter",
            "Times the push reached RECORD on the server.",
            |p| p.connects,
        ),
        (
            "push_recording",
            "gauge",
            "1 while the push is recording on the server.",
            |p| u64::from(p.state == PushStatus::Recording),
        ),
    ];
    for (name, kind, help, value) in series {
        header(out, name, kind, help);
        for (camera, p) in &pushes {
            let _ = writeln!(
                out,
                "camfleet_{name}{{camera=\"{camera}\",push=\"{}\",url=\"{}\"}} {}",
                p.id,
                p.url.replace('\\', "\\\\").replace('"', "\\\""),
                value(p)
            );
        }
    }
}

struct Sample {
    camera: String,
    figures: HubFigures,
    healthy: bool,
    enabled: bool,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP camfleet_{name} {help}\n# TYPE camfleet_{name} {kind}"
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
