//! Lists a page at a time (`limit`, `starting_after`, `has_more`), and the
//! job records they and `GET /v1/jobs/{id}` show.

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::types::Label;
use crate::catalog::{JobSummary, Page, Product};
use crate::ingest::jobs::JobRecord;

/// Items a page holds unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

/// Which page of a list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items on the page (1–200, default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<usize>,
    /// The id of the last item of the previous page (absent: the first page).
    pub starting_after: Option<String>,
}

impl ListParams {
    /// The page size asked for, checked.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            n @ 1..=MAX_LIMIT => Ok(n),
            n => Err(ApiError::InvalidParameter { param: "limit", detail: format!("limit must be between 1 and {MAX_LIMIT}, not {n}") }),
        }
    }

    /// Where the page starts (`""`: the first page).
    #[must_use]
    pub fn after(&self) -> &str {
        self.starting_after.as_deref().unwrap_or("")
    }
}

/// A product as a list shows it (`GET /v1/products/{id}` adds its images).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductSummary {
    pub product_id: String,
    pub label: Label,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
}

/// A page of products, in id order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductList {
    pub data: Vec<ProductSummary>,
    /// Whether more follow: ask again with `starting_after` = the last `product_id`.
    pub has_more: bool,
}

impl From<Page<Product>> for ProductList {
    fn from(p: Page<Product>) -> Self {
        let data = p
            .items
            .into_iter()
            .map(|p| ProductSummary { product_id: p.product_id, label: p.label.into(), brand: p.brand, name: p.name, category: p.category })
            .collect();
        ProductList { data, has_more: p.has_more }
    }
}

/// A page of review cases, in the order asked for (most worth reviewing first, or newest first).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseList {
    pub data: Vec<crate::review::Case>,
    /// Whether more follow: ask again with `starting_after` = the last `id`.
    pub has_more: bool,
}

impl From<Page<crate::review::Case>> for CaseList {
    fn from(p: Page<crate::review::Case>) -> Self {
        CaseList { data: p.items, has_more: p.has_more }
    }
}

/// A page of seller networks, newest first (by their first case).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterList {
    pub data: Vec<crate::review::Cluster>,
    /// Whether more follow: ask again with `starting_after` = the last `id`.
    pub has_more: bool,
}

impl From<Page<crate::review::Cluster>> for ClusterList {
    fn from(p: Page<crate::review::Cluster>) -> Self {
        ClusterList { data: p.items, has_more: p.has_more }
    }
}

/// A page of jobs, newest first, without their per-item errors (`GET /v1/jobs/{id}` has them).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub data: Vec<JobView>,
    /// Whether more follow: ask again with `starting_after` = the last `id`.
    pub has_more: bool,
}

impl From<Page<JobSummary>> for JobList {
    fn from(p: Page<JobSummary>) -> Self {
        let data = p
            .items
            .into_iter()
            .map(|j| JobView {
                id: j.id,
                status: j.status,
                created_at: j.created_at,
                updated_at: j.updated_at,
                counts: serde_json::from_str(&j.counts).unwrap_or_default(),
                errors: serde_json::Value::Null,
                message: j.message,
                runner: None,
            })
            .collect();
        JobList { data, has_more: p.has_more }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobAccepted {
    pub id: String,
    /// Always `queued`.
    pub status: String,
}

/// An indexing job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    /// `done`: every item indexed; `done_with_errors`: some failed; `failed`: none indexed.
    pub status: crate::catalog::JobStatus,
    pub created_at: String,
    pub updated_at: String,
    /// `{total, indexed, skipped, failed}`.
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    /// Per-item errors `[{image, product_id, kind, reason}]` (first 1000; not in lists).
    #[schema(value_type = Vec<Object>)]
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub errors: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The replica (`host:pid`) that runs or ran it (shared backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
}

impl From<JobRecord> for JobView {
    fn from(j: JobRecord) -> Self {
        JobView {
            id: j.id,
            status: j.status,
            created_at: j.created_at,
            updated_at: j.updated_at,
            counts: serde_json::to_value(j.counts).unwrap_or_default(),
            errors: serde_json::to_value(j.errors).unwrap_or_default(),
            message: j.message,
            runner: j.runner,
        }
    }
}
