//! `camera-node`: flags, logging and signals; the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use shared::process::{init_logging, watch_signals};
use tokio_util::sync::CancellationToken;

use camera_node::{source::kill_all_camera_processes, Cli, NodeConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
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
        // A second signal must not leave a camera process behind.
        if let Err(e) = watch_signals(shutdown.clone(), kill_all_camera_processes) {
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
