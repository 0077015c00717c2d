//! `camera-node`: flags, logging and signals; the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use shared::process::{init_logging, run_until_signalled};

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
    // A second signal must not leave a camera process behind.
    run_until_signalled(kill_all_camera_processes, |shutdown| {
        tracing::info!(node = %config.node_id, "camera-node {} starting", env!("CARGO_PKG_VERSION"));
        camera_node::run(config, shutdown)
    })
}
