//! The router: every route with its handler, and what wraps them all (the
//! body limit, a per-request timeout, the request metrics).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;

use super::error::ApiError;
use super::routes::{catalog, jobs, lookup, ops, St};
use super::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(ops::page))
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(super::openapi::serve))
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
