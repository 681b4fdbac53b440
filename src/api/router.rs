//! The router: every route with its handler, and what wraps them all (the
//! body limit, a per-request timeout, the request metrics).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;

use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;

use super::auth::{self, Role};
use super::error::ApiError;
use super::routes::{catalog, jobs, lookup, ops, St};
use super::state::AppState;

/// Every route, grouped by the role it needs: the group's layer checks the
/// key before the handler (and its extractors) run.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    let open = Router::new()
        .route("/", get(ops::page))
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(super::openapi::serve))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    let read = Router::new()
        .route("/v1/stats", get(ops::stats))
        .route("/v1/lookup", post(lookup::lookup))
        .route("/v1/lookup/batch", post(lookup::lookup_batch))
        .route("/v1/images/{id}/thumbnail", get(catalog::thumbnail))
        .route_layer(from_fn_with_state(state.clone(), require_read));
    let admin = Router::new()
        .route("/v1/products/{id}", get(catalog::get_product).put(catalog::put_product).delete(catalog::delete_product))
        .route("/v1/products/{id}/images", post(catalog::add_image))
        .route("/v1/images/{id}", delete(catalog::delete_image))
        .route("/v1/jobs/index", post(jobs::submit_job))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route_layer(from_fn_with_state(state.clone(), require_admin));
    open.merge(read)
        .merge(admin)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(state.clone(), track))
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

/// The layer on every route that needs `role`: the key checked before
/// anything reads the body (see [`auth`]).
async fn require(role: Role, state: &AppState, mut req: Request, next: Next) -> Response {
    match auth::check(&state.keys(), req.headers(), role) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            super::extract::discard_body(req, state.config.max_body_bytes).await;
            e.into_response()
        }
    }
}

async fn require_read(State(state): St, req: Request, next: Next) -> Response {
    require(Role::Read, &state, req, next).await
}

async fn require_admin(State(state): St, req: Request, next: Next) -> Response {
    require(Role::Admin, &state, req, next).await
}
