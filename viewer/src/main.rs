//! `viewer`: flags, logging and signals; the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use shared::process::{init_logging, watch_signals};
use tokio_util::sync::CancellationToken;

use viewer::{Cli, ViewerConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match ViewerConfig::load(cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
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
        let last_words =
            || tracing::warn!("open segments stay as .mp4.part; they play up to their last second");
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
        match viewer::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
