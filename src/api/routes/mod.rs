//! The handlers, split by area: [`lookup`], [`catalog`], [`jobs`], [`cases`] (review), [`webhooks`], [`ops`]
//! (page, health, metrics, stats); the router that serves them is
//! [`super::router`].

pub mod cases;
pub mod catalog;
pub mod clusters;
pub mod jobs;
pub mod lookup;
pub mod ops;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::State;

use super::error::ApiError;
use super::AppState;

pub type St = State<Arc<AppState>>;

/// Runs blocking library work off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(e.to_string()))?
}
