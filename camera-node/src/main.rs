//! `camera-node`: flags, logging and signals; the work is in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use camera_node::{source::kill_all_camera_processes, Cli, NodeConfig};

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
    let check_only = cli.check_config;
    let config = match NodeConfig::load(cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        print!("{}", config.summary());
        return ExitCode::SUCCESS;
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
        if let Err(e) = watch_signals(shutdown.clone()) {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
        tracing::info!(node = %config.node_id, "camera-node {} starting", env!("CARGO_PKG_VERSION"));
        match camera_node::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// First SIGINT/SIGTERM: orderly shutdown. Second: kill the cameras, exit.
fn watch_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        for count in 0.. {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            if count == 0 {
                tracing::info!("{name}: shutting down (send it again to exit at once)");
                shutdown.cancel();
            } else {
                tracing::warn!("{name} again: exiting now");
                kill_all_camera_processes();
                std::process::exit(130);
            }
        }
    });
    Ok(())
}
