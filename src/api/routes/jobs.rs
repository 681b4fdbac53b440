//! Indexing jobs over HTTP (admin): the library's [`crate::ingest::jobs::JobQueue`] does the work.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::{blocking, St};
use crate::api::error::ApiError;
use crate::api::extract::{ApiPath, TextBody};
use crate::api::types::{JobAccepted, JobView};
use crate::ingest::ManifestFormat;

/// A manifest upload (`text/csv`, `application/x-ndjson`) or JSON:
/// `{"items": [{"image", "product_id", "label", ...}]}` or
/// `{"urls": [...], "product_id": ..., "label": ..., "brand"?, "name"?, "category"?}`.
#[utoipa::path(post, path = "/v1/jobs/index", tag = "jobs",
    request_body(content = String, content_type = "text/csv", description = "A manifest (text/csv or application/x-ndjson), or application/json {\"items\": [...]} / {\"urls\": [...], \"product_id\", \"label\"}."),
    responses((status = 202, body = JobAccepted)))]
pub async fn submit_job(State(state): St, body: Result<TextBody, ApiError>) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let TextBody { media_type, text } = body?;
    let (format, text) = match media_type.as_str() {
        "text/csv" => (ManifestFormat::Csv, text),
        "application/x-ndjson" | "application/jsonl" => (ManifestFormat::JsonLines, text),
        "application/json" => (ManifestFormat::JsonLines, json_job_to_jsonl(&text)?),
        _ => return Err(ApiError::UnsupportedMedia(media_type)),
    };
    let id = blocking(move || Ok(state.jobs.submit(format, &text)?)).await?;
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { id, status: "queued".into() })))
}

fn json_job_to_jsonl(text: &str) -> Result<String, ApiError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    let rows: Vec<serde_json::Value> = if let Some(items) = v.get("items").and_then(|i| i.as_array()) {
        items.clone()
    } else if let Some(urls) = v.get("urls").and_then(|u| u.as_array()) {
        urls.iter()
            .map(|u| {
                let mut row = serde_json::Map::new();
                row.insert("image".into(), u.clone());
                for k in ["product_id", "label", "brand", "name", "category"] {
                    if let Some(x) = v.get(k) {
                        row.insert(k.into(), x.clone());
                    }
                }
                serde_json::Value::Object(row)
            })
            .collect()
    } else {
        return Err(ApiError::BadRequest("expected {\"items\": [...]} or {\"urls\": [...], \"product_id\": ..., \"label\": ...}".into()));
    };
    if rows.is_empty() {
        return Err(ApiError::BadRequest("the job has no items".into()));
    }
    Ok(rows.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)), responses((status = 200, body = JobView)))]
pub async fn get_job(State(state): St, ApiPath(id): ApiPath<String>) -> Result<Json<JobView>, ApiError> {
    blocking(move || Ok(state.jobs.get(&id)?.into())).await.map(Json)
}
