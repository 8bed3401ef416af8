//! The `ferry` binary: parse the command line, load configuration, start logging, then serve
//! until SIGTERM/SIGINT (or apply migrations and exit), and flush the log before leaving. Exit
//! codes: 0 done, 1 runtime failure, 2 unusable configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry::config::{Config, Sources};
use ferry::logging::Sink;
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
    /// Run one sweep pass now (expired, consumed and deleted clips, abandoned uploads), print
    /// what it removed as JSON, and exit. Safe beside running servers.
    Sweep {
        /// Also remove blobs that no row owns (slower: walks all blobs).
        #[arg(long)]
        reconcile: bool,
    },
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

/// glibc raises its mmap threshold after large frees, after which multi-megabyte chunk buffers
/// come from per-thread arenas and stay resident. Pinning the threshold (which disables the
/// adjustment) and capping arenas keeps memory flat under large uploads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime").block_on(run())
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&Sources { file: cli.config.clone(), env: true }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    // Logs go to stdout for the server; one-shot commands keep stdout for their result.
    let sink = if matches!(command, Command::Serve) { Sink::Stdout } else { Sink::Stderr };
    let log = ferry::logging::init(&config, sink);
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Sweep { reconcile } => sweep(config, reconcile).await,
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    };
    // Log lines are written by a background thread: dropping the guard waits (boundedly) for
    // the ones still queued, "shutdown complete" and the error above included.
    drop(log);
    code
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
    println!("{}: applied {:?}, schema version {}", store.describe(), report.applied, report.current);
    store.close();
    Ok(())
}

async fn sweep(config: Config, reconcile: bool) -> anyhow::Result<()> {
    let clock: ferry::domain::clock::SharedClock = std::sync::Arc::new(ferry::domain::clock::SystemClock);
    let deps = ferry::app::open_deps(&config, clock).await?;
    let settings = ferry::app::sweep_settings(&config);
    let started = std::time::Instant::now();
    let now = deps.now();
    let report = ferry::jobs::sweeper::sweep_once(&deps, &settings, now).await?;
    let orphans = if reconcile { ferry::jobs::sweeper::reconcile_once(&deps, &settings, now).await? } else { 0 };
    println!(
        "{{\"expiredClips\":{},\"retiredClips\":{},\"tombstonesDeleted\":{},\"abandonedUploads\":{},\"finishedUploads\":{},\"blobsDeleted\":{},\"orphansDeleted\":{},\"batches\":{},\"seconds\":{:.3}}}",
        report.expired_clips,
        report.retired_clips,
        report.tombstones,
        report.abandoned_uploads,
        report.finished_uploads,
        report.blobs_deleted,
        orphans,
        report.batches,
        started.elapsed().as_secs_f64()
    );
    deps.background.cancel();
    deps.store.close();
    Ok(())
}
