//! Extractors: what a handler needs from a request, parsed once. Every
//! rejection is an [`ApiError`] (problem+json).
//!
//! - [`ImageBody`]: one photo as a raw `image/*` body, a multipart file, or
//!   JSON `{"image_base64"}` / `{"url"}` (fetched, SSRF-checked).
//! - [`BatchBody`]: several photos, as multipart files or JSON `{"images": [...]}`.
//! - [`JsonBody`], [`ApiQuery`], [`ApiPath`]: JSON, query and path with problem+json rejections.
//!
//! The API key is checked before any of these run ([`super::auth::require`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::header;
use base64::Engine;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::types::{BatchRequest, ImageJson};
use super::AppState;

/// The request's media type, lower-cased, without parameters.
fn media_type(req: &Request) -> String {
    let full = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    full.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// How long, and how many bytes past the limit, an over-limit upload is read
/// on and thrown away before the 413 goes out. A server that closes a
/// connection with unread data makes the kernel send a reset, and the client's
/// kernel then drops the 413 it had already received: the client sees
/// "connection reset" or "broken pipe" instead of a clear answer. Uploads
/// declared (or sent) beyond limit + limit are cut off without reading.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole body, at most `limit` bytes (413 beyond it, after draining the
/// rest of a moderately oversized upload; see [`DRAIN_TIME`]).
async fn body_bytes(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = req.into_body();
    // What is read on past the limit before answering 413: as much again.
    let drain_budget = limit.saturating_mul(2);
    if declared.is_some_and(|n| n > limit as u64) {
        if declared.is_some_and(|n| n <= drain_budget as u64) {
            drain(body, drain_budget).await;
        }
        return Err(ApiError::TooLarge(limit));
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ApiError::TooLarge(limit))?.into_data() else { continue };
        if buf.len() + data.len() > limit {
            drain(body, drain_budget.saturating_sub(buf.len())).await;
            return Err(ApiError::TooLarge(limit));
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

/// Reads and throws away the body of a request that is answered without it
/// (a wrong key): as much as an over-limit upload is (see [`DRAIN_TIME`]),
/// never parsed.
pub async fn discard_body(req: Request, limit: usize) {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_none_or(|n| n > 0 && n <= limit.saturating_mul(2) as u64) {
        drain(req.into_body(), limit.saturating_mul(2)).await;
    }
}

/// Reads and discards at most `max` more bytes of `body`, for at most [`DRAIN_TIME`].
async fn drain(mut body: axum::body::Body, max: usize) {
    use http_body_util::BodyExt;
    let discard = async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > max {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

fn multipart_error(e: &axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE || e.body_text().to_ascii_lowercase().contains("limit") {
        ApiError::TooLarge(limit)
    } else {
        ApiError::BadRequest(format!("invalid multipart body: {}", e.body_text()))
    }
}

/// Multipart fields, each at most the body limit in all (413 beyond it).
async fn multipart_files(req: Request, limit: usize, max: usize) -> Result<(Vec<Bytes>, bool), ApiError> {
    // Read the body first (with the limit and the drain), then parse it.
    let (parts, body) = req.into_parts();
    let bytes = body_bytes(Request::from_parts(parts.clone(), body), limit).await?;
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (mut files, mut too_many) = (Vec::new(), false);
    while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(&e, limit))? {
        let is_file = field.file_name().is_some() || matches!(field.name(), Some("image" | "file"));
        let bytes = field.bytes().await.map_err(|e| multipart_error(&e, limit))?;
        if is_file && files.len() < max {
            files.push(bytes);
        } else if is_file {
            too_many = true;
        }
    }
    Ok((files, too_many))
}

/// Decodes base64 or fetches a URL (http(s) only, SSRF-checked, same size
/// and time limits as uploads).
pub async fn image_from_json(state: &AppState, j: ImageJson) -> Result<Bytes, ApiError> {
    match (j.image_base64, j.url) {
        (Some(b), None) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map(Bytes::from)
            .map_err(|e| ApiError::BadRequest(format!("image_base64 is not valid base64: {e}"))),
        (None, Some(url)) => {
            let opts = crate::ingest::FetchOptions {
                max_bytes: state.config.max_body_bytes as u64,
                timeout: state.config.request_timeout,
                retries: 1,
                allow_private: state.config.allow_private_urls,
                allow_files: false,
            };
            let res = tokio::task::spawn_blocking(move || crate::ingest::fetch(&url, &opts))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            match res {
                Ok(b) => Ok(Bytes::from(b)),
                Err(crate::ingest::IngestError::Fetch { detail, source_name }) => {
                    Err(ApiError::FetchFailed(format!("cannot fetch {source_name}: {detail}")))
                }
                Err(e) => Err(ApiError::FetchFailed(e.to_string())),
            }
        }
        _ => Err(ApiError::BadRequest("give exactly one of image_base64 or url".into())),
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// A photo as the request gave it: bytes, or JSON naming base64 or a URL.
#[derive(Debug)]
pub enum ImageInput {
    Bytes(Bytes),
    Json(ImageJson),
}

/// Reads one photo from a request: one content-type parse, the body limit
/// for every form (413 beyond it). No state: the fuzz tests call it directly.
pub async fn read_image(req: Request, limit: usize) -> Result<ImageInput, ApiError> {
    let ctype = media_type(&req);
    match ctype.as_str() {
        "multipart/form-data" => {
            let (files, _) = multipart_files(req, limit, 1).await?;
            files.into_iter().next().map(ImageInput::Bytes).ok_or_else(|| ApiError::BadRequest("multipart body has no file field".into()))
        }
        "application/json" => parse_json(&body_bytes(req, limit).await?).map(ImageInput::Json),
        t if t.starts_with("image/") || t == "application/octet-stream" => body_bytes(req, limit).await.map(ImageInput::Bytes),
        _ => {
            let _ = body_bytes(req, limit).await;
            Err(ApiError::UnsupportedMedia(if ctype.is_empty() { "(none)".into() } else { ctype }))
        }
    }
}

/// Reads a batch of photos: multipart files or JSON `{"images": [...]}`, at most `max`.
pub async fn read_batch(req: Request, limit: usize, max: usize) -> Result<Vec<ImageInput>, ApiError> {
    let too_many = || ApiError::BadRequest(format!("a batch holds at most {max} photos"));
    let items: Vec<ImageInput> = match media_type(&req).as_str() {
        "multipart/form-data" => {
            let (files, over) = multipart_files(req, limit, max).await?;
            if over {
                return Err(too_many());
            }
            files.into_iter().map(ImageInput::Bytes).collect()
        }
        "application/json" => {
            let j: BatchRequest = parse_json(&body_bytes(req, limit).await?)?;
            if j.images.len() > max {
                return Err(too_many());
            }
            j.images.into_iter().map(ImageInput::Json).collect()
        }
        other => {
            let other = other.to_string();
            let _ = body_bytes(req, limit).await;
            return Err(ApiError::UnsupportedMedia(other));
        }
    };
    if items.is_empty() {
        return Err(ApiError::BadRequest("the batch is empty".into()));
    }
    Ok(items)
}

/// The bytes of a photo given in any form (fetching URLs with the service's limits).
async fn resolve(state: &AppState, input: ImageInput) -> Result<Bytes, ApiError> {
    match input {
        ImageInput::Bytes(b) => Ok(b),
        ImageInput::Json(j) => image_from_json(state, j).await,
    }
}

/// One photo's bytes.
pub struct ImageBody(pub Bytes);

impl FromRequest<Arc<AppState>> for ImageBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let input = read_image(req, state.config.max_body_bytes).await?;
        resolve(state, input).await.map(ImageBody)
    }
}

/// A batch of photos: each item its bytes or its own error (a bad URL or base64).
pub struct BatchBody(pub Vec<Result<Bytes, ApiError>>);

impl FromRequest<Arc<AppState>> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let inputs = read_batch(req, state.config.max_body_bytes, state.config.max_batch).await?;
        let mut items = Vec::with_capacity(inputs.len());
        for input in inputs {
            items.push(resolve(state, input).await);
        }
        Ok(BatchBody(items))
    }
}

/// A JSON body of type `T`, read with the service's body limit.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        parse_json(&body_bytes(req, state.config.max_body_bytes).await?).map(JsonBody)
    }
}

/// A text body (a manifest) with its media type, read with the service's body limit.
pub struct TextBody {
    pub media_type: String,
    pub text: String,
}

impl FromRequest<Arc<AppState>> for TextBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let media_type = media_type(&req);
        let body = body_bytes(req, state.config.max_body_bytes).await?;
        let text = String::from_utf8(body.to_vec()).map_err(|e| {
            let line = 1 + body[..e.utf8_error().valid_up_to()].split(|b| *b == b'\n').count() - 1;
            ApiError::BadRequest(format!("the body is not UTF-8 (first bad byte on line {line})"))
        })?;
        Ok(TextBody { media_type, text })
    }
}

/// `axum::extract::Query` with a problem+json rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with a problem+json rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
