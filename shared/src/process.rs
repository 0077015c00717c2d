//! What both binaries set up before their work: logging to stderr, and the
//! two-stage shutdown signal (the first SIGINT/SIGTERM asks for an orderly
//! stop, a second one exits at once).

use std::io::IsTerminal;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Logs to stderr at `info` (or `RUST_LOG`), in colour only on a terminal.
/// The embedded broker (rumqttd) logs every connection and subscription,
/// and errors for clients that merely close: off unless `RUST_LOG` names it.
pub fn init_logging() {
    let mut directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    if !directives.contains("rumqttd") {
        directives.push_str(",rumqttd=off");
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(directives))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// First signal: cancel `shutdown`. Second: run `last_words` (kill what
/// must not outlive the process) and exit with status 130. Call inside the
/// runtime.
pub fn watch_signals(
    shutdown: CancellationToken,
    last_words: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
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
                last_words();
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

/// The rest of a binary's `main`: a multi-threaded runtime, the two-stage
/// signals ([`watch_signals`]), then `work` until it ends or `shutdown`.
/// Errors are logged with their causes; the exit status says how it went.
pub fn run_until_signalled<F, E>(
    last_words: impl Fn() + Send + 'static,
    work: impl FnOnce(CancellationToken) -> F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use std::process::ExitCode;
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
        if let Err(e) = watch_signals(shutdown.clone(), last_words) {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
        match work(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
