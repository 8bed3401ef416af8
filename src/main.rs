//! The `ferry` binary: parse the command line, load configuration, start tracing, then serve
//! until SIGTERM/SIGINT (or apply migrations and exit). Exit codes: 0 done, 1 runtime failure,
//! 2 unusable configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry::config::{Config, LogFormat, Sources};
use ferry::store::Store;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Self-hosted temporary clip and file sharing server",
    long_about = "Self-hosted temporary clip and file sharing server.\n\n\
        Configuration comes from the built-in defaults, then the file given with --config, then \
        FERRY_* environment variables (nested keys with __, e.g. FERRY_SERVER__SHUTDOWN_GRACE=10s). \
        With no database URL the embedded SQLite store under FERRY_DATA_DIR is used."
)]
struct Cli {
    /// TOML file overriding the built-in defaults (only the keys it sets).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default when no subcommand is given). Applies pending
    /// migrations first; stops gracefully on SIGTERM or SIGINT.
    Serve,
    /// Apply pending database migrations to the configured store and exit.
    Migrate,
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancel the token on the first SIGTERM or SIGINT.
fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
        token.cancel();
    });
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&Sources {
        file: cli.config.clone(),
        env: true,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = ferry::Application::build(config).await?;
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    app.run(shutdown).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = Store::open(&config).await?;
    let report = store.migrate().await?;
    println!(
        "{}: applied {:?}, schema version {}",
        store.describe(),
        report.applied,
        report.current
    );
    store.close();
    Ok(())
}
