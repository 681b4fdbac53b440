//! Indexing jobs over HTTP (admin): the library's [`crate::ingest::jobs::JobQueue`] does the work.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::{blocking, St};
use crate::api::bodies::{JobJson, ManifestText};
use crate::api::error::ApiError;
use crate::api::extract::{ApiPath, ApiQuery, TextBody};
use crate::api::pages::{JobList, ListParams};
use crate::api::types::{JobAccepted, JobView};
use crate::ingest::jobs::{JobError, MAX_JOB_ITEMS};
use crate::ingest::ManifestFormat;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A manifest upload (`text/csv`, `application/x-ndjson`) or JSON:
/// `{"items": [{"image", "product_id", "label", ...}]}` or
/// `{"urls": [...], "product_id": ..., "label": ..., "brand"?, "name"?, "category"?}`.
#[utoipa::path(post, path = "/v1/jobs/index", tag = "jobs",
    request_body(description = "A manifest (text/csv or application/x-ndjson), or JSON: {\"items\": [...]} or {\"urls\": [...], \"product_id\", \"label\"}.",
        content((ManifestText = "text/csv"), (ManifestText = "application/x-ndjson"), (JobJson = "application/json"))),
    responses((status = 202, body = JobAccepted, headers(("Location" = String, description = "the job's URL, /v1/jobs/{id}")))))]
pub async fn submit_job(State(state): St, body: Result<TextBody, ApiError>) -> Result<impl IntoResponse, ApiError> {
    let TextBody { media_type, text } = body?;
    let (format, text) = match media_type.as_str() {
        "text/csv" => (ManifestFormat::Csv, text),
        "application/x-ndjson" | "application/jsonl" => (ManifestFormat::JsonLines, text),
        "application/json" => (ManifestFormat::JsonLines, json_job_to_jsonl(&text)?),
        _ => return Err(ApiError::UnsupportedMedia(media_type)),
    };
    // Dropped with this request (a timeout, the client gone): the job is then not stored.
    let wanted = Wanted::default();
    let flag = wanted.0.clone();
    let id = blocking(move || Ok(state.jobs.submit(format, &text, &|| flag.load(Ordering::SeqCst))?)).await?;
    drop(wanted);
    let location = format!("/v1/jobs/{id}");
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(JobAccepted { id, status: "queued".into() })))
}

/// True until the request that holds it is dropped (once the job is stored, that changes nothing).
struct Wanted(Arc<AtomicBool>);

impl Default for Wanted {
    fn default() -> Self {
        Wanted(Arc::new(AtomicBool::new(true)))
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// How many items a JSON job names, counted without building them; more
/// than [`MAX_JOB_ITEMS`] stops the count.
#[derive(Default, Clone, Copy)]
struct Count(usize);

impl<'de> serde::Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                    if n > MAX_JOB_ITEMS {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                }
                Ok(Count(n))
            }
        }
        d.deserialize_seq(Visit)
    }
}

const TOO_MANY: &str = "too many items";

#[derive(serde::Deserialize)]
struct Shape {
    #[serde(default)]
    items: Option<Count>,
    #[serde(default)]
    urls: Option<Count>,
}

fn json_job_to_jsonl(text: &str) -> Result<String, ApiError> {
    match serde_json::from_str::<Shape>(text) {
        Err(e) if e.to_string().starts_with(TOO_MANY) => return Err(JobError::TooMany.into()),
        Err(e) => return Err(ApiError::InvalidJson(e.to_string())),
        Ok(Shape { items, urls }) if items.or(urls).is_some_and(|c| c.0 == 0) => {
            return Err(ApiError::BadRequest("the job has no items".into()))
        }
        Ok(_) => {}
    }
    let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let rows: Vec<serde_json::Value> = if let Some(items) = v.get_mut("items").and_then(|i| i.as_array_mut()) {
        std::mem::take(items)
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

/// Lists the stored jobs, a page at a time, newest first (an unknown `starting_after` is 400).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListParams), responses((status = 200, body = JobList)))]
pub async fn list_jobs(State(state): St, query: Result<ApiQuery<ListParams>, ApiError>) -> Result<Json<JobList>, ApiError> {
    let q = query?.0;
    let limit = q.limit()?;
    blocking(move || match state.jobs.page(q.after(), limit) {
        Ok(page) => Ok(page.into()),
        Err(JobError::Unknown(id)) => {
            Err(ApiError::InvalidParameter { param: "starting_after", detail: format!("starting_after names no job ('{id}')") })
        }
        Err(e) => Err(e.into()),
    })
    .await
    .map(Json)
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)), responses((status = 200, body = JobView)))]
pub async fn get_job(State(state): St, ApiPath(id): ApiPath<String>) -> Result<Json<JobView>, ApiError> {
    blocking(move || Ok(state.jobs.get(&id)?.into())).await.map(Json)
}
