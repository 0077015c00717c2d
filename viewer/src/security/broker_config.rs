//! `viewer broker-config`: a mosquitto set-up for a fleet. One user per
//! node, viewer, operator and sensor, each allowed to write only its own
//! topics (the ACL below), a TLS listener with a CA and server certificate
//! made here (or given), and the client settings to match, printed once
//! with the passwords (the broker keeps only their hashes).
//!
//! What each user may do (`<p>` is the topic prefix, `camfleet`):
//!
//! | user | writes | reads |
//! |---|---|---|
//! | node `<id>` | `<p>/node/<id>/#`, `sensor/<id>/#`, `response/getIP` | `command/getIP`, `<p>/#` |
//! | viewer `<id>` | `<p>/viewer/<id>/#`, `command/getIP` | everything |
//! | operator | `command/rec` | `<p>/#` |
//! | sensor `<id>` | `sensor/<id>/#` | nothing |
//!
//! A viewer whose dashboard starts recordings is listed as an operator too.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use shared::topics::{
    sensor_tree, Topics, GETIP_REQUEST, GETIP_RESPONSE, REC_COMMAND, SENSOR_FILTER,
};

use crate::homeassistant::DEFAULT_PREFIX as HA_PREFIX;

use super::passwd;

/// Length of the generated passwords (about 143 bits).
const PASSWORD_LEN: usize = 24;

/// What `viewer broker-config` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub nodes: Vec<String>,
    pub viewers: Vec<String>,
    pub operators: Vec<String>,
    pub sensors: Vec<String>,
    /// Names and addresses the broker is reached by (the certificate's).
    pub hosts: Vec<String>,
    pub port: u16,
    pub prefix: String,
    pub out: PathBuf,
    /// Where the files will be on the broker's machine; `out` when absent.
    pub conf_dir: Option<PathBuf>,
    /// A server certificate and key of your own, and the CA that signed it,
    /// instead of made ones.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    /// More server certificates signed by the made CA, for nodes' and the
    /// dashboard's HTTPS: a name (the files' `certs/<name>.crt/.key`) and
    /// its hosts.
    pub certs_for: Vec<(String, Vec<String>)>,
    /// A `homeassistant` user (reads the fleet, sends `command/rec`) and
    /// viewers allowed to publish discovery configs.
    pub homeassistant: bool,
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Node,
    Viewer,
    Operator,
    Sensor,
    HomeAssistant,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Sensor => "sensor",
            Role::HomeAssistant => "homeassistant",
        }
    }
}

/// One broker user: its role, name and the password made for it.
#[derive(Debug, Clone)]
pub struct Account {
    role: Role,
    name: String,
    password: String,
}

/// Writes the broker's files into `request.out` and returns what to tell
/// the user (passwords and client settings), printed once by the caller.
pub fn run(request: &Request) -> Result<String> {
    let accounts = accounts(request)?;
    ensure!(
        request.certs_for.is_empty() || request.ca.is_none(),
        "--cert-for needs the CA made here (its key signs them), not --ca"
    );
    for (name, hosts) in &request.certs_for {
        ensure!(
            plain_id(name) && !hosts.is_empty(),
            "--cert-for {name:?}: NAME=HOST[,HOST...]"
        );
    }
    ensure!(!request.hosts.is_empty(), "name the broker's host (--host)");
    let out = &request.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    if out.join("passwords").exists() && !request.force {
        bail!(
            "{} already holds a fleet's broker files; pass --force to replace them (every password changes)",
            out.display()
        );
    }
    let conf_dir = match &request.conf_dir {
        Some(dir) => dir.clone(),
        None => std::fs::canonicalize(out)?,
    };
    let (ca_name, cert_name, key_name) = match (&request.cert, &request.key, &request.ca) {
        (Some(cert), Some(key), Some(ca)) => {
            for (from, to) in [(ca, "ca.crt"), (cert, "server.crt"), (key, "server.key")] {
                let text = std::fs::read(from)
                    .with_context(|| format!("cannot read {}", from.display()))?;
                write_file(&out.join(to), &text, 0o600)?;
            }
            ("ca.crt", "server.crt", "server.key")
        }
        (None, None, None) => {
            let ca = super::certs::Ca::new()?;
            let server = ca.sign(&request.hosts)?;
            write_file(&out.join("ca.crt"), ca.cert_pem.as_bytes(), 0o644)?;
            write_file(&out.join("ca.key"), ca.key_pem.as_bytes(), 0o600)?;
            write_file(&out.join("server.crt"), server.cert.as_bytes(), 0o644)?;
            write_file(&out.join("server.key"), server.key.as_bytes(), 0o600)?;
            if !request.certs_for.is_empty() {
                std::fs::create_dir_all(out.join("certs"))?;
            }
            for (name, hosts) in &request.certs_for {
                let signed = ca.sign(hosts)?;
                let at = |ext: &str| out.join("certs").join(format!("{name}.{ext}"));
                write_file(&at("crt"), signed.cert.as_bytes(), 0o644)?;
                write_file(&at("key"), signed.key.as_bytes(), 0o600)?;
            }
            ("ca.crt", "server.crt", "server.key")
        }
        _ => bail!("--cert, --key and --ca go together (or none: certificates are made)"),
    };
    let passwords: String = accounts
        .iter()
        .map(|a| format!("{}:{}\n", a.name, passwd::hash(&a.password)))
        .collect();
    write_file(&out.join("passwords"), passwords.as_bytes(), 0o600)?;
    write_file(
        &out.join("acl"),
        acl(
            &accounts,
            &request.prefix,
            &request.operators,
            request.homeassistant,
        )
        .as_bytes(),
        0o644,
    )?;
    let conf = mosquitto_conf(&conf_dir, request.port, ca_name, cert_name, key_name);
    write_file(&out.join("mosquitto.conf"), conf.as_bytes(), 0o644)?;
    Ok(instructions(request, &accounts, &conf_dir))
}

/// The users asked for, checked: plain names, none twice across roles
/// except a viewer that is also an operator (one user, both grants).
fn accounts(request: &Request) -> Result<Vec<Account>> {
    ensure!(
        !request.nodes.is_empty() || !request.viewers.is_empty(),
        "name the fleet's nodes (--nodes) and viewers (--viewers)"
    );
    let mut accounts: Vec<Account> = Vec::new();
    let lists = [
        (Role::Node, &request.nodes),
        (Role::Viewer, &request.viewers),
        (Role::Operator, &request.operators),
        (Role::Sensor, &request.sensors),
    ];
    for (role, names) in lists {
        for name in names {
            ensure!(
                plain_id(name),
                "{:?} is not a usable {} name (letters, digits, - and _, at most 64)",
                name,
                role.name()
            );
            if let Some(other) = accounts.iter().find(|a| &a.name == name) {
                let viewer_operator = other.role == Role::Viewer && role == Role::Operator;
                ensure!(
                    viewer_operator,
                    "{name:?} is both a {} and a {}: one user, one role (a viewer may also be an operator)",
                    other.role.name(),
                    role.name()
                );
                continue;
            }
            accounts.push(Account {
                role,
                name: name.clone(),
                password: passwd::random_password(PASSWORD_LEN),
            });
        }
    }
    if request.homeassistant {
        ensure!(
            !accounts.iter().any(|a| a.name == "homeassistant"),
            "\"homeassistant\" is the Home Assistant user's name; pick another for the {}",
            accounts
                .iter()
                .find(|a| a.name == "homeassistant")
                .map_or("", |a| a.role.name())
        );
        accounts.push(Account {
            role: Role::HomeAssistant,
            name: "homeassistant".into(),
            password: passwd::random_password(PASSWORD_LEN),
        });
    }
    Ok(accounts)
}

fn plain_id(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The mosquitto ACL: per user what it may write and read. Anything not
/// granted is refused (mosquitto drops a refused publish and hides a
/// refused subscription's messages).
fn acl(accounts: &[Account], prefix: &str, operators: &[String], homeassistant: bool) -> String {
    let topics = Topics::new(prefix);
    let mut acl = String::from(
        "# camfleet broker ACL, written by `viewer broker-config`.\n\
         # Each user writes only its own topics; see docs/security.md.\n",
    );
    for a in accounts {
        let id = &a.name;
        let _ = writeln!(acl, "\n# {} {id}\nuser {id}", a.role.name());
        let write = |t: &str| format!("topic write {t}");
        let read = |t: &str| format!("topic read {t}");
        let all = topics.everything();
        let lines: Vec<String> = match a.role {
            Role::Node => vec![
                write(&topics.node_tree(id)),
                write(&sensor_tree(id)),
                write(GETIP_RESPONSE),
                read(GETIP_REQUEST),
                read(&all),
            ],
            Role::Viewer => {
                let mut lines = vec![
                    write(&topics.viewer_tree(id)),
                    write(GETIP_REQUEST),
                    read("#"),
                ];
                if operators.contains(id) {
                    // Its dashboard's Record button.
                    lines.push(write(REC_COMMAND));
                }
                if homeassistant {
                    // Discovery configs (`viewer --homeassistant`).
                    lines.push(write(&format!("{HA_PREFIX}/#")));
                }
                lines
            }
            // Recording, and camera controls on the nodes' `set` topics.
            Role::Operator => vec![
                write(REC_COMMAND),
                write(&topics.camera_set("+", "+")),
                read(&all),
            ],
            Role::Sensor => vec![write(&sensor_tree(id))],
            Role::HomeAssistant => vec![
                write(REC_COMMAND),
                read(&all),
                read(SENSOR_FILTER),
                read(&format!("{HA_PREFIX}/#")),
                write(&format!("{HA_PREFIX}/status")),
            ],
        };
        for line in lines {
            let _ = writeln!(acl, "{line}");
        }
    }
    acl
}

fn mosquitto_conf(dir: &Path, port: u16, ca: &str, cert: &str, key: &str) -> String {
    let at = |f: &str| dir.join(f).display().to_string();
    format!(
        "# camfleet broker, written by `viewer broker-config` (docs/security.md).\n\
         # Every client logs in; TLS only; each user writes only its own topics.\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {passwords}\n\
         acl_file {acl}\n\
         \n\
         listener {port}\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         tls_version tlsv1.2\n",
        passwords = at("passwords"),
        acl = at("acl"),
        ca = at(ca),
        cert = at(cert),
        key = at(key),
    )
}

/// The passwords and the settings for each client, to print once.
fn instructions(request: &Request, accounts: &[Account], conf_dir: &Path) -> String {
    let host = &request.hosts[0];
    let port = request.port;
    let url = |a: &Account| format!("mqtts://{}:{}@{host}:{port}", a.name, a.password);
    let mut text = format!(
        "Broker files written to {} (mosquitto.conf, passwords, acl, ca.crt, server.crt, server.key{}).\n\
         Start it with: mosquitto -c {}\n\
         The passwords below are shown once; the broker keeps only their hashes.\n\n",
        request.out.display(),
        if request.ca.is_none() {
            "; ca.key signs further certificates: keep it off the broker"
        } else {
            ""
        },
        conf_dir.join("mosquitto.conf").display()
    );
    for (name, _) in &request.certs_for {
        let _ = writeln!(
            text,
            "HTTPS for {name}: --tls-cert {dir}/certs/{name}.crt --tls-key {dir}/certs/{name}.key (clients trust ca.crt)",
            dir = request.out.display()
        );
    }
    if !request.certs_for.is_empty() {
        text.push('\n');
    }
    let _ = writeln!(text, "{:<13} {:<24} password", "role", "user");
    for a in accounts {
        let _ = writeln!(text, "{:<13} {:<24} {}", a.role.name(), a.name, a.password);
    }
    for a in accounts {
        match a.role {
            Role::Node => {
                let _ = write!(
                    text,
                    "\n# /etc/camfleet/node.toml on {id} (copy ca.crt to /etc/camfleet/ca.crt)\n\
                     node_id = \"{id}\"\nbroker = \"{}\"\nca_file = \"/etc/camfleet/ca.crt\"\n",
                    url(a),
                    id = a.name
                );
            }
            Role::Viewer => {
                let _ = write!(
                    text,
                    "\n# the viewer's config file on {id}'s machine\n\
                     viewer_id = \"{id}\"\nbroker = \"{}\"\nca_file = \"ca.crt\"\n",
                    url(a),
                    id = a.name
                );
            }
            Role::Operator => {
                let _ = write!(
                    text,
                    "\n# operator {id}: start a recording\n\
                     mosquitto_pub -h {host} -p {port} --cafile ca.crt -u {id} -P '{}' -t command/rec -m start\n",
                    a.password,
                    id = a.name
                );
            }
            Role::HomeAssistant => {
                let _ = write!(
                    text,
                    "\n# Home Assistant's MQTT integration: broker {host}, port {port}, user {id}, the password above,\n\
                     # certificate validation with ca.crt; then run the viewer with --homeassistant\n",
                    id = a.name
                );
            }
            Role::Sensor => {
                let _ = write!(
                    text,
                    "\n# sensor {id}: publish a reading\n\
                     mosquitto_pub -h {host} -p {port} --cafile ca.crt -u {id} -P '{}' -t sensor/{id}/temp -m 21.5\n",
                    a.password,
                    id = a.name
                );
            }
        }
    }
    text
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests;
