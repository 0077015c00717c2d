//! `viewer`: flags, logging and signals; the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use shared::process::{init_logging, watch_signals};
use tokio_util::sync::CancellationToken;

use viewer::config::Command;
use viewer::{Cli, ViewerConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let demo_nodes = cli.command.as_ref().map(|Command::Demo { nodes }| *nodes);
    let recordings_given = cli.recordings.is_some();
    let broker_given = cli.broker.is_some();
    let mut config = match ViewerConfig::load(cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    if demo_nodes.is_some() {
        viewer::demo::adjust(&mut config, recordings_given);
    }
    if let Some(addr) = config.embedded_broker {
        if broker_given {
            tracing::warn!(
                "--broker is ignored: the viewer runs its own broker (--embedded-broker)"
            );
        }
        let local = match viewer::broker::start(addr) {
            Ok(local) => local,
            Err(e) => {
                tracing::error!("{e:#}");
                return ExitCode::FAILURE;
            }
        };
        match format!("mqtt://{local}").parse() {
            Ok(url) => config.mqtt.broker = url,
            Err(e) => {
                tracing::error!("embedded broker address {local}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let last_words = || {
            tracing::warn!("open segments stay as .mp4.part; they play up to their last second");
            viewer::demo::kill_nodes_now();
        };
        if let Err(e) = watch_signals(shutdown.clone(), last_words) {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
        tracing::info!(
            viewer = %config.viewer_id,
            "viewer {} starting; recordings in {}",
            env!("CARGO_PKG_VERSION"),
            config.recordings.display()
        );
        let ran = match demo_nodes {
            Some(nodes) => viewer::demo::run(config, nodes, shutdown).await,
            None => viewer::run(config, shutdown).await,
        };
        match ran {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
