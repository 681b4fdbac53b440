//! Seller networks (analyst role): `GET /v1/clusters` and `GET /v1/clusters/{id}`,
//! each one [`crate::review::clusters`] call.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::{blocking, St};
use crate::api::error::ApiError;
use crate::api::extract::{ApiPath, ApiQuery};
use crate::api::pages::ClusterList;
use crate::review::{clusters, Cluster, ReviewError};

/// The page of `GET /v1/clusters`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClusterParams {
    /// The `id` of the last cluster of the previous page (absent: the first page).
    pub starting_after: Option<String>,
    /// Clusters per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<usize>,
}

/// Lists seller networks (clusters of at least two cases whose photos copy
/// one another or the same known fake), newest first, a page at a time.
#[utoipa::path(get, path = "/v1/clusters", tag = "review", params(ClusterParams), responses((status = 200, body = ClusterList)))]
pub async fn list_clusters(State(state): St, query: Result<ApiQuery<ClusterParams>, ApiError>) -> Result<Json<ClusterList>, ApiError> {
    let p = query?.0;
    let limit = p.limit.unwrap_or(20);
    blocking(move || Ok(clusters::list(&state.catalog, limit, p.starting_after.as_deref())?.into())).await.map(Json)
}

/// One seller network: its sellers, listings, first and last seen, the photos they share and why they are together.
#[utoipa::path(get, path = "/v1/clusters/{id}", tag = "review", params(("id" = i64, Path)), responses((status = 200, body = Cluster)))]
pub async fn get_cluster(State(state): St, ApiPath(id): ApiPath<String>) -> Result<Json<Cluster>, ApiError> {
    let id: i64 =
        id.parse().map_err(|_| ApiError::InvalidParameter { param: "id", detail: format!("cluster id must be an integer, not '{id}'") })?;
    blocking(move || Ok(clusters::get(&state.catalog, id)?.ok_or(ReviewError::UnknownCluster(id))?)).await.map(Json)
}
