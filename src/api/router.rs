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
use super::routes::{cases, catalog, clusters, jobs, lookup, ops, webhooks, St};
use super::state::AppState;

/// Every route, grouped by the role it needs: the group's layer checks the
/// key before the handler (and its extractors) run; inside it, a POST with
/// an `Idempotency-Key` is answered once ([`super::idempotency`]).
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    let open = Router::new()
        .route("/", get(ops::page))
        .route("/review", get(ops::review_page))
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(super::openapi::serve))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    let read = Router::new()
        .route("/v1/stats", get(ops::stats))
        .route("/v1/lookup", post(lookup::lookup))
        .route("/v1/lookup/batch", post(lookup::lookup_batch))
        .route("/v1/images/{id}/thumbnail", get(catalog::thumbnail))
        .route_layer(from_fn_with_state(state.clone(), super::idempotency::idempotent))
        .route_layer(from_fn_with_state(state.clone(), require_read));
    let analyst = Router::new()
        .route("/v1/cases", get(cases::list_cases))
        .route("/v1/cases/{id}", get(cases::get_case))
        .route("/v1/cases/{id}/photo", get(cases::case_photo))
        .route("/v1/cases/{id}/evidence", get(cases::evidence))
        .route("/v1/cases/{id}/decision", post(cases::decide).delete(cases::undo))
        .route("/v1/clusters", get(clusters::list_clusters))
        .route("/v1/clusters/{id}", get(clusters::get_cluster))
        .route_layer(from_fn_with_state(state.clone(), super::idempotency::idempotent))
        .route_layer(from_fn_with_state(state.clone(), require_analyst));
    let admin = Router::new()
        .route("/v1/products", get(catalog::list_products))
        .route("/v1/products/{id}", get(catalog::get_product).put(catalog::put_product).delete(catalog::delete_product))
        .route("/v1/products/{id}/images", post(catalog::add_image))
        .route("/v1/images/{id}", delete(catalog::delete_image))
        .route("/v1/jobs/index", post(jobs::submit_job))
        .route("/v1/jobs", get(jobs::list_jobs))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/webhooks", get(webhooks::list_webhooks))
        .route("/v1/webhooks/{name}/enable", post(webhooks::enable_webhook))
        .route_layer(from_fn_with_state(state.clone(), super::idempotency::idempotent))
        .route_layer(from_fn_with_state(state.clone(), require_admin));
    open.merge(read)
        .merge(analyst)
        .merge(admin)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Per-request timeout, metrics, the request id (the client's `x-request-id`
/// when it is a short plain token, else a new one, echoed in the response)
/// and one log line per request: method, route, status, ms, request id and
/// the key's name (never the secret).
async fn track(State(state): St, req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or_else(|| "unmatched".into(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let id = request_id(req.headers());
    let t = Instant::now();
    let mut resp = match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout(state.config.request_timeout.as_millis()).into_response(),
    };
    let secs = t.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    state.metrics.request(method.as_str(), &route, status, secs);
    let key = resp.extensions().get::<KeyName>().map_or("-", |k| k.0.as_str());
    let ms = (secs * 1e4).round() / 10.0;
    tracing::info!(target: "knockoff::request", method = super::metrics::method_label(method.as_str()), route, status, ms, request_id = %id, key, "request");
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    with_request_id(resp, &id).await
}

/// A problem+json answer with `request_id` added, so that a client quoting
/// the error quotes the line in the request log too (problem bodies are small).
async fn with_request_id(resp: Response, id: &str) -> Response {
    let problem = resp.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == b"application/problem+json");
    if !problem {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    v["request_id"] = id.into();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(serde_json::to_vec(&v).unwrap_or_default()))
}

/// The caller's key name, carried on the response for the request log.
#[derive(Clone)]
struct KeyName(String);

/// The client's `x-request-id` if it is 1–64 characters of `[A-Za-z0-9._-]`, else a new one.
fn request_id(headers: &axum::http::HeaderMap) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let given = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    if let Some(id) = given.filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))) {
        return id.to_string();
    }
    let start = *START.get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    format!("{start:x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The layer on every route that needs `role`: the key checked before
/// anything reads the body (see [`auth`]).
async fn require(role: Role, state: &AppState, mut req: Request, next: Next) -> Response {
    match auth::check(&state.keys(), req.headers(), role) {
        Ok(caller) => {
            let name = caller.name.clone();
            req.extensions_mut().insert(caller);
            let mut resp = next.run(req).await;
            if let Some(name) = name {
                resp.extensions_mut().insert(KeyName(name));
            }
            resp
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

async fn require_analyst(State(state): St, req: Request, next: Next) -> Response {
    require(Role::Analyst, &state, req, next).await
}

async fn require_admin(State(state): St, req: Request, next: Next) -> Response {
    require(Role::Admin, &state, req, next).await
}
