//! `viewer`: flags, logging and signals; the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use shared::process::{init_logging, run_until_signalled};

use viewer::config::Command;
use viewer::{Cli, ViewerConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let demo = match &cli.command {
        Some(Command::Demo { nodes, codec }) => Some((*nodes, codec.clone())),
        _ => None,
    };
    let export = match &cli.command {
        Some(Command::Export {
            session,
            from,
            to,
            camera,
            out,
            h264,
        }) => Some(viewer::playback::export::ExportRequest {
            session: session.clone(),
            from: from.clone(),
            to: to.clone(),
            cameras: camera.clone(),
            out: out.clone(),
            h264: *h264,
        }),
        _ => None,
    };
    if let Some(Command::BrokerConfig {
        nodes,
        viewers,
        operators,
        sensors,
        hosts,
        port,
        out,
        conf_dir,
        cert,
        key,
        ca,
        certs_for,
        homeassistant_user,
        force,
    }) = &cli.command
    {
        let request = viewer::security::broker_config::Request {
            nodes: nodes.clone(),
            viewers: viewers.clone(),
            operators: operators.clone(),
            sensors: sensors.clone(),
            hosts: hosts.clone(),
            port: *port,
            prefix: cli
                .topic_prefix
                .clone()
                .unwrap_or_else(|| shared::topics::DEFAULT_PREFIX.to_owned()),
            out: out.clone(),
            conf_dir: conf_dir.clone(),
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            certs_for: certs_for.clone(),
            homeassistant: *homeassistant_user,
            force: *force,
        };
        return match viewer::security::broker_config::run(&request) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("broker-config: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::HashPassword { name }) = &cli.command {
        return hash_password(name);
    }
    let recordings_given = cli.recordings.is_some();
    let broker_given = cli.broker.is_some();
    let mut config = match ViewerConfig::load(cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(request) = export {
        return match viewer::playback::export::run(&config.recordings, &request) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("export: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if demo.is_some() {
        viewer::demo::adjust(&mut config, recordings_given);
    }
    // The embedded broker, when asked for; the viewer connects to it.
    if let Some(addr) = config.embedded_broker {
        if broker_given {
            tracing::warn!(
                "--broker is ignored: the viewer runs its own broker (--embedded-broker)"
            );
        }
        match viewer::broker::serve(addr, config.broker_users.as_deref()) {
            Ok(url) => config.mqtt.broker = url,
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let last_words = || {
        tracing::warn!("open segments stay as .mp4.part; they play up to their last second");
        viewer::demo::kill_nodes_now();
    };
    run_until_signalled(last_words, |shutdown| async move {
        tracing::info!(
            viewer = %config.viewer_id,
            "viewer {} starting; recordings in {}",
            env!("CARGO_PKG_VERSION"),
            config.recordings.display()
        );
        match demo {
            Some((nodes, codec)) => viewer::demo::run(config, nodes, &codec, shutdown).await,
            None => viewer::run(config, shutdown).await,
        }
    })
}

/// `viewer hash-password NAME`: a `[[user]]` entry from a password on stdin.
fn hash_password(name: &str) -> ExitCode {
    if name.is_empty() || name.contains(':') || name.contains('"') {
        eprintln!("hash-password: {name:?} cannot be a user name");
        return ExitCode::from(2);
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("hash-password: cannot read the password from standard input: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        eprintln!("hash-password: give a password of 8 characters or more on standard input");
        return ExitCode::from(2);
    }
    println!(
        "[[user]]\nname = \"{name}\"\npassword_hash = \"{}\"",
        viewer::security::passwd::hash(password)
    );
    ExitCode::SUCCESS
}
