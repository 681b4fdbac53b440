//! The service's state, built once by [`start`]: the catalog, the model
//! and its inference pool, the keys, the limits, the verdict settings (and
//! their refit), the metrics, the job queue and the webhook senders.

use std::sync::Arc;

use super::{InferencePool, Keys, Metrics, ServiceConfig, Settings};
use crate::catalog::Catalog;
use crate::embed::{EmbedOptions, Embedder};
use crate::fit::refit::{Refitter, Verdicts};
use crate::index::{IndexSpec, OpenError};
use crate::ingest::jobs::{JobError, JobQueue, JobSettings};
use crate::ingest::FetchOptions;

/// Everything a request handler may use, built once by [`start`].
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub embedder: Arc<Embedder>,
    pub pool: InferencePool,
    /// The API keys in force (swapped whole when they are read again, on SIGHUP).
    keys: parking_lot::RwLock<Arc<Keys>>,
    /// Where they come from.
    pub key_sources: super::settings::KeySources,
    pub config: ServiceConfig,
    /// The index's calibration and verdict thresholds, swapped whole by the background refit.
    pub refit: Refitter,
    pub metrics: Metrics,
    pub jobs: JobQueue,
    /// The webhook senders (stopped when the state is dropped).
    pub webhooks: crate::webhooks::Dispatcher,
    /// Joins recorded cases into seller networks, in the background.
    pub clusters: crate::review::ClusterWorker,
}

impl AppState {
    /// The API keys in force.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().clone()
    }

    /// Reads the keys from their sources again and swaps them in; on an
    /// error (an unreadable file, a bad entry) the keys in force stay.
    pub fn reload_keys(&self) -> Result<usize, super::ConfigError> {
        let fresh = self.key_sources.load()?;
        let n = fresh.len();
        *self.keys.write() = Arc::new(fresh);
        Ok(n)
    }

    /// The current verdict settings (one `Arc` clone; a refit swaps in new ones).
    pub fn verdicts(&self) -> Arc<Verdicts> {
        self.refit.verdicts()
    }

    /// Refits when the catalog changed enough (see [`Refitter`]).
    pub fn refit_if_changed(&self) -> bool {
        self.refit.refit_if_changed(&self.catalog, &self.embedder)
    }

    /// What `/metrics` reports besides requests and the index.
    pub fn runtime(&self) -> super::metrics::Runtime {
        let (jobs, items) = crate::ingest::jobs::job_totals();
        let r = self.refit.counts();
        let fitted = self.verdicts().info.as_ref().and_then(|i| i.fitted_at.parse::<jiff::Timestamp>().ok());
        super::metrics::Runtime {
            queue_depth: self.pool.queued(),
            shed: self.pool.shed(),
            abandoned: self.pool.abandoned(),
            jobs,
            items,
            refits: [("started", r.started), ("finished", r.finished), ("loaded", r.loaded)],
            webhooks: crate::webhooks::totals(),
            calibration_age: fitted.map(|t| jiff::Timestamp::now().duration_since(t).as_secs_f64()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    #[error(transparent)]
    Jobs(#[from] JobError),
}

/// Opens the index named by `settings` (model, graph options from `spec`),
/// loads its model with one single-threaded session per inference thread,
/// resolves the verdict settings, and starts the job worker. Returns the
/// state and how many unfinished jobs were resumed.
pub fn start(
    settings: &Settings,
    registry: &crate::embed::ModelRegistry,
    spec: &IndexSpec,
    intra_threads: Option<usize>,
) -> Result<(Arc<AppState>, usize), StartError> {
    let spec = IndexSpec {
        dir: settings.index.clone(),
        store: spec.store.clone().or_else(|| settings.store.clone()),
        vectors: spec.vectors.clone().or_else(|| settings.vectors.clone()),
        ..spec.clone()
    };
    crate::fit::priority::lower_background_pool();
    let opened = crate::index::open(registry, &spec)?;
    let config = settings.config.clone();
    let mut opts = EmbedOptions { sessions: config.inference_threads, intra_threads: intra_threads.unwrap_or(1), ..Default::default() };
    opts.limits.max_pixels = settings.max_pixels;
    let embedder = Arc::new(opened.embedder(&opts)?);
    let refit = Refitter::new(&opened.catalog, &opened.manifest.dir, config.verdict.clone());
    let catalog = Arc::new(opened.catalog);
    let fetch = FetchOptions { allow_private: config.allow_private_urls, max_bytes: config.max_body_bytes as u64, ..Default::default() };
    let job_settings = JobSettings { fetch, inference_threads: config.inference_threads };
    let (jobs, resumed) = JobQueue::start(catalog.clone(), embedder.clone(), job_settings)?;
    let pool = InferencePool::new(&embedder, config.inference_threads, config.queue_depth);
    let send = crate::webhooks::SendOptions { allow_private: config.allow_private_urls, ..Default::default() };
    let webhooks = crate::webhooks::Dispatcher::start(&catalog, &config.webhooks, &send);
    let clusterer = crate::review::Clusterer::new(embedder.name(), refit.verdicts().config.copy, opts.limits);
    let clusters = crate::review::ClusterWorker::start(catalog.clone(), clusterer);
    let state = AppState {
        catalog,
        embedder,
        pool,
        keys: parking_lot::RwLock::new(Arc::new(settings.keys.clone())),
        key_sources: settings.key_sources.clone(),
        config,
        refit,
        metrics: Metrics::default(),
        jobs,
        webhooks,
        clusters,
    };
    state.metrics.build(state.embedder.name());
    Ok((Arc::new(state), resumed))
}
