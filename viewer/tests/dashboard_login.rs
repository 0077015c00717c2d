//! A dashboard with a user, over HTTPS: without a login every page and API
//! answers a redirect to the login page (a browser) or 401 (anything
//! else); curl gets in with HTTP Basic, a browser with the session cookie
//! the login form sets; a write from another site is refused; a dashboard
//! on the network without users warns at start.

use std::time::{Duration, Instant};

use testkit::demo::{Demo, USER};
use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// curl on the locked dashboard with only `args` (the CA, no user).
fn bare(demo: &Demo, args: &[&str], path: &str) -> HttpReply {
    let url = format!("{}{path}", demo.dashboard);
    let ca = &demo.curl_args[1];
    let mut all = vec!["--cacert", ca.as_str()];
    all.extend_from_slice(args);
    all.push(&url);
    curl(&all)
}

/// A response header's value, from `curl -D -` output's head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

#[test]
fn every_page_wants_a_login_and_writes_from_other_sites_are_refused() {
    let demo = Demo::start_secure("1");
    demo.wait_fleet(1);
    let camera = "/cameras/demo-1/cam0/stream.mjpg";
    let paths = [
        "/",
        "/sources",
        "/sessions/20261127T000000Z",
        "/api/state",
        "/events",
        "/metrics",
        camera,
        "/recordings/20261127T000000Z/demo-1/cam0/x.mp4",
        "/api/sessions/20261127T000000Z/timeline",
        "/api/sessions/20261127T000000Z/export.zip",
        "/api/exports/1",
        "/api/sources/nodes",
    ];
    for path in paths {
        let api = bare(&demo, &["-D", "-"], path);
        assert_eq!(api.status, 401, "{path}: {}", api.text());
        assert!(
            header(&api.text(), "www-authenticate").is_some_and(|v| v.starts_with("Basic")),
            "{path}: {}",
            api.text()
        );
        let page = bare(&demo, &["-D", "-", "-H", "Accept: text/html"], path);
        assert_eq!(page.status, 303, "{path} for a browser");
        let to = header(&page.text(), "location").unwrap();
        assert!(to.starts_with("/login?next=/"), "{path}: {to}");
    }
    let write = bare(
        &demo,
        &["-X", "POST", "-d", r#"{"action":"start"}"#],
        "/api/rec",
    );
    assert_eq!(write.status, 401, "{}", write.text());
    let wrong = bare(&demo, &["-u", "alice:guess"], "/api/state");
    assert_eq!(wrong.status, 401);

    // curl with the user: in, downloads and all.
    assert_eq!(demo.curl("/api/state").status, 200);
    let snapshot = demo.curl("/metrics");
    assert!(
        snapshot.text().contains("camfleet_viewer"),
        "{}",
        snapshot.text()
    );

    // A browser's way: the form, a cookie, then the pages.
    let form = format!(
        "name={}&password={}&next=/sources",
        USER.0,
        USER.1.replace(' ', "+")
    );
    let login = bare(&demo, &["-D", "-", "-X", "POST", "--data", &form], "/login");
    assert_eq!(login.status, 303, "{}", login.text());
    let head = login.text();
    assert_eq!(header(&head, "location").as_deref(), Some("/sources"));
    let cookie = header(&head, "set-cookie").expect("a session cookie");
    for part in [
        "camfleet_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |extra: &[&str], path: &str| {
        let cookie_header = format!("Cookie: {session}");
        let mut args = vec!["-H", cookie_header.as_str()];
        args.extend_from_slice(extra);
        bare(&demo, &args, path)
    };
    assert_eq!(with_cookie(&[], "/api/state").status, 200);
    assert_eq!(with_cookie(&[], "/").status, 200);

    // A write from another site's page, cookie and all: refused, and
    // nothing recorded. The same from the dashboard's own page: done.
    let evil = with_cookie(
        &[
            "-X",
            "POST",
            "-H",
            "Origin: https://evil.example",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"action":"start"}"#,
        ],
        "/api/rec",
    );
    assert_eq!(evil.status, 403, "{}", evil.text());
    assert!(demo.log().contains("refused a cross-origin POST /api/rec"));
    let own_origin = format!("Origin: {}", demo.dashboard);
    let own = with_cookie(
        &[
            "-X",
            "POST",
            "-H",
            &own_origin,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"action":"start"}"#,
        ],
        "/api/rec",
    );
    assert_eq!(own.status, 202, "{}", own.text());
    wait_for("recording", SECS(10), || {
        (demo.state()["recording"]["state"] == "recording").then_some(())
    });

    // A wrong password at the form: back to it, told so, no cookie.
    let failed = bare(
        &demo,
        &[
            "-D",
            "-",
            "-X",
            "POST",
            "--data",
            "name=alice&password=guess",
        ],
        "/login",
    );
    assert_eq!(failed.status, 303);
    assert!(header(&failed.text(), "set-cookie").is_none());
    assert!(header(&failed.text(), "location")
        .unwrap()
        .starts_with("/login?failed=1"));
    assert!(demo.log().contains("failed login (form) as \"alice\""));
    assert!(!demo.log().contains("guess"), "no password in the log");

    // Logging out ends the session.
    let out = with_cookie(&["-X", "POST", "-H", &own_origin], "/logout");
    assert_eq!(out.status, 303);
    assert_eq!(with_cookie(&[], "/api/state").status, 401);
}

#[test]
fn a_dashboard_on_the_network_without_users_warns_and_still_refuses_cross_site_writes() {
    let broker = Broker::start();
    let recordings = TempDir::new("recordings");
    let port = free_port();
    let viewer = Viewer::start(
        &broker,
        &recordings.0,
        &["--dashboard", &format!("0.0.0.0:{port}")],
    );
    viewer.wait_log("has no users: anyone on the network can watch", SECS(10));
    let url = format!("http://127.0.0.1:{port}/api/rec");
    let evil = curl(&[
        "-X",
        "POST",
        "-H",
        "Origin: http://evil.example",
        "-d",
        r#"{"action":"start"}"#,
        &url,
    ]);
    assert_eq!(evil.status, 403, "{}", evil.text());
    let state = curl(&[&format!("http://127.0.0.1:{port}/api/state")]);
    assert_eq!(state.status, 200, "open without users");
    assert!(state.json()["recording"].is_null() || state.json()["recording"]["state"] == "idle");
}

/// Every failed authentication, whatever the scheme, costs the failure
/// delay and one log line; parallel guesses from one address wait in line
/// (and cost more after ten), while a user at another address logs in at
/// once.
#[test]
fn failed_logins_cost_the_same_whatever_the_scheme_and_guessers_wait_in_line() {
    let demo = Demo::start_secure("1");
    wait_for("the dashboard", SECS(30), || {
        (bare(&demo, &[], "/api/state").status == 401).then_some(())
    });
    let timed = |args: &[&str], path: &str| {
        let asked = Instant::now();
        let reply = bare(&demo, args, path);
        (reply.status, asked.elapsed())
    };
    let failures = [
        (
            "HTTP Basic",
            timed(&["-u", "alice:guess-1"], "/api/state"),
            401,
        ),
        (
            "form",
            timed(
                &["-X", "POST", "--data", "name=alice&password=guess-2"],
                "/login",
            ),
            303,
        ),
        (
            "session cookie",
            timed(&["-H", "Cookie: camfleet_session=forged"], "/api/state"),
            401,
        ),
    ];
    for (scheme, (status, took), want) in failures {
        assert_eq!(status, want, "{scheme}");
        assert!(
            took >= SECS(1),
            "a failed {scheme} login answered in {took:?}"
        );
        let line = format!("failed login ({scheme}) as ");
        let lines = demo.log().matches(&line).count();
        assert_eq!(lines, 1, "one line for the failed {scheme} login");
    }
    assert!(!demo.log().contains("guess-"), "no password in the log");

    // Twenty guesses at once from 127.0.0.2; a user at 127.0.0.3.
    let started = Instant::now();
    let guesses: Vec<_> = (0..20)
        .map(|i| {
            let args = [
                "--interface".to_owned(),
                "127.0.0.2".to_owned(),
                "--max-time".to_owned(),
                "120".to_owned(),
                "-u".to_owned(),
                format!("alice:parallel-{i}"),
                "--cacert".to_owned(),
                demo.curl_args[1].clone(),
                format!("{}/api/state", demo.dashboard),
            ];
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                curl(&args).status
            })
        })
        .collect();
    wait_for("the guesses waiting in line", SECS(10), || {
        (demo.log().matches("from 127.0.0.2:").count() >= 2).then_some(())
    });
    let (status, took) = timed(
        &[
            "--interface",
            "127.0.0.3",
            "-u",
            &format!("{}:{}", USER.0, USER.1),
        ],
        "/api/state",
    );
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_millis(800),
        "the user at another address waited {took:?}"
    );
    for guess in guesses {
        assert_eq!(guess.join().unwrap(), 401);
    }
    let took = started.elapsed();
    eprintln!("20 parallel guesses from one address took {took:?}");
    assert!(
        took > SECS(20),
        "20 guesses from one address took {took:?}: not one delay after another"
    );
    assert_eq!(demo.log().matches("from 127.0.0.2:").count(), 20);
}
