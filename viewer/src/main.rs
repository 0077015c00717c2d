//! `viewer`: flags, logging and signals; the work is in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use viewer::{Cli, ViewerConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
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
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let token = shutdown.clone();
        tokio::spawn(async move {
            for count in 0.. {
                tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
                if count == 0 {
                    tracing::info!("shutting down: closing segments (signal again to exit at once)");
                    token.cancel();
                } else {
                    tracing::warn!("exiting now; open segments stay as .mp4.part");
                    std::process::exit(130);
                }
            }
        });
        tracing::info!(viewer = %config.viewer_id, "viewer {} starting; recordings in {}", env!("CARGO_PKG_VERSION"), config.recordings.display());
        match viewer::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
