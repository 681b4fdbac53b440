//! Request and response bodies of the HTTP API (kept apart from storage types).

use serde::{Deserialize, Serialize};

use crate::catalog::Label;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupParams {
    pub k: Option<usize>,
    pub brand: Option<String>,
    pub label: Option<String>,
    pub category: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageJson {
    pub image_base64: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timing {
    pub embed_ms: f64,
    pub search_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueryInfo {
    pub sha256: String,
    pub bytes: usize,
    pub model: String,
    pub timing: Timing,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MatchOut {
    pub product_id: String,
    pub label: Label,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    pub image_id: i64,
    pub similarity: f32,
    pub confidence: f32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LookupResponse {
    pub query: QueryInfo,
    pub matches: Vec<MatchOut>,
    pub verdict: crate::search::VerdictKind,
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductIn {
    pub label: String,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImageOut {
    pub image_id: i64,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub source: String,
    pub added_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductOut {
    pub product_id: String,
    pub label: Label,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub images: Vec<ImageOut>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddImageOut {
    pub product_id: String,
    /// The new image's id, or the existing one's when these bytes were already indexed.
    pub image_id: Option<i64>,
    pub already_indexed: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub images: Vec<ImageJson>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<LookupResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Problem>)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchItem>,
}

/// An error (RFC 9457 problem details), served as `application/problem+json`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem, e.g. `https://knockoff.dev/problems/invalid-image/truncated`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}
