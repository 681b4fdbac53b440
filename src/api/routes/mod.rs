//! The router, split by area: [`lookup`], [`catalog`], [`jobs`], [`ops`]
//! (page, health, metrics, stats, `OpenAPI`). A per-request timeout and the
//! request metrics wrap every route.

pub mod catalog;
pub mod jobs;
pub mod lookup;
pub mod ops;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;

use super::error::ApiError;
use super::AppState;

pub type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(ops::page))
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(ops::openapi))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/stats", get(ops::stats))
        .route("/v1/lookup", post(lookup::lookup))
        .route("/v1/lookup/batch", post(lookup::lookup_batch))
        .route("/v1/products/{id}", get(catalog::get_product).put(catalog::put_product).delete(catalog::delete_product))
        .route("/v1/products/{id}/images", post(catalog::add_image))
        .route("/v1/images/{id}", delete(catalog::delete_image))
        .route("/v1/images/{id}/thumbnail", get(catalog::thumbnail))
        .route("/v1/jobs/index", post(jobs::submit_job))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Runs blocking library work off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Per-request timeout and metrics.
async fn track(State(state): St, req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or_else(|| "unmatched".into(), |m| m.as_str().to_string());
    let method = req.method().to_string();
    let t = Instant::now();
    let resp = match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout(state.config.request_timeout.as_millis()).into_response(),
    };
    state.metrics.request(&method, &route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}
