//! Who may use the dashboard. With `[[user]]` entries in the viewer's
//! config file every page and API asks for a login: a browser gets the
//! login page and then a session cookie (HttpOnly, SameSite=Strict, Secure
//! under TLS); curl and scripts send HTTP Basic. Without users the
//! dashboard is open, as on a workstation's loopback. A wrong password
//! or a cookie of no session, whatever the scheme, waits in its address's
//! turn and is logged (`shared::auth_throttle`).
//!
//! Whatever the users, a write (any method but GET and HEAD) from another
//! site's page is refused: its `Origin` must be the dashboard's own (or
//! absent, as from curl), so a page on the internet cannot make a browser
//! on the LAN start recordings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use shared::auth_throttle::{Attempt, AuthThrottle};

use super::{error, Dashboard};
use crate::config::User;
use crate::security::passwd;

/// The session cookie's name.
pub const COOKIE: &str = "camfleet_session";
/// A login lasts this long.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions kept at most; the oldest goes first.
pub const MAX_SESSIONS: usize = 1024;

/// The users, the open sessions and whether the dashboard is on TLS.
#[derive(Debug, Default)]
pub struct Access {
    users: Vec<User>,
    sessions: Mutex<HashMap<String, Session>>,
    pub tls: bool,
    /// What each failed password or cookie costs its address.
    throttle: AuthThrottle,
}

#[derive(Debug)]
struct Session {
    user: String,
    expires: Instant,
}

impl Access {
    pub fn new(users: Vec<User>, tls: bool) -> Self {
        Access {
            users,
            sessions: Mutex::default(),
            tls,
            throttle: AuthThrottle::default(),
        }
    }

    /// No users: everything is open.
    pub fn is_open(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `name` and `password` are a user's. An unknown name costs
    /// the same hashing as a known one.
    fn check(&self, name: &str, password: &str) -> bool {
        match self.users.iter().find(|u| u.name == name) {
            Some(user) => passwd::verify(password, &user.password_hash),
            None => {
                static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let dummy = DUMMY.get_or_init(|| passwd::hash("camfleet"));
                let _ = passwd::verify(password, dummy);
                false
            }
        }
    }

    fn open_session(&self, user: &str) -> String {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random numbers");
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let mut sessions = self.sessions.lock().unwrap();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(t, _)| t.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                expires: now + SESSION_LIFETIME,
            },
        );
        token
    }

    fn session_user(&self, token: &str) -> Option<String> {
        let sessions = self.sessions.lock().unwrap();
        sessions
            .get(token)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.user.clone())
    }

    fn close_session(&self, token: &str) {
        self.sessions.lock().unwrap().remove(token);
    }

    fn cookie(&self, token: &str, max_age: u64) -> HeaderValue {
        let secure = if self.tls { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("a cookie of plain characters")
    }

    /// The user a request speaks for: its session cookie or HTTP Basic.
    /// A password or cookie that does not match is a failure: it waits in
    /// its address's turn ([`AuthThrottle`]) and is logged, whatever the
    /// scheme.
    async fn authenticate(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
        let token = session_token(headers);
        if token
            .as_deref()
            .and_then(|t| self.session_user(t))
            .is_some()
        {
            return true;
        }
        let (scheme, name, password) = match basic(headers) {
            Some((name, password)) => ("HTTP Basic", name, Some(password)),
            None if token.is_some() => ("session cookie", "(no session)".to_owned(), None),
            None => return false,
        };
        let check = || {
            password
                .as_deref()
                .is_some_and(|password| tokio::task::block_in_place(|| self.check(&name, password)))
        };
        let attempt = self.throttle.attempt(peer.map(|p| p.ip()), check).await;
        log_failure(scheme, &name, peer, attempt);
        attempt == Attempt::Passed
    }
}

/// One line per failed authentication: the scheme, the name, the peer;
/// never the password.
fn log_failure(scheme: &str, name: &str, peer: Option<SocketAddr>, attempt: Attempt) {
    if let Some(text) = attempt.failure_text(peer) {
        tracing::warn!("dashboard: failed login ({scheme}) as {name:?} {text}");
    }
}

/// The session cookie's value, if the request has one.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

/// `Authorization: Basic` as name and password.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// Every request passes here: cross-origin writes are refused; with
/// users, a request without a login gets the login page (a browser) or
/// 401 (anything else).
pub async fn guard(State(d): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    let access = &d.access;
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe && !fanout::http::same_origin(request.headers(), access.tls) {
        tracing::warn!(
            "dashboard: refused a cross-origin {} {} (Origin {:?})",
            request.method(),
            request.uri().path(),
            request.headers().get(header::ORIGIN)
        );
        return error(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    if access.is_open() || request.uri().path() == "/login" {
        return next.run(request).await;
    }
    let peer = (request.extensions())
        .get::<axum::extract::ConnectInfo<fanout::http::Peer>>()
        .map(|c| c.0.addr);
    if access.authenticate(request.headers(), peer).await {
        return next.run(request).await;
    }
    let wants_page = safe
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_page {
        let here = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let to = format!("/login?next={}", percent_encode(here));
        return Redirect::to(&to).into_response();
    }
    let mut refused = error(StatusCode::UNAUTHORIZED, "log in first (or HTTP Basic)");
    refused.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"camfleet\", charset=\"UTF-8\""),
    );
    refused
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Where to go after logging in: a path of this site only.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/",
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginPage {
    next: Option<String>,
    failed: Option<String>,
}

/// `GET /login`: the form.
pub async fn page(Query(q): Query<LoginPage>) -> Html<String> {
    let next = html_escape(local_path(q.next.as_deref()));
    let failed = if q.failed.is_some() {
        r#"<p class="bad">Wrong user name or password.</p>"#
    } else {
        ""
    };
    Html(
        include_str!("login.html")
            .replace("{{next}}", &next)
            .replace("{{failed}}", failed),
    )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("name", &self.name)
            .finish()
    }
}

/// `POST /login`: a session cookie and on to the page asked for, or the
/// form again (after a pause) with a word of failure.
pub async fn login(
    State(d): State<Arc<Dashboard>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<fanout::http::Peer>,
    Form(form): Form<LoginForm>,
) -> Response {
    let access = &d.access;
    let next = local_path(form.next.as_deref()).to_owned();
    let check = || tokio::task::block_in_place(|| access.check(&form.name, &form.password));
    let attempt = access.throttle.attempt(Some(peer.addr.ip()), check).await;
    log_failure("form", &form.name, Some(peer.addr), attempt);
    if attempt != Attempt::Passed {
        let to = format!("/login?failed=1&next={}", percent_encode(&next));
        return Redirect::to(&to).into_response();
    }
    tracing::info!("dashboard: {} logged in", form.name);
    let token = access.open_session(&form.name);
    let mut reply = Redirect::to(&next).into_response();
    reply.headers_mut().insert(
        header::SET_COOKIE,
        access.cookie(&token, SESSION_LIFETIME.as_secs()),
    );
    reply
}

/// `POST /logout`: the session ends, back to the login page.
pub async fn logout(State(d): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        d.access.close_session(&token);
    }
    let mut reply = Redirect::to("/login").into_response();
    reply
        .headers_mut()
        .insert(header::SET_COOKIE, d.access.cookie("", 0));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn sessions_and_basic_name_their_user() {
        let access = Access::new(
            vec![User {
                name: "alice".into(),
                password_hash: passwd::hash("s3cret"),
            }],
            true,
        );
        assert!(access.check("alice", "s3cret"));
        assert!(!access.check("alice", "S3cret"));
        assert!(!access.check("bob", "s3cret"));
        let token = access.open_session("alice");
        let cookie = format!("theme=dark; {COOKIE}={token}");
        let h = headers(&[("cookie", &cookie)]);
        assert_eq!(session_token(&h).as_deref(), Some(token.as_str()));
        assert_eq!(access.session_user(&token).as_deref(), Some("alice"));
        access.close_session(&token);
        assert_eq!(access.session_user(&token), None);
        let set = access.cookie("x", 60);
        let set = set.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
        let auth = format!("Basic {}", STANDARD.encode("alice:s3cret"));
        assert_eq!(
            basic(&headers(&[("authorization", &auth)])),
            Some(("alice".into(), "s3cret".into()))
        );
    }

    #[test]
    fn after_login_only_local_paths() {
        assert_eq!(local_path(Some("/sessions/x#t=1")), "/sessions/x#t=1");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", ""] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn sessions_are_bounded() {
        let access = Access::new(Vec::new(), false);
        for _ in 0..MAX_SESSIONS + 10 {
            access.open_session("a");
        }
        assert_eq!(access.sessions.lock().unwrap().len(), MAX_SESSIONS);
    }
}
