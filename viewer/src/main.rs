//! `viewer`: flags, logging and signals; the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use shared::process::{init_logging, run_until_signalled};

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
    if let Err(e) = viewer::broker::serve_for(&mut config, broker_given) {
        tracing::error!("{e:#}");
        return ExitCode::FAILURE;
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
        match demo_nodes {
            Some(nodes) => viewer::demo::run(config, nodes, shutdown).await,
            None => viewer::run(config, shutdown).await,
        }
    })
}
