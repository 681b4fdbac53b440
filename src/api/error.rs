//! The one place where errors become HTTP: `application/problem+json`
//! (RFC 9457) with a stable `type`, for every error the service answers,
//! including extractor rejections.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::types::Problem;
use crate::catalog::CatalogError;
use crate::embed::EmbedError;
use crate::ingest::jobs::JobError;
use crate::review::ReviewError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// One query or path parameter is at fault (`param` names it).
    #[error("{detail}")]
    InvalidParameter { param: &'static str, detail: String },
    /// A JSON body that does not parse or has the wrong shape.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A photo given by URL that could not be fetched.
    #[error("{0}")]
    FetchFailed(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this API key's role may not {0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    TooManyItems(String),
    /// A write based on a version of the record that is no longer current (its current `ETag`).
    #[error("{detail}")]
    Stale { detail: String, etag: String },
    #[error("{0}")]
    Conflict(String),
    #[error("this write needs an If-Match header with the ETag of the record as read (GET it first)")]
    PreconditionRequired,
    #[error("{0}")]
    Unprocessable(String),
    /// An `Idempotency-Key` sent before with a different request.
    #[error("Idempotency-Key '{0}' was used for a different request (method, path, query, media type or body)")]
    IdempotencyReused(String),
    /// An `Idempotency-Key` whose first request is still running.
    #[error("a request with Idempotency-Key '{0}' is still running; retry when it has answered")]
    IdempotencyInFlight(String),
    #[error("unsupported media type {0}; send an image (image/*), multipart/form-data with a file, or JSON {{\"image_base64\": ...}}")]
    UnsupportedMedia(String),
    #[error(transparent)]
    Image(EmbedError),
    #[error("the inference queue is full; retry shortly")]
    Busy,
    #[error("the request took longer than {0} ms")]
    Timeout(u128),
    /// A dependency of the shared backend (PostgreSQL, Milvus) is down.
    #[error("{0}; retry shortly")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::InvalidParameter { .. } => (StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid-json", "Invalid JSON"),
            ApiError::FetchFailed(_) => (StatusCode::BAD_REQUEST, "fetch-failed", "Cannot fetch the photo"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Payload too large"),
            ApiError::TooManyItems(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too-many-items", "Too many items"),
            ApiError::Stale { .. } => (StatusCode::CONFLICT, "stale", "Changed since read"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::PreconditionRequired => (StatusCode::PRECONDITION_REQUIRED, "precondition-required", "If-Match required"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", "Unprocessable"),
            ApiError::IdempotencyReused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency key reused"),
            ApiError::IdempotencyInFlight(_) => (StatusCode::CONFLICT, "idempotency-key-in-use", "Idempotency key in use"),
            ApiError::UnsupportedMedia(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type"),
            ApiError::Image(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-image", "Invalid image"),
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy", "Service busy"),
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request timed out"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "dependency-unavailable", "Dependency unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The problem document (also used for per-item errors in batch answers):
    /// `type` a URI and `code` the same kind as a stable identifier
    /// (`invalid_parameter`, `invalid_json`, `fetch_failed`, `image_too_large`, …),
    /// with `param` where one parameter is at fault.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        let (kind, code) = match self {
            ApiError::Image(e) => {
                (format!("https://knockoff.dev/problems/invalid-image/{}", e.kind()), format!("image_{}", e.kind().replace('-', "_")))
            }
            _ => (format!("https://knockoff.dev/problems/{slug}"), slug.replace('-', "_")),
        };
        let param = match self {
            ApiError::InvalidParameter { param, .. } => Some((*param).to_string()),
            _ => None,
        };
        Problem { kind, code, param, title: title.into(), status: status.as_u16(), detail: self.to_string(), request_id: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if matches!(self, ApiError::Busy | ApiError::Timeout(_)) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let ApiError::Stale { etag, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(etag) {
                resp.headers_mut().insert(header::ETAG, v);
            }
        }
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The `ETag` of a versioned record (a review case) at `version`.
#[must_use]
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> Self {
        if e.is_input_error() {
            ApiError::Image(e)
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<crate::search::explain::ExplainError> for ApiError {
    fn from(e: crate::search::explain::ExplainError) -> Self {
        use crate::search::explain::ExplainError;
        match e {
            ExplainError::Catalog(e) => e.into(),
            ExplainError::Draw(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::UnknownProduct(_) | CatalogError::ProductDeleted(_) | CatalogError::UnknownImage(_) => {
                ApiError::NotFound(e.to_string())
            }
            CatalogError::Invalid { .. } | CatalogError::Dimension { .. } => ApiError::BadRequest(e.to_string()),
            CatalogError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::UnknownCase(_) | ReviewError::UnknownCluster(_) => ApiError::NotFound(e.to_string()),
            ReviewError::UnknownProduct(_) | ReviewError::Invalid { field: "product_id", .. } => ApiError::Unprocessable(e.to_string()),
            ReviewError::Invalid { field: "decision", .. } | ReviewError::NotDecided(_) => ApiError::Conflict(e.to_string()),
            ReviewError::Invalid { field: param @ ("limit" | "starting_after"), .. } => {
                ApiError::InvalidParameter { param, detail: e.to_string() }
            }
            ReviewError::Invalid { .. } => ApiError::BadRequest(e.to_string()),
            ReviewError::Stale { current, .. } => ApiError::Stale { detail: e.to_string(), etag: etag(current) },
            ReviewError::Photo(p) => p.into(),
            ReviewError::Explain(x) => x.into(),
            ReviewError::Catalog(c) => c.into(),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            JobError::Unknown(_) => ApiError::NotFound(e.to_string()),
            JobError::TooMany => ApiError::TooManyItems(e.to_string()),
            JobError::Abandoned => ApiError::Timeout(0),
            JobError::Catalog(c) => c.into(),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(format!("invalid query string: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::BadRequest(format!("invalid path: {}", e.body_text()))
    }
}
