//! Application wiring: `Application::build(config)` opens the store (and migrates), the blob
//! store, binds the listener (port 0 allowed) and assembles the router; `run(shutdown)` serves
//! until the token is cancelled, drains in-flight requests within the grace period, then closes
//! the store. Used alike by main and by the tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blob::BlobStore;
use crate::config::Config;
use crate::domain::access::AccessHasher;
use crate::domain::clock::{SharedClock, SystemClock};
use crate::domain::locks::KeyedLocks;
use crate::domain::{Deps, Limits};
use crate::jobs::sweeper::{self, SweepSettings};
use crate::store::Store;

/// Shared state handed to every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    config: Config,
    deps: Deps,
    rate_limits: crate::http::ratelimit::SharedRateLimits,
    admin_stats: crate::http::admin::StatsCache,
    started: Instant,
    /// Cancelled when shutdown begins; /readyz turns 503 so balancers stop sending traffic.
    draining: CancellationToken,
    /// Background loops register here so shutdown can wait for their current batch.
    tasks: TaskTracker,
    /// This process's job workers.
    jobs: crate::jobs::queue::Queue,
}

impl AppState {
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn admin_stats(&self) -> &crate::http::admin::StatsCache {
        &self.inner.admin_stats
    }
    pub fn rate_limits(&self) -> &crate::http::ratelimit::RateLimits {
        &self.inner.rate_limits
    }
    pub fn deps(&self) -> &Deps {
        &self.inner.deps
    }
    pub fn store(&self) -> &Store {
        &self.inner.deps.store
    }
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.deps.blobs
    }
    pub fn now_ms(&self) -> i64 {
        self.inner.deps.now()
    }
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }
    pub fn is_draining(&self) -> bool {
        self.inner.draining.is_cancelled()
    }
    pub fn sweep_settings(&self) -> SweepSettings {
        sweep_settings(&self.inner.config)
    }
    /// The job queue of this process (tests drive it with `work_once`).
    pub fn jobs(&self) -> &crate::jobs::queue::Queue {
        &self.inner.jobs
    }
}

/// Chunks at least this large assemble on S3 without their bytes passing through ferry, the
/// browser's too (they end on a record boundary up to 64 KiB under the chunk size).
const S3_COPYABLE_CHUNK: u64 = 6 << 20;

/// Open the store (migrating it) and blob storage, and bundle what the services need. Used by
/// the server and by one-shot commands such as `ferry sweep`.
pub async fn open_deps(config: &Config, clock: SharedClock) -> anyhow::Result<Deps> {
    let store = Store::open(config).await?;
    let report = store.migrate().await.context("applying migrations")?;
    if !report.applied.is_empty() {
        tracing::info!(applied = ?report.applied, version = report.current, "migrations applied");
    }
    let blobs = BlobStore::open(config).await.with_context(|| match config.blob {
        crate::config::BlobBackend::Fs => format!("opening blob storage under {}", config.data_dir.display()),
        crate::config::BlobBackend::S3 => "opening S3 blob storage".to_string(),
    })?;
    if config.blob == crate::config::BlobBackend::S3 && config.limits.chunk_size.bytes() < S3_COPYABLE_CHUNK {
        // Browser chunks end on encryption-record boundaries, a little under chunk_size.
        tracing::warn!(
            chunk_size = config.limits.chunk_size.bytes(),
            "limits.chunk_size is under 6MiB: S3 cannot copy parts under 5MiB server-side, so completes \
             of browser uploads will stream their bytes through ferry; set limits.chunk_size = \"8MiB\""
        );
    }
    blobs.set_journal(std::sync::Arc::new(crate::domain::journal::StoreJournal::new(store.clone(), clock.clone())));
    let background = CancellationToken::new();
    let cache = crate::cache::Cache::from_config(config, &background);
    Ok(Deps {
        store,
        blobs,
        clock,
        cache,
        background,
        limits: Limits::from_config(config),
        access: AccessHasher::new(config.upload.access_code_concurrency),
        complete_locks: KeyedLocks::default(),
        assemblies: TaskTracker::new(),
        frontiers: crate::domain::frontier::Frontiers::new(
            config.upload.assembly_concurrency,
            config.sweep.abandon_after,
        ),
        last_sweep: Default::default(),
        followups: crate::domain::followups::Followups::from_config(config),
        usage: std::sync::Arc::new(crate::domain::usage::Usage::new(
            config.limits.max_total_storage.map(|b| b.bytes()),
        )),
    })
}

/// The rate limits, counted in Redis when `rate.backend = "redis"`.
fn rate_limits(config: &Config, deps: &Deps) -> crate::http::ratelimit::RateLimits {
    let limits = crate::http::ratelimit::RateLimits::from_config(config);
    match (&config.redis_url, config.rate.backend) {
        (Some(url), crate::config::RateBackend::Redis) if config.rate_limits == crate::config::Switch::On => limits
            .with_shared(crate::cache::rate::SharedRate::start(
                url.expose(),
                config.rate.redis_timeout,
                &deps.background,
            )),
        _ => limits,
    }
}

/// Sweep settings from configuration.
pub fn sweep_settings(config: &Config) -> SweepSettings {
    let c = &config.sweep;
    let ms = |d: Duration| d.as_millis() as i64;
    SweepSettings {
        interval: c.interval,
        batch_size: c.batch_size,
        abandon_after_ms: ms(c.abandon_after),
        finished_retention_ms: ms(c.finished_retention),
        retired_grace_ms: ms(c.retired_grace),
        reconcile_every: c.reconcile_every,
        orphan_grace_ms: ms(c.orphan_grace),
    }
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    connections: crate::http::conn::ConnSettings,
}

impl Application {
    /// Build with the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Build with an injected clock (tests move time without sleeping).
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Application> {
        config.validate()?;
        // Refuse to start rather than run out of descriptors under load.
        let max_connections = crate::http::conn::descriptor_budget(&config)?;
        let connections = crate::http::conn::ConnSettings::new(&config.server, max_connections);
        crate::http::metrics::handle();
        let deps = open_deps(&config, clock.clone()).await?;
        let listener = TcpListener::bind(config.bind).await.with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        tracing::info!(store = %deps.store.describe(), blobs = %deps.blobs.describe(), "ready");
        let jobs = crate::jobs::queue::Queue::new(
            deps.clone(),
            crate::jobs::handlers(&deps, &config),
            crate::jobs::queue::QueueSettings::from_config(&config),
        );
        let state = AppState {
            inner: Arc::new(Shared {
                rate_limits: Arc::new(rate_limits(&config, &deps)),
                admin_stats: Default::default(),
                config,
                jobs,
                deps,
                started: Instant::now(),
                draining: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        tracing::info!(max_connections, "connection budget");
        Ok(Application { listener, addr, state, connections })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` is cancelled; then stop accepting, let in-flight requests finish
    /// within the grace period, wait for background loops, and close the store.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { listener, addr, state, connections } = self;
        let grace = state.config().server.shutdown_grace;
        let app = crate::http::service(state.clone());
        tracing::info!(%addr, "listening");

        let draining = state.inner.draining.clone();
        let signal = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                draining.cancel();
            }
        };
        state.inner.tasks.spawn(crate::http::admin::refresh_loop(
            state.clone(),
            Duration::from_secs(30),
            shutdown.child_token(),
        ));
        state.inner.tasks.spawn(crate::http::ratelimit::forget_idle_loop(state.clone(), shutdown.child_token()));
        state.inner.tasks.spawn(crate::http::metrics::upkeep_loop(Duration::from_secs(1), shutdown.child_token()));
        state.inner.tasks.spawn(sweeper::run(state.deps().clone(), state.sweep_settings(), shutdown.child_token()));
        state.inner.tasks.spawn(state.jobs().clone().run(shutdown.child_token()));
        state.inner.tasks.spawn(crate::jobs::accounting::observe_loop(
            state.deps().clone(),
            crate::jobs::KINDS.to_vec(),
            Duration::from_secs(5),
            shutdown.child_token(),
        ));
        let stop_accepting = CancellationToken::new();
        let server = crate::http::conn::serve(listener, app, connections, stop_accepting.clone());
        let mut server = std::pin::pin!(server);
        tokio::select! {
            _ = &mut server => anyhow::bail!("the accept loop ended before shutdown"),
            _ = signal => {
                tracing::info!(grace = ?grace, "shutdown: draining in-flight requests");
                stop_accepting.cancel();
                if tokio::time::timeout(grace, &mut server).await.is_err() {
                    tracing::warn!("shutdown: grace period over; closing remaining connections");
                }
            }
        }
        state.inner.tasks.close();
        state.deps().assemblies.close();
        let settled = async { tokio::join!(state.inner.tasks.wait(), state.deps().assemblies.wait()) };
        if tokio::time::timeout(grace, settled).await.is_err() {
            tracing::warn!("shutdown: background tasks did not finish within the grace period");
        }
        state.deps().background.cancel();
        state.store().close();
        tracing::info!("shutdown complete");
        Ok(())
    }
}
