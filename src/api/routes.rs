//! Route handlers: parse, check the key, call the library, shape the answer.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use utoipa::OpenApi;

use super::auth::Role;
use super::error::ApiError;
use super::types::*;
use super::AppState;
use crate::catalog::{Filter, Label, NewImage, Product};
use crate::search::{decide, search_products, SearchRequest};

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/readyz", get(readyz))
        .route("/v1/lookup", post(lookup))
        .route("/v1/lookup/batch", post(lookup_batch))
        .route("/metrics", get(metrics))
        .route("/v1/stats", get(stats))
        .route("/v1/products/{id}", get(get_product).put(put_product).delete(delete_product))
        .route("/v1/products/{id}/images", post(add_image))
        .route("/v1/images/{id}", delete(delete_image))
        .route("/v1/images/{id}/thumbnail", get(thumbnail))
        .route("/v1/jobs/index", post(submit_job))
        .route("/v1/jobs/{id}", get(get_job))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

fn require(state: &AppState, headers: &HeaderMap, role: Role, what: &'static str) -> Result<(), ApiError> {
    if state.keys.is_empty() {
        return Ok(()); // open, loopback only (enforced at start)
    }
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    let key = state.keys.check(secret.trim()).ok_or(ApiError::Unauthorized)?;
    if key.role < role {
        return Err(ApiError::Forbidden(what));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Fetches an image by URL for a lookup: http(s) only, SSRF-checked, same
/// size and time limits as uploads.
async fn fetch_url(state: &AppState, url: String) -> Result<Bytes, ApiError> {
    let opts = crate::ingest::FetchOptions {
        max_bytes: state.config.max_body_bytes as u64,
        timeout: state.config.request_timeout,
        retries: 1,
        allow_private: state.config.allow_private_urls,
        allow_files: false,
    };
    let res =
        tokio::task::spawn_blocking(move || crate::ingest::fetch(&url, &opts)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    match res {
        Ok(b) => Ok(Bytes::from(b)),
        Err(crate::ingest::IngestError::Fetch { detail, source_name }) => {
            Err(ApiError::BadRequest(format!("cannot fetch {source_name}: {detail}")))
        }
        Err(e) => Err(ApiError::BadRequest(e.to_string())),
    }
}

async fn decode_image_json(state: &AppState, j: ImageJson) -> Result<Bytes, ApiError> {
    match (j.image_base64, j.url) {
        (Some(b), None) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map(Bytes::from)
            .map_err(|e| ApiError::BadRequest(format!("image_base64 is not valid base64: {e}"))),
        (None, Some(u)) => fetch_url(state, u).await,
        _ => Err(ApiError::BadRequest("give exactly one of image_base64 or url".into())),
    }
}

/// The image bytes of a request: a raw `image/*` (or octet-stream) body, a
/// multipart file, or JSON `{"image_base64": ...}` / `{"url": ...}`.
async fn image_bytes(state: &AppState, req: Request) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    let ctype = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let too_large = |_| ApiError::TooLarge(limit);
    if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &()).await.map_err(|e| ApiError::BadRequest(e.to_string()))?;
        while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(e.to_string(), limit))? {
            if field.file_name().is_some() || matches!(field.name(), Some("image" | "file")) {
                return field.bytes().await.map_err(|e| multipart_error(e.to_string(), limit));
            }
        }
        return Err(ApiError::BadRequest("multipart body has no file field".into()));
    }
    let body = axum::body::to_bytes(req.into_body(), limit).await.map_err(too_large)?;
    if ctype.starts_with("application/json") {
        let j: ImageJson = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
        return decode_image_json(state, j).await;
    }
    if ctype.starts_with("image/") || ctype.starts_with("application/octet-stream") {
        return Ok(body);
    }
    Err(ApiError::UnsupportedMedia(if ctype.is_empty() { "(none)".into() } else { ctype }))
}

fn multipart_error(msg: String, limit: usize) -> ApiError {
    if msg.to_ascii_lowercase().contains("limit") {
        ApiError::TooLarge(limit)
    } else {
        ApiError::BadRequest(format!("invalid multipart body: {msg}"))
    }
}

/// Checks that may fail before the body is used; the body is read either way,
/// so that a client still sending it gets the error instead of a broken pipe.
async fn checked_body(state: &AppState, req: Request, checks: Result<(), ApiError>) -> Result<Bytes, ApiError> {
    let body = image_bytes(state, req).await;
    checks?;
    body
}

fn lookup_filter(state: &AppState, headers: &HeaderMap, q: LookupParams) -> Result<(usize, Filter), ApiError> {
    require(state, headers, Role::Read, "look up")?;
    let k = q.k.unwrap_or(5);
    if k == 0 || k > state.config.max_k {
        return Err(ApiError::BadRequest(format!("k must be between 1 and {}", state.config.max_k)));
    }
    let label = match q.label.as_deref() {
        Some(l) => Some(l.parse::<Label>().map_err(ApiError::BadRequest)?),
        None => None,
    };
    Ok((k, Filter { brand: q.brand, label, category: q.category }))
}

#[utoipa::path(post, path = "/v1/lookup", tag = "lookup", params(LookupParams),
    request_body(content = Vec<u8>, content_type = "image/*", description = "The photo: a raw image body, multipart/form-data with a file, or application/json {\"image_base64\"} / {\"url\"} (ImageJson)."),
    responses((status = 200, body = LookupResponse), (status = 400, description = "invalid parameters or JSON", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json"), (status = 413, description = "body over the limit", body = Problem, content_type = "application/problem+json"), (status = 415, description = "unsupported media type", body = Problem, content_type = "application/problem+json"), (status = 422, description = "undecodable, truncated, empty or over-pixel-limit image", body = Problem, content_type = "application/problem+json"), (status = 503, description = "inference queue full or timeout (Retry-After)", body = Problem, content_type = "application/problem+json")))]
async fn lookup(State(state): St, Query(q): Query<LookupParams>, req: Request) -> Result<Json<LookupResponse>, ApiError> {
    let t0 = Instant::now();
    let checked = lookup_filter(&state, req.headers(), q);
    // Read the body even when the checks failed (see `checked_body`).
    let bytes = image_bytes(&state, req).await;
    let (k, filter) = checked?;
    lookup_one(&state, bytes?, k, filter, t0).await.map(Json)
}

/// Embeds one photo (inference pool), searches, scores and decides.
async fn lookup_one(state: &Arc<AppState>, bytes: Bytes, k: usize, filter: Filter, t0: Instant) -> Result<LookupResponse, ApiError> {
    let sha256 = crate::util::sha256_hex(&bytes);
    let n = bytes.len();
    let t_embed = Instant::now();
    let v = state.pool.embed(bytes.to_vec(), format!("upload {}", &sha256[..12])).await?;
    let embed_s = t_embed.elapsed().as_secs_f64();
    state.metrics.embed(embed_s);
    let t_search = Instant::now();
    let st = state.clone();
    let matches = blocking(move || Ok(search_products(&st.catalog, &v, &SearchRequest { k, filter, ..Default::default() }))).await?;
    let search_s = t_search.elapsed().as_secs_f64();
    state.metrics.search(search_s);
    let verdict = decide(&matches, &state.config.verdict);
    let conf = crate::search::confidences(&matches, &state.config.verdict);
    let matches = matches
        .iter()
        .zip(conf)
        .map(|(m, confidence)| MatchOut {
            product_id: m.product.product_id.clone(),
            label: m.product.label,
            brand: m.product.brand.clone(),
            name: m.product.name.clone(),
            category: m.product.category.clone(),
            image_id: m.best.image_id,
            similarity: m.best.similarity,
            confidence,
        })
        .collect();
    Ok(LookupResponse {
        query: QueryInfo {
            sha256,
            bytes: n,
            model: state.embedder.name().to_string(),
            timing: Timing { embed_ms: embed_s * 1e3, search_ms: search_s * 1e3, total_ms: t0.elapsed().as_secs_f64() * 1e3 },
        },
        matches,
        verdict: verdict.verdict,
        reason: verdict.reason,
    })
}

/// Up to `max_batch` photos: multipart files, or JSON `{"images": [{"image_base64"|"url": ...}, ...]}`.
/// One result or one error per item, in order.
#[utoipa::path(post, path = "/v1/lookup/batch", tag = "lookup", params(LookupParams),
    request_body(content = BatchRequest, description = "Up to max_batch photos (default 32), as JSON or as multipart/form-data files."),
    responses((status = 200, description = "one result or one error per item, in order", body = BatchResponse), (status = 400, description = "invalid parameters or JSON", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json"), (status = 413, description = "body over the limit", body = Problem, content_type = "application/problem+json"), (status = 415, description = "unsupported media type", body = Problem, content_type = "application/problem+json"), (status = 422, description = "undecodable, truncated, empty or over-pixel-limit image", body = Problem, content_type = "application/problem+json"), (status = 503, description = "inference queue full or timeout (Retry-After)", body = Problem, content_type = "application/problem+json")))]
async fn lookup_batch(State(state): St, Query(q): Query<LookupParams>, req: Request) -> Result<Json<BatchResponse>, ApiError> {
    let t0 = Instant::now();
    let checked = lookup_filter(&state, req.headers(), q);
    let limit = state.config.max_body_bytes;
    let ctype = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    // Collect the items (reading the whole body even if the checks failed).
    let mut items: Vec<Result<Bytes, ApiError>> = Vec::new();
    let mut too_many = false;
    if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &()).await.map_err(|e| ApiError::BadRequest(e.to_string()))?;
        while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(e.to_string(), limit))? {
            let b = field.bytes().await.map_err(|e| multipart_error(e.to_string(), limit))?;
            if items.len() < state.config.max_batch {
                items.push(Ok(b));
            } else {
                too_many = true;
            }
        }
    } else if ctype.starts_with("application/json") {
        let body = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| ApiError::TooLarge(limit))?;
        checked.as_ref().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let j: BatchRequest = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
        too_many = j.images.len() > state.config.max_batch;
        if !too_many {
            for im in j.images {
                items.push(decode_image_json(&state, im).await);
            }
        }
    } else {
        let _ = axum::body::to_bytes(req.into_body(), limit).await;
        checked?;
        return Err(ApiError::UnsupportedMedia(ctype));
    }
    let (k, filter) = checked?;
    if too_many {
        return Err(ApiError::BadRequest(format!("a batch holds at most {} photos", state.config.max_batch)));
    }
    if items.is_empty() {
        return Err(ApiError::BadRequest("the batch is empty".into()));
    }
    let futures = items.into_iter().map(|item| {
        let (state, filter) = (state.clone(), filter.clone());
        async move {
            match item {
                Ok(bytes) => lookup_one(&state, bytes, k, filter, t0).await,
                Err(e) => Err(e),
            }
        }
    });
    let mut results = Vec::new();
    for f in futures {
        results.push(f);
    }
    let done = futures_join_all(results).await;
    Ok(Json(BatchResponse {
        results: done
            .into_iter()
            .map(|r| match r {
                Ok(ok) => BatchItem { result: Some(ok), error: None },
                Err(e) => BatchItem { result: None, error: Some(e.problem()) },
            })
            .collect(),
    }))
}

/// Runs the futures concurrently (each embeds through the bounded pool).
async fn futures_join_all<T: Send + 'static>(fs: Vec<impl std::future::Future<Output = T> + Send + 'static>) -> Vec<T> {
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): St) -> Result<impl IntoResponse, ApiError> {
    let st = state.clone();
    let s = blocking(move || Ok(st.catalog.stats()?)).await?;
    let body = state.metrics.render(s.counts.images, s.graph_points, s.counts.products, s.counts.tombstones);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

/// Per-request timeout and metrics.
async fn track(State(state): St, req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let t = Instant::now();
    let resp = match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout(state.config.request_timeout.as_millis()).into_response(),
    };
    state.metrics.request(&method, &route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "this document", body = Object)))]
async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// The OpenAPI document, generated from the handlers' annotations and the request/response types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "knockoff", description = "Counterfeit detector: match listing photos against brand catalogs."),
    paths(page, healthz, readyz, metrics, openapi, lookup, lookup_batch, stats, get_product, put_product, delete_product, add_image, delete_image, thumbnail, submit_job, get_job),
    components(schemas(Problem, ImageJson, LookupResponse, BatchRequest, BatchResponse, ProductIn, ProductOut, AddImageOut, super::jobs::JobView)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// Every route the router serves, as (method, path); the OpenAPI test checks each is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/lookup"),
    ("post", "/v1/lookup/batch"),
    ("get", "/v1/stats"),
    ("get", "/v1/products/{id}"),
    ("put", "/v1/products/{id}"),
    ("delete", "/v1/products/{id}"),
    ("post", "/v1/products/{id}/images"),
    ("delete", "/v1/images/{id}"),
    ("get", "/v1/images/{id}/thumbnail"),
    ("post", "/v1/jobs/index"),
    ("get", "/v1/jobs/{id}"),
];

/// The analyst's page, embedded in the binary (no CDN).
#[utoipa::path(get, path = "/", tag = "operations", responses((status = 200, description = "the analyst web page", body = String, content_type = "text/html")))]
async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("web/index.html"))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "model and index loaded", body = Object)))]
async fn readyz(State(state): St) -> impl IntoResponse {
    let st = state.clone();
    match blocking(move || Ok(st.catalog.stats()?)).await {
        Ok(s) => (StatusCode::OK, Json(serde_json::json!({ "ready": true, "model": state.embedder.name(), "images": s.graph_points })))
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(get, path = "/v1/stats", tag = "operations", responses((status = 200, description = "catalog counts, index parameters, disk use", body = Object), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json")))]
async fn stats(State(state): St, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Role::Read, "read stats")?;
    let st = state.clone();
    Ok(Json(blocking(move || Ok(st.catalog.stats()?)).await?))
}

#[utoipa::path(get, path = "/v1/products/{id}", tag = "catalog", params(("id" = String, Path)), responses((status = 200, body = ProductOut), (status = 404, description = "unknown product, image or job", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json")))]
async fn get_product(State(state): St, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<ProductOut>, ApiError> {
    require(&state, &headers, Role::Admin, "read the catalog")?;
    let st = state.clone();
    blocking(move || {
        let p = st.catalog.product(&id)?.ok_or_else(|| ApiError::NotFound(format!("unknown product '{id}'")))?;
        let images = st.catalog.images_of(&id)?;
        Ok(product_out(p, images))
    })
    .await
    .map(Json)
}

fn product_out(p: Product, images: Vec<crate::catalog::ImageRecord>) -> ProductOut {
    ProductOut {
        product_id: p.product_id,
        label: p.label,
        brand: p.brand,
        name: p.name,
        category: p.category,
        attributes: p.attributes,
        images: images
            .into_iter()
            .map(|i| ImageOut {
                image_id: i.id,
                sha256: i.sha256,
                width: i.width,
                height: i.height,
                source: i.source,
                added_at: i.added_at,
            })
            .collect(),
    }
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 200 || id.chars().any(|c| c.is_control()) {
        return Err(ApiError::BadRequest("product id must be 1-200 printable characters".into()));
    }
    Ok(())
}

#[utoipa::path(put, path = "/v1/products/{id}", tag = "catalog", params(("id" = String, Path)), request_body = ProductIn, responses((status = 200, body = ProductOut), (status = 400, description = "invalid parameters or JSON", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json")))]
async fn put_product(State(state): St, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Result<Json<ProductOut>, ApiError> {
    require(&state, &headers, Role::Admin, "change the catalog")?;
    valid_id(&id)?;
    let p: ProductIn = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    let label = p.label.parse::<Label>().map_err(ApiError::BadRequest)?;
    let product = Product { product_id: id.clone(), label, brand: p.brand, name: p.name, category: p.category, attributes: p.attributes };
    let st = state.clone();
    blocking(move || {
        st.catalog.upsert_product(&product)?;
        let p = st.catalog.product(&id)?.ok_or_else(|| ApiError::Internal("product vanished".into()))?;
        Ok(product_out(p, st.catalog.images_of(&id)?))
    })
    .await
    .map(Json)
}

#[utoipa::path(delete, path = "/v1/products/{id}", tag = "catalog", params(("id" = String, Path)), responses((status = 200, description = "{\"deleted_images\": n}", body = Object), (status = 404, description = "unknown product, image or job", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json")))]
async fn delete_product(State(state): St, headers: HeaderMap, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Role::Admin, "change the catalog")?;
    let st = state.clone();
    let n = blocking(move || Ok(st.catalog.delete_product(&id)?)).await?;
    Ok(Json(serde_json::json!({ "deleted_images": n })))
}

#[utoipa::path(post, path = "/v1/products/{id}/images", tag = "catalog", params(("id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "image/*", description = "The photo, in any form /v1/lookup accepts."),
    responses((status = 201, body = AddImageOut), (status = 200, description = "already indexed", body = AddImageOut), (status = 404, description = "unknown product, image or job", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json"), (status = 413, description = "body over the limit", body = Problem, content_type = "application/problem+json"), (status = 415, description = "unsupported media type", body = Problem, content_type = "application/problem+json"), (status = 422, description = "undecodable, truncated, empty or over-pixel-limit image", body = Problem, content_type = "application/problem+json"), (status = 503, description = "inference queue full or timeout (Retry-After)", body = Problem, content_type = "application/problem+json")))]
async fn add_image(State(state): St, Path(id): Path<String>, req: Request) -> Result<impl IntoResponse, ApiError> {
    let auth = require(&state, req.headers(), Role::Admin, "change the catalog");
    let bytes = checked_body(&state, req, auth).await?;
    let st = state.clone();
    let pid = id.clone();
    let product = blocking(move || {
        st.catalog.product(&pid)?.ok_or_else(|| ApiError::NotFound(format!("unknown product '{pid}'; create it with PUT first")))
    })
    .await?;
    let sha256 = crate::util::sha256_hex(&bytes);
    // Decode once here for the size; the pool embeds.
    let limits = state.embedder.limits();
    let b2 = bytes.clone();
    let (w, h, thumb) = blocking(move || {
        let img = crate::embed::decode_image(&b2, "upload", limits)?;
        Ok((img.width(), img.height(), crate::catalog::thumbnail(&img.rgb)))
    })
    .await?;
    let embedding = state.pool.embed(bytes.to_vec(), "upload".into()).await?;
    let st = state.clone();
    let item = NewImage { product, source: format!("upload:{sha256}"), sha256, width: w, height: h, embedding, thumbnail: Some(thumb) };
    let ids = blocking(move || Ok(st.catalog.add_images(&[item])?)).await?;
    let image_id = ids.first().copied().flatten();
    let code = if image_id.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, Json(AddImageOut { product_id: id, image_id, already_indexed: image_id.is_none() })))
}

/// A manifest upload (`text/csv`, `application/x-ndjson`) or JSON:
/// `{"items": [{"image", "product_id", "label", ...}]}` or
/// `{"urls": [...], "product_id": ..., "label": ..., "brand"?, "name"?, "category"?}`.
#[utoipa::path(post, path = "/v1/jobs/index", tag = "jobs",
    request_body(content = String, content_type = "text/csv", description = "A manifest (text/csv or application/x-ndjson), or application/json {\"items\": [...]} / {\"urls\": [...], \"product_id\", \"label\"}."),
    responses((status = 202, description = "{\"id\", \"status\": \"queued\"}", body = Object), (status = 400, description = "invalid parameters or JSON", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json"), (status = 415, description = "unsupported media type", body = Problem, content_type = "application/problem+json")))]
async fn submit_job(State(state): St, req: Request) -> Result<impl IntoResponse, ApiError> {
    let auth = require(&state, req.headers(), Role::Admin, "start indexing jobs");
    let limit = state.config.max_body_bytes;
    let ctype = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let body = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| ApiError::TooLarge(limit));
    auth?;
    let body = body?;
    let text = String::from_utf8(body.to_vec()).map_err(|_| ApiError::BadRequest("manifest is not UTF-8".into()))?;
    let (format, text) = if ctype.starts_with("text/csv") {
        ("csv", text)
    } else if ctype.starts_with("application/x-ndjson") || ctype.starts_with("application/jsonl") {
        ("jsonl", text)
    } else if ctype.starts_with("application/json") {
        ("jsonl", json_job_to_jsonl(&text)?)
    } else {
        return Err(ApiError::UnsupportedMedia(ctype));
    };
    let st = state.clone();
    let id = blocking(move || st.jobs()?.submit(&st, format, text)).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id, "status": "queued" }))))
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
    Ok(rows.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n"))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)), responses((status = 200, body = super::jobs::JobView), (status = 404, description = "unknown product, image or job", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json")))]
async fn get_job(State(state): St, headers: HeaderMap, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Role::Admin, "see indexing jobs")?;
    let st = state.clone();
    Ok(Json(blocking(move || st.jobs()?.view(&st, &id)).await?))
}

#[utoipa::path(get, path = "/v1/images/{id}/thumbnail", tag = "catalog", params(("id" = i64, Path)), responses((status = 200, description = "JPEG, at most 256 px", body = Vec<u8>, content_type = "image/jpeg"), (status = 404, description = "unknown product, image or job", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json")))]
async fn thumbnail(State(state): St, headers: HeaderMap, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Role::Read, "see thumbnails")?;
    let id: i64 = id.parse().map_err(|_| ApiError::BadRequest(format!("image id must be an integer, not '{id}'")))?;
    let st = state.clone();
    let jpeg =
        blocking(move || st.catalog.thumbnail(id)?.ok_or_else(|| ApiError::NotFound(format!("no thumbnail for image {id}")))).await?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=3600")], jpeg))
}

#[utoipa::path(delete, path = "/v1/images/{id}", tag = "catalog", params(("id" = i64, Path)), responses((status = 204, description = "deleted"), (status = 404, description = "unknown product, image or job", body = Problem, content_type = "application/problem+json"), (status = 401, description = "missing or wrong API key", body = Problem, content_type = "application/problem+json"), (status = 403, description = "key lacks the role", body = Problem, content_type = "application/problem+json")))]
async fn delete_image(State(state): St, headers: HeaderMap, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    require(&state, &headers, Role::Admin, "change the catalog")?;
    let id: i64 = id.parse().map_err(|_| ApiError::BadRequest(format!("image id must be an integer, not '{id}'")))?;
    let st = state.clone();
    blocking(move || Ok(st.catalog.delete_image(id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (method, path) in ROUTES {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in the OpenAPI document");
        }
        let n: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(n, ROUTES.len(), "the document lists routes the router does not serve");
    }
}
