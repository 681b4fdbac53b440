//! Operations: the analyst's page, health, readiness, metrics, stats (the
//! `OpenAPI` document is served by [`crate::api::openapi`]).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use super::{blocking, St};
use crate::api::error::ApiError;
use crate::api::types::{Problem, Ready, StatsOut};

/// The analyst's page, embedded in the binary (no CDN).
#[utoipa::path(get, path = "/", tag = "operations", responses((status = 200, description = "the analyst web page", body = String, content_type = "text/html")))]
pub async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("../web/index.html"))
}

/// The review queue page: analysts decide cases from the keyboard (embedded in the binary).
#[utoipa::path(get, path = "/review", tag = "review", responses((status = 200, description = "the review queue page", body = String, content_type = "text/html")))]
pub async fn review_page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("../web/review.html"))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "model and index loaded", body = Ready),
    (status = 503, description = "a dependency of the shared backend (PostgreSQL, Milvus) is down: the problem's detail names it", body = Problem)))]
pub async fn readyz(State(state): St) -> Result<Json<Ready>, ApiError> {
    let st = state.clone();
    let down = blocking(move || Ok(st.catalog.health())).await?;
    let down: Vec<String> = down.into_iter().filter_map(|(name, e)| e.map(|e| format!("{name} is down ({e})"))).collect();
    if !down.is_empty() {
        return Err(ApiError::Unavailable(down.join("; ")));
    }
    let st = state.clone();
    let s = blocking(move || Ok(st.catalog.stats()?)).await?;
    let empty = s.counts.images == 0;
    let note = empty.then(|| "the catalog is empty: every lookup is no_match until images are added (POST /v1/products/{id}/images, POST /v1/jobs/index or knockoff index)".to_string());
    Ok(Json(Ready { ready: true, model: state.embedder.name().to_string(), images: s.graph_points, note }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): St) -> Result<impl IntoResponse, ApiError> {
    let st = state.clone();
    let s = blocking(move || Ok(st.catalog.stats()?)).await?;
    Ok(([(header::CONTENT_TYPE, crate::api::metrics::CONTENT_TYPE)], state.metrics.render(&s, &state.runtime())))
}

#[utoipa::path(get, path = "/v1/stats", tag = "operations", responses((status = 200, description = "catalog counts and index parameters", body = StatsOut)))]
pub async fn stats(State(state): St) -> Result<Json<StatsOut>, ApiError> {
    let info = state.verdicts().info.clone();
    let refits = state.refit.counts();
    let mut out: StatsOut = blocking(move || Ok(state.catalog.stats()?)).await?.into();
    out.calibration = info.map(Into::into);
    out.refits = Some(refits);
    Ok(Json(out))
}
