//! A node serving HTTPS (`--tls-cert/--tls-key`, a certificate from
//! `viewer broker-config --cert-for`): its page, MJPEG and API answer over
//! TLS to a client trusting the fleet's CA, its NodeInfo says `https://`,
//! a plain request is refused with a line in its log, and the viewer (with
//! the CA as `--ca-file`) still measures the node's clock and lists its
//! cameras on the Sources page.

use std::process::Command;
use std::time::Duration;

use testkit::viewers::*;
use testkit::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn a_node_over_https_is_watched_and_managed_through_the_fleet_ca() {
    let keys = TempDir::new("node-tls");
    let made = Command::new(env!("CARGO_BIN_EXE_viewer"))
        .args(["broker-config", "--nodes", "pi-tls", "--host", "127.0.0.1"])
        .args(["--cert-for", "pi-tls=127.0.0.1,localhost", "--out"])
        .arg(&keys.0)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    assert!(String::from_utf8_lossy(&made.stdout).contains("HTTPS for pi-tls"));
    let (ca, cert, key) = (
        keys.path("ca.crt").display().to_string(),
        keys.path("certs/pi-tls.crt").display().to_string(),
        keys.path("certs/pi-tls.key").display().to_string(),
    );

    let broker = Broker::start();
    let url = broker.url();
    let node = Node::start(
        &[
            camera_args(&url, "pi-tls", "test", "160x120"),
            vec!["--tls-cert", &cert, "--tls-key", &key],
        ]
        .concat(),
    );
    let info = broker.node_info("pi-tls");
    let http = info.cameras[0].http.clone().expect("an HTTP URL");
    assert!(http.starts_with("https://127.0.0.1:"), "{http}");
    let base = http.split("/cameras/").next().unwrap().to_owned();

    let status = curl(&["--cacert", &ca, &format!("{base}/api/v1/status")]);
    assert_eq!(status.status, 200, "{}", status.text());
    let snapshot = curl(&[
        "--cacert",
        &ca,
        &format!("{base}/cameras/cam0/snapshot.jpg"),
    ]);
    assert_eq!(snapshot.status, 200);
    assert_eq!(jpeg_size(&snapshot.body), (160, 120));
    // Not trusting the fleet's CA: curl refuses the certificate.
    let untrusted = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("{base}/api/v1/status")])
        .status()
        .unwrap();
    assert_eq!(
        untrusted.code(),
        Some(60),
        "curl: peer certificate not trusted"
    );
    // Plain HTTP to the HTTPS port: refused, and the node says why.
    let plain = base.replace("https://", "http://");
    let refused = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("{plain}/api/v1/status")])
        .output()
        .unwrap();
    assert!(!refused.status.success() || refused.stdout.is_empty());
    node.wait_log("TLS handshake with", SECS(10));

    // The viewer trusts the fleet's CA: the node's clock is measured over
    // HTTPS and its cameras listed on the Sources page.
    let recordings = TempDir::new("recordings");
    let viewer = Viewer::start(&broker, &recordings.0, &["--ca-file", &ca]);
    let dashboard = viewer.dashboard();
    viewer.wait_log("camera{camera=pi-tls/cam0}: connected", SECS(20));
    wait_for("the node's clock measured over HTTPS", SECS(20), || {
        let state = curl(&[&format!("http://{dashboard}/api/state")]).json();
        let clock = &state["cameras"][0]["clock"];
        clock["rtt_ms"].is_number().then_some(())
    });
    let sources = curl(&[&format!("http://{dashboard}/api/sources")]).json();
    let node_entry = &sources["nodes"][0];
    assert_eq!(node_entry["node"], "pi-tls", "{sources}");
    assert_eq!(node_entry["cameras"][0]["id"], "cam0", "{sources}");
    assert!(!viewer.log().contains("cannot measure the node's clock"));
}
