//! Webhook targets (admin): their state, and enabling one a receiver's 410
//! disabled. Each handler translates to one [`crate::webhooks`] call.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::{blocking, St};
use crate::api::error::ApiError;
use crate::api::extract::ApiPath;
use crate::webhooks::TargetView;

/// The configured webhook targets: events, delivery counts, disabled or not.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", responses((status = 200, body = Vec<TargetView>)))]
pub async fn list_webhooks(State(state): St) -> Result<Json<Vec<TargetView>>, ApiError> {
    blocking(move || Ok(Json(crate::webhooks::status(&state.catalog, &state.config.webhooks)?))).await
}

/// Sends to a target again after its receiver answered 410 Gone (deliveries waiting go out in order).
#[utoipa::path(post, path = "/v1/webhooks/{name}/enable", tag = "webhooks",
    params(("name" = String, Path, description = "the target's name (percent-encoded)")),
    responses((status = 204, description = "enabled"), (status = 404, description = "no such target")))]
pub async fn enable_webhook(State(state): St, ApiPath(name): ApiPath<String>) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if crate::webhooks::enable(&state.catalog, &state.config.webhooks, &name)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::NotFound(format!("no webhook target named '{name}' has run")))
        }
    })
    .await
}
