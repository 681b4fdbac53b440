//! The HTTP service (`knockoff serve`): axum routes, API-key auth, the
//! inference pool and problem+json errors. Handlers parse and validate,
//! call the library (catalog, search) and shape the answer; no business
//! logic lives here. Request and response types ([`types`]) are separate
//! from the storage types.

mod auth;
pub mod config;
mod error;
pub mod jobs;
mod metrics;
mod pool;
mod routes;
pub mod types;

pub use auth::{Keys, Role};
pub use error::ApiError;
pub use metrics::Metrics;
pub use pool::InferencePool;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::embed::Embedder;
use crate::search::VerdictConfig;

/// Service limits and settings (every one overridable by `KNOCKOFF_*` variables in the CLI).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub max_body_bytes: usize,
    pub inference_threads: usize,
    pub queue_depth: usize,
    pub max_k: usize,
    pub max_batch: usize,
    pub request_timeout: std::time::Duration,
    pub allow_private_urls: bool,
    pub verdict: VerdictConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_body_bytes: 20 * 1024 * 1024,
            inference_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            queue_depth: 64,
            max_k: 100,
            max_batch: 32,
            request_timeout: std::time::Duration::from_secs(30),
            allow_private_urls: false,
            verdict: VerdictConfig::default(),
        }
    }
}

pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub embedder: Arc<Embedder>,
    pub pool: InferencePool,
    pub keys: Keys,
    pub config: ServiceConfig,
    pub metrics: Metrics,
    pub jobs: std::sync::OnceLock<jobs::Jobs>,
}

impl AppState {
    /// Starts the job worker and queues jobs left unfinished by an earlier run.
    pub fn start_jobs(self: &Arc<Self>) -> Result<usize, ApiError> {
        let jobs = self.jobs.get_or_init(|| jobs::Jobs::start(Arc::downgrade(self)));
        jobs.resume(self)
    }

    pub fn jobs(&self) -> Result<&jobs::Jobs, ApiError> {
        self.jobs.get().ok_or_else(|| ApiError::Internal("job worker not started".into()))
    }
}

/// Refuses to expose an unauthenticated service beyond loopback.
pub fn check_bind(addr: &SocketAddr, keys: &Keys) -> Result<(), String> {
    if keys.is_empty() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without API keys: set KNOCKOFF_API_KEYS=name:role:secret,... or bind to 127.0.0.1"
        ));
    }
    Ok(())
}

pub use routes::{ApiDoc, ROUTES};

pub fn router(state: Arc<AppState>) -> axum::Router {
    routes::router(state)
}

/// Serves until SIGINT/SIGTERM, then finishes in-flight requests and persists the index.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    let catalog = state.catalog.clone();
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
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
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
