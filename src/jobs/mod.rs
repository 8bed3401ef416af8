//! Background jobs. The durable queue (`queue`) runs the kinds below in any instance; the sweep
//! keeps its own loop. Each job is a public `*_once`-style unit that tests call directly, plus a
//! dumb loop (or the queue) that runs it, backs off on errors and stops when cancelled.

pub mod accounting;
pub mod queue;
pub mod sweeper;
pub mod thumbnail;
pub mod webhook;

use std::sync::Arc;

use crate::config::Config;
use crate::domain::Deps;
use crate::domain::followups::{ACCOUNTING, NOOP, THUMBNAIL, WEBHOOK};
use queue::{Handlers, JobError};

/// The kinds this server runs, with their per-kind limits.
pub fn handlers(deps: &Deps, config: &Config) -> Handlers {
    let mut handlers =
        Handlers::default().add(NOOP, None, |_job| Box::pin(async { Ok(()) })).add(ACCOUNTING, Some(1), {
            let deps = deps.clone();
            move |_job| {
                let deps = deps.clone();
                Box::pin(async move { accounting::refresh_usage_once(&deps, deps.now()).await })
            }
        });
    let settings = Arc::new(thumbnail::ThumbnailSettings::from_config(config));
    handlers = handlers.add(THUMBNAIL, Some(config.jobs.thumbnail_concurrency), {
        let deps = deps.clone();
        move |job| {
            let (deps, settings) = (deps.clone(), settings.clone());
            Box::pin(async move { thumbnail::make_thumbnail(&deps, &settings, &job).await })
        }
    });
    // Without a URL, webhook jobs (queued while one was set) wait for an instance that has one.
    if let Some(hook) = webhook::Webhook::from_config(config) {
        handlers = handlers.add(WEBHOOK, Some(config.jobs.webhook_concurrency), move |job| {
            let hook = hook.clone();
            Box::pin(async move { hook.deliver(&job).await })
        });
    }
    handlers
}

/// Every kind a server may run, for gauges that must read 0 rather than vanish.
pub const KINDS: [&str; 4] = [NOOP, ACCOUNTING, THUMBNAIL, WEBHOOK];

/// A permanent failure, for handlers' convenience.
pub fn permanent(why: impl Into<String>) -> JobError {
    JobError::Permanent(why.into())
}
