//! `Idempotency-Key` on every POST: the first request with a key runs and
//! its response (any status under 500) is stored in the record store for a
//! day; a retry with the same key and the same request gets that response
//! again (`Idempotent-Replayed: true`) instead of a second job, case or
//! image; the same key with another request is 422; while the first still
//! runs, 409. Keys are per API key. A request whose process died (or whose
//! client left) frees its key.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::routes::{blocking, St};
use super::Caller;
use crate::catalog::store::{Begun, StoredResponse};
use crate::catalog::Catalog;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on a response sent again.
pub const REPLAYED: &str = "idempotent-replayed";
/// Response headers stored with the body.
const KEPT: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];

/// The layer (inside the role check: the caller is known and the body is read only then).
pub async fn idempotent(State(state): St, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(HEADER) {
        return next.run(req).await;
    }
    let key = match key_of(req.headers()) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let caller = req.extensions().get::<Caller>().and_then(|c| c.name.clone()).unwrap_or_default();
    let limit = state.config.max_body_bytes;
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else { return ApiError::TooLarge(limit).into_response() };
    let fingerprint = fingerprint(&parts, &bytes);
    let stale_ms = i64::try_from(state.config.request_timeout.as_millis()).unwrap_or(i64::MAX / 4).saturating_add(60_000);
    let (catalog, c, k) = (state.catalog.clone(), caller.clone(), key.clone());
    let begun = blocking(move || Ok(catalog.records().begin_idempotent(&c, &k, &fingerprint, stale_ms)?)).await;
    match begun {
        Err(e) => return e.into_response(),
        Ok(Begun::Replay(stored)) => return replay(stored),
        Ok(Begun::Mismatch) => return ApiError::IdempotencyReused(key).into_response(),
        Ok(Begun::Running) => return ApiError::IdempotencyInFlight(key).into_response(),
        Ok(Begun::Run) => {}
    }
    let mut pending = Pending { catalog: Some(state.catalog.clone()), caller, key };
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::Internal("unreadable response".into()).into_response();
    };
    let status = parts.status.as_u16();
    let stored =
        (status < 500 && status != 429).then(|| StoredResponse { status, headers: kept_headers(&parts.headers), body: bytes.to_vec() });
    if let Some(catalog) = pending.catalog.take() {
        let (caller, key) = (pending.caller.clone(), pending.key.clone());
        let finished = blocking(move || Ok(catalog.records().finish_idempotent(&caller, &key, stored.as_ref())?)).await;
        if let Err(e) = finished {
            tracing::warn!("idempotency key {}: cannot store the response: {e}", pending.key);
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The key, if it is 1–255 visible ASCII characters.
fn key_of(headers: &HeaderMap) -> Result<String, ApiError> {
    let v = headers.get(HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    if (1..=255).contains(&v.len()) && v.iter().all(|b| (0x21..=0x7e).contains(b)) {
        Ok(String::from_utf8_lossy(v).into_owned())
    } else {
        Err(ApiError::InvalidParameter {
            param: "Idempotency-Key", detail: "an Idempotency-Key is 1–255 visible ASCII characters".into()
        })
    }
}

/// What makes two requests the same: method, path and query, media type, body.
fn fingerprint(parts: &axum::http::request::Parts, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let media = parts.headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
    let mut h = Sha256::new();
    for part in [parts.method.as_str().as_bytes(), parts.uri.to_string().as_bytes(), media] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(body);
    hex::encode(h.finalize())
}

fn kept_headers(headers: &HeaderMap) -> String {
    let kept: serde_json::Map<String, serde_json::Value> =
        KEPT.iter().filter_map(|name| Some((name.as_str().to_string(), headers.get(name)?.to_str().ok()?.into()))).collect();
    serde_json::Value::Object(kept).to_string()
}

/// A stored response, sent again.
fn replay(stored: StoredResponse) -> Response {
    let mut resp = Response::new(Body::from(stored.body));
    *resp.status_mut() = axum::http::StatusCode::from_u16(stored.status).unwrap_or(axum::http::StatusCode::OK);
    let headers: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&stored.headers).unwrap_or_default();
    for (name, value) in headers {
        if let (Ok(n), Some(Ok(v))) = (HeaderName::try_from(name), value.as_str().map(HeaderValue::from_str)) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp.headers_mut().insert(HeaderName::from_static(REPLAYED), HeaderValue::from_static("true"));
    resp
}

/// A key whose request is running; dropped before it is answered (the
/// client left, the request timed out), it frees the key.
struct Pending {
    catalog: Option<std::sync::Arc<Catalog>>,
    caller: String,
    key: String,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(catalog) = self.catalog.take() else { return };
        let (caller, key) = (std::mem::take(&mut self.caller), std::mem::take(&mut self.key));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn_blocking(move || catalog.records().finish_idempotent(&caller, &key, None));
        }
    }
}
