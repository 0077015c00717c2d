//! Headless Chromium driven through chromedriver's WebDriver API (plain
//! HTTP and JSON, with curl), for the dashboard's pages.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
/// The WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    session: String,
    base: String,
}

impl Browser {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With more Chromium flags (`--ignore-certificate-errors` for a test
    /// certificate).
    pub fn start_with(flags: &[&str]) -> Self {
        require("chromium", "chromium");
        require("chromedriver", "chromium-driver");
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver ready", SECS(20), || {
            let status = curl(&[&format!("{base}/status")]);
            (status.status == 200 && status.json()["value"]["ready"] == true).then_some(())
        });
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ];
        args.extend_from_slice(flags);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args
            }
        }}});
        let mut browser = Browser {
            driver,
            session: String::new(),
            base,
        };
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|why| panic!("{method} {path}: {why}"))
    }

    /// The same, with WebDriver's error as the `Err` rather than a panic.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| b.to_string());
        let mut args = vec!["-X", method, "-H", "Content-Type: application/json"];
        if let Some(body) = &body {
            args.extend(["-d", body.as_str()]);
        }
        args.push(&url);
        let reply = curl(&args);
        if reply.status != 200 {
            return Err(format!("{}: {}", reply.status, reply.text()));
        }
        Ok(reply.json()["value"].clone())
    }

    pub fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn go(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn run(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// `script`'s answers, asked every `every` for `span` (at least once).
    /// A sampling rate, not a wait for anything: asked back to back (a
    /// WebDriver round trip each), the samples take a core of a 2-core
    /// machine from the Chromium they measure.
    pub fn sample(&self, script: &str, every: Duration, span: Duration) -> Vec<Value> {
        let started = Instant::now();
        let mut next = started;
        let mut out = Vec::new();
        loop {
            next += every;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            out.push(self.run(script));
            if started.elapsed() >= span {
                return out;
            }
        }
    }

    /// Opens a new tab, makes it the current one and loads `url` in it;
    /// how long the load took (WebDriver waits for the page to load).
    pub fn new_tab(&self, url: &str) -> Duration {
        let tab = self.session_call("POST", "/window/new", Some(json!({"type": "tab"})));
        let handle = tab["handle"].as_str().expect("a window handle").to_owned();
        self.session_call("POST", "/window", Some(json!({ "handle": handle })));
        let started = Instant::now();
        self.go(url);
        started.elapsed()
    }

    /// Throttles the session's network (DevTools network emulation, as
    /// DevTools' own "Slow 3G" does): `bytes_per_s` each way, `latency_ms`
    /// more per request.
    pub fn throttle(&self, bytes_per_s: u64, latency_ms: u64) {
        let conditions = json!({"network_conditions": {
            "offline": false,
            "latency": latency_ms,
            "download_throughput": bytes_per_s,
            "upload_throughput": bytes_per_s
        }});
        self.session_call("POST", "/chromium/network_conditions", Some(conditions));
    }

    /// What each `[data-camera]` tile of the page has drawn
    /// (`data-frames`), by camera.
    pub fn tile_frames(&self) -> std::collections::BTreeMap<String, u64> {
        (self.tile_numbers(&["frames"]).into_iter())
            .map(|(camera, n)| (camera, n[0]))
            .collect()
    }

    /// Numeric `data-` attributes of each `[data-camera]` tile (their
    /// dataset names: `frames`, `seq`, `ageMs`), 0 where absent, by camera.
    pub fn tile_numbers(&self, fields: &[&str]) -> std::collections::BTreeMap<String, Vec<u64>> {
        let script = format!(
            "const fields = {}; return Object.fromEntries([...document.querySelectorAll('[data-camera]')]\
             .map(t => [t.dataset.camera, fields.map(f => Number(t.dataset[f] || 0))]))",
            serde_json::to_string(fields).unwrap()
        );
        serde_json::from_value(self.run(&script)).expect("tiles by camera")
    }

    pub fn element(&self, css: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT].as_str().expect("an element").to_owned()
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the element `css` selects. One the page replaced between
    /// finding and clicking it (a list drawn again) is found again.
    pub fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let id = self.element(css);
            let path = format!("/session/{}/element/{id}/click", self.session);
            match self.try_call("POST", &path, Some(json!({}))) {
                Ok(_) => return,
                Err(why) if why.contains("stale element") && Instant::now() < deadline => {}
                Err(why) => panic!("click {css}: {why}"),
            }
        }
    }

    /// Presses and releases one key (WebDriver's code for a special key:
    /// `"\u{E00C}"` is Escape).
    pub fn press(&self, key: &str) {
        let actions = json!({"actions": [{
            "type": "key", "id": "keyboard",
            "actions": [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]
        }]});
        self.session_call("POST", "/actions", Some(actions));
    }

    /// Clicks the element `css` selects, `dx` pixels right of its centre
    /// (WebDriver actions: a real pointer, as a user clicks).
    pub fn click_at(&self, css: &str, dx: i64) {
        let id = self.element(css);
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": {ELEMENT: id}, "x": dx, "y": 0},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0}
            ]
        }]});
        self.session_call("POST", "/actions", Some(actions));
    }

    pub fn element_png(&self, css: &str) -> Vec<u8> {
        let id = self.element(css);
        let data = self.session_call("GET", &format!("/element/{id}/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64"))
            .unwrap()
    }

    pub fn page_png(&self) -> Vec<u8> {
        let data = self.session_call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64"))
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = curl(&[
                "-X",
                "DELETE",
                &format!("{}/session/{}", self.base, self.session),
            ]);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
