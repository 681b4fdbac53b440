//! The HTTP service (`knockoff serve`): settings resolved once
//! ([`settings`]), state built once ([`start`]), axum routes split by area
//! ([`routes`]), extractors that parse each request once ([`extract`]),
//! problem+json errors ([`error`]) and the `OpenAPI` document ([`openapi`]).
//! Handlers translate: request in, a library call, the library's typed
//! result out through the API's own types ([`types`]).

mod auth;
pub mod error;
pub mod extract;
mod metrics;
pub mod openapi;
mod pool;
mod routes;
pub mod settings;
pub mod types;

pub use auth::{KeyError, Keys, Role};
pub use error::ApiError;
pub use metrics::Metrics;
pub use openapi::{ApiDoc, ROUTES};
pub use pool::InferencePool;
pub use settings::{ConfigError, ConfigFile, Overrides, Settings};

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::embed::{EmbedOptions, Embedder};
use crate::index::{IndexSpec, OpenError};
use crate::ingest::jobs::{JobError, JobQueue, JobSettings};
use crate::ingest::FetchOptions;
use crate::search::calibration::CalibrationInfo;
use crate::search::VerdictConfig;

/// Lowers the calling thread's CPU priority to the lowest (nice 19 and the
/// `SCHED_IDLE` policy; Linux keeps both per thread), for the rest of the
/// thread's life. Such a thread still progresses under load (CFS weight 3),
/// only slower. Best effort.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
    unsafe {
        if let Ok(tid) = libc::id_t::try_from(libc::gettid()) {
            let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
        // SCHED_IDLE: a waking lookup thread preempts this one at once (nice 19
        // alone still lets it finish its slice first, which showed in lookup p99).
        let param = libc::sched_param { sched_priority: 0 };
        let _ = libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param);
    }
}

/// Lowers the priority of every thread of the global rayon pool, which only
/// background work uses (projection fits, graph rebuilds), so lookups come first.
fn lower_background_pool() {
    let _ = rayon::ThreadPoolBuilder::new().start_handler(|_| lower_priority()).build_global();
}

/// The verdict settings lookups use, with what they were fitted on and the
/// image count they were fitted at.
#[derive(Debug, Clone)]
pub struct Verdicts {
    pub config: VerdictConfig,
    pub info: Option<CalibrationInfo>,
    pub fitted_at_images: i64,
    /// Which products were labelled `counterfeit` when they were fitted
    /// ([`counterfeit_products`]): the thresholds depend on the labels, so
    /// relabelling one is a change worth a refit.
    pub fitted_at_labels: u64,
    /// The catalog's shared state these were loaded from ([`Catalog::state_version`]).
    pub state_version: u64,
}

impl AppState {
    /// The current verdict settings (one `Arc` clone; a refit swaps in new ones).
    pub fn verdicts(&self) -> Arc<Verdicts> {
        self.verdict.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn load_verdicts(catalog: &Catalog, model_dir: &std::path::Path, configured: Option<&VerdictConfig>) -> Verdicts {
        let images = catalog.live_image_count() as i64;
        let state_version = catalog.state_version();
        let (config, info) = crate::search::calibration::verdict_config_described(catalog, model_dir, configured);
        Verdicts { config, info, fitted_at_images: images, fitted_at_labels: counterfeit_products(catalog), state_version }
    }

    /// Refits the calibration when the catalog's image count moved by at
    /// least 10 % (and 10 images) since the last fit, or the set of its
    /// counterfeit-labelled products changed (a relabelling changes what the
    /// verdict thresholds are fitted on), then swaps it in.
    /// Lookups keep the old settings until the swap; one refit at a time
    /// (on the shared backend, one replica refits and the others load its
    /// result when it arrives).
    pub fn refit_if_changed(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = self.catalog.live_image_count() as i64;
        if self.catalog.state_version() != self.verdicts().state_version {
            let fresh = Self::load_verdicts(&self.catalog, &self.model_dir, self.config.verdict.as_ref());
            *self.verdict.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
            return true;
        }
        let before = self.verdicts().fitted_at_images;
        let moved = (now - before).abs();
        let labels = counterfeit_products(&self.catalog);
        let relabelled = labels != self.verdicts().fitted_at_labels;
        if (!relabelled && (moved < 10 || (moved as f64) < 0.1 * before as f64)) || self.refitting.swap(true, Ordering::SeqCst) {
            return false;
        }
        // Lookups come first: the refit runs on a thread of its own at the lowest
        // CPU priority (as do the rayon workers its projection fit and graph rebuild use).
        let led = std::thread::scope(|s| {
            s.spawn(|| {
                lower_priority();
                self.catalog.lead("refit", || {
                    crate::fit::fit_index(&self.catalog, Some(&self.embedder), &mut |line| tracing::info!("refit: {line}"))
                })
            })
            .join()
            .ok()
        });
        let outcome = match led {
            Some(Ok(Some(outcome))) => outcome,
            Some(Ok(None)) => {
                // Another replica refits now; its calibration arrives as shared state.
                self.refitting.store(false, Ordering::SeqCst);
                return false;
            }
            Some(Err(e)) => {
                tracing::warn!("refit: {e}");
                None
            }
            None => None,
        };
        let mut fresh = Self::load_verdicts(&self.catalog, &self.model_dir, self.config.verdict.as_ref());
        // Too little to fit on yet: check again next time (cheap for a catalog that small),
        // rather than wait for another 10 % of growth. A fit or a failure counts as done.
        fresh.fitted_at_images = if outcome == Some(false) { before } else { now };
        // The labels as they were when the fit began: a relabelling during it is seen next time.
        fresh.fitted_at_labels = labels;
        *self.verdict.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
        self.refitting.store(false, Ordering::SeqCst);
        true
    }
}

/// Which products are labelled `counterfeit`, as a fingerprint (a hash of their sorted rows).
fn counterfeit_products(catalog: &Catalog) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut rows: Vec<i64> =
        catalog.product_labels().into_iter().filter(|(_, l)| *l == crate::catalog::Label::Counterfeit).map(|(row, _)| row).collect();
    rows.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rows.hash(&mut h);
    h.finish()
}

/// Service limits.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub max_body_bytes: usize,
    pub inference_threads: usize,
    pub queue_depth: usize,
    pub max_k: usize,
    pub max_batch: usize,
    pub request_timeout: Duration,
    pub allow_private_urls: bool,
    /// A `[verdict]` section of the config file: the stated false-accusation
    /// rate and the defaults that apply where nothing was fitted.
    pub verdict: Option<VerdictConfig>,
    /// How often the catalog is checked for changes that call for a refit.
    pub refit_interval: Duration,
    /// Whether lookups check for reused catalog photos.
    pub copy_detection: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_body_bytes: 20 * 1024 * 1024,
            inference_threads: crate::embed::available_cores(),
            queue_depth: 64,
            max_k: 100,
            max_batch: 32,
            request_timeout: Duration::from_secs(30),
            allow_private_urls: false,
            verdict: None,
            refit_interval: Duration::from_secs(30),
            copy_detection: true,
        }
    }
}

/// Everything a request handler may use, built once by [`start`].
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub embedder: Arc<Embedder>,
    pub pool: InferencePool,
    pub keys: Keys,
    pub config: ServiceConfig,
    /// The index's calibration and verdict thresholds, swapped whole by the background refit.
    verdict: std::sync::RwLock<Arc<Verdicts>>,
    /// Set while a refit runs.
    refitting: std::sync::atomic::AtomicBool,
    pub metrics: Metrics,
    pub jobs: JobQueue,
    /// The model's folder (its shipped default calibration).
    model_dir: std::path::PathBuf,
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
    lower_background_pool();
    let opened = crate::index::open(registry, &spec)?;
    let config = settings.config.clone();
    let mut opts = EmbedOptions { sessions: config.inference_threads, intra_threads: intra_threads.unwrap_or(1), ..Default::default() };
    opts.limits.max_pixels = settings.max_pixels;
    let embedder = Arc::new(opened.embedder(&opts)?);
    let verdict = AppState::load_verdicts(&opened.catalog, &opened.manifest.dir, config.verdict.as_ref());
    let catalog = Arc::new(opened.catalog);
    let fetch = FetchOptions { allow_private: config.allow_private_urls, max_bytes: config.max_body_bytes as u64, ..Default::default() };
    let job_settings = JobSettings { fetch, inference_threads: config.inference_threads };
    let (jobs, resumed) = JobQueue::start(catalog.clone(), embedder.clone(), job_settings)?;
    let pool = InferencePool::new(&embedder, config.inference_threads, config.queue_depth);
    let state = AppState {
        catalog,
        embedder,
        pool,
        keys: settings.keys.clone(),
        config,
        verdict: std::sync::RwLock::new(Arc::new(verdict)),
        refitting: std::sync::atomic::AtomicBool::new(false),
        metrics: Metrics::default(),
        jobs,
        model_dir: opened.manifest.dir.clone(),
    };
    Ok((Arc::new(state), resumed))
}

pub fn router(state: Arc<AppState>) -> axum::Router {
    routes::router(state)
}

/// Serves until SIGINT/SIGTERM, then finishes in-flight requests and persists the index.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    let catalog = state.catalog.clone();
    // Background refit: the catalog grows through jobs and admin writes;
    // its calibration follows without a restart.
    let refit_state = state.clone();
    let refit = tokio::spawn(async move {
        let mut tick = tokio::time::interval(refit_state.config.refit_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let st = refit_state.clone();
            let _ = tokio::task::spawn_blocking(move || st.refit_if_changed()).await;
        }
    });
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
    refit.abort();
    let _ = tokio::task::spawn_blocking(move || catalog.persist()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
