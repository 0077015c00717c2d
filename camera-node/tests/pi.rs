//! On the Pi: the cross-built node under qemu, the .deb packages, the unit
//! files and the install script. scripts/build-pi.sh makes what is checked
//! here; each test runs it (once at a time, incremental) so nothing stale is
//! tested.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use testkit::*;

const AARCH64: &str = "aarch64-unknown-linux-gnu";
const ARMV7: &str = "armv7-unknown-linux-gnueabihf";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// dist/ after `scripts/build-pi.sh` (both targets, with .debs), run once
/// per test run: nextest runs each test in its own process, and a rebuild
/// under a running test would swap the files it is reading.
fn dist() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            require("flock", "util-linux");
            let run =
                std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| std::process::id().to_string());
            let stamp = repo().join(format!("dist/.built-{run}"));
            let lock = std::env::temp_dir().join("camfleet-build-pi.lock");
            let script = format!(
                "[ -e '{0}' ] || {{ bash scripts/build-pi.sh && touch '{0}'; }}",
                stamp.display()
            );
            let out = Command::new("flock")
                .arg(&lock)
                .args(["sh", "-c", &script])
                .current_dir(repo())
                .output()
                .expect("run scripts/build-pi.sh");
            assert!(
                out.status.success(),
                "scripts/build-pi.sh failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            repo().join("dist")
        })
        .clone()
}

fn qemu(program: &str, sysroot: &str) -> Command {
    require(program, "qemu-user");
    let mut cmd = Command::new(program);
    cmd.args(["-L", sysroot]);
    cmd
}

#[test]
fn the_aarch64_node_streams_and_announces_under_qemu() {
    let binary = dist().join(format!("camera-node-{AARCH64}"));
    let broker = Broker::start();
    let url = broker.url();
    let mut cmd = qemu("qemu-aarch64", "/usr/aarch64-linux-gnu");
    cmd.arg(&binary);
    let args = [vec!["--broker", &url, "--node-id", "pi-arm64"], words("--source test --width 160 --height 120 --fps 10 --tcp-port 0 --advertise-host 127.0.0.1")].concat();
    let node = Node::start_command(cmd, &args, &[]);
    let info = broker.node_info("pi-arm64");
    let port = node.tcp_port("cam0");
    assert_eq!(info.cameras[0].tcp, format!("127.0.0.1:{port}"));
    // Emulation is slow, and other tests may be building beside it.
    let mut client = FrameClient::connect(port).patient(Duration::from_secs(60));
    let first = client.next();
    for _ in 0..5 {
        assert_eq!(jpeg_size(&client.next().jpeg), (160, 120));
    }
    assert!(client.next().seq > first.seq);
}

#[test]
fn the_armv7_node_runs_under_qemu_arm() {
    let binary = dist().join(format!("camera-node-{ARMV7}"));
    let version = run_ok(
        qemu("qemu-arm", "/usr/arm-linux-gnueabihf")
            .arg(&binary)
            .arg("--version"),
    );
    assert_eq!(
        version.trim(),
        format!("camera-node {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_debs_hold_binary_unit_and_conffile_for_their_arch() {
    let dist = dist();
    for arch in ["arm64", "armhf"] {
        let deb = dist.join(format!(
            "camfleet-node_{}-1_{arch}.deb",
            env!("CARGO_PKG_VERSION")
        ));
        // dpkg-deb --info/--contents DEB [CONTROL FILE]
        let dpkg = |option: &str, member: Option<&str>| {
            run_ok(Command::new("dpkg-deb").arg(option).arg(&deb).args(member))
        };
        let info = dpkg("--info", None);
        assert!(info.contains(&format!("Architecture: {arch}")), "{info}");
        assert!(info.contains("Package: camfleet-node"), "{info}");
        let contents = dpkg("--contents", None);
        for path in [
            "./usr/bin/camera-node",
            "/systemd/system/camera-node.service",
            "./etc/camfleet/node.toml",
        ] {
            assert!(
                contents.contains(path),
                "{arch}: {path} missing from\n{contents}"
            );
        }
        assert_eq!(
            dpkg("--info", Some("conffiles")).trim(),
            "/etc/camfleet/node.toml"
        );
        let postinst = dpkg("--info", Some("postinst"));
        assert!(
            postinst.contains("adduser --system") && postinst.contains("video"),
            "{postinst}"
        );
    }
}

#[test]
fn the_unit_files_pass_systemd_analyze_verify() {
    require("systemd-analyze", "systemd");
    let dir = TempDir::new("units");
    for (unit, binary) in [
        ("camera-node", "/usr/bin/camera-node"),
        ("viewer", "/usr/bin/viewer"),
    ] {
        let text = std::fs::read_to_string(repo().join(format!("systemd/{unit}.service"))).unwrap();
        assert!(
            text.contains(&format!("ExecStart={binary} ")),
            "{unit} runs {binary}"
        );
        // verify wants the binary to exist; everything else is checked as shipped.
        let copy = dir.path(&format!("{unit}.service"));
        write(
            &copy,
            &text.replace(&format!("ExecStart={binary}"), "ExecStart=/bin/true"),
        );
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{unit}.service: {said}"
        );
    }
    let text = std::fs::read_to_string(repo().join("systemd/camera-node.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "After=network-online.target",
        "SupplementaryGroups=video",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(text.contains(line), "camera-node.service lacks {line}");
    }
}

#[test]
fn install_node_sh_installs_into_a_root_and_is_safe_to_run_twice() {
    let root = TempDir::new("root");
    let run = || {
        let script = repo().join("scripts/install-node.sh");
        run_ok(
            Command::new("bash")
                .arg(script)
                .arg(env!("CARGO_BIN_EXE_camera-node"))
                .env("ROOT", &root.0),
        )
    };
    let first = run();
    assert!(first.contains("wrote"), "{first}");
    let config = root.0.join("etc/camfleet/node.toml");
    // A user's edit survives a second run.
    write(&config, "broker = \"mqtt://10.0.0.2:1883\"\n");
    let second = run();
    assert!(second.contains("keeping the existing"), "{second}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "broker = \"mqtt://10.0.0.2:1883\"\n"
    );
    assert!(root.0.join("usr/bin/camera-node").exists());
    let unit =
        std::fs::read_to_string(root.0.join("etc/systemd/system/camera-node.service")).unwrap();
    assert!(unit.contains("Type=notify"));
    // The installed default config is one the node accepts.
    let shipped = repo().join("packaging/etc/node.toml");
    let out = run_node(&["--config", shipped.to_str().unwrap(), "--check-config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("cam0: rpicam 1280x720 at 30 fps"), "{said}");
}

#[test]
fn the_cross_built_nodes_need_nothing_beyond_libc() {
    require("readelf", "binutils");
    for target in [AARCH64, ARMV7] {
        let binary = dist().join(format!("camera-node-{target}"));
        let dynamic = run_ok(Command::new("readelf").arg("-d").arg(&binary));
        let needed: Vec<&str> = dynamic
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.strip_suffix(']'))
            .collect();
        let libc_family = [
            "libc.so.6",
            "libm.so.6",
            "libgcc_s.so.1",
            "ld-linux-armhf.so.3",
            "ld-linux-aarch64.so.1",
        ];
        assert!(!needed.is_empty(), "{target}: no NEEDED entries read");
        for lib in &needed {
            assert!(
                libc_family.contains(lib),
                "{target} needs {lib} (all: {needed:?})"
            );
        }
    }
}
