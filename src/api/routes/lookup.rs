//! `POST /v1/lookup` and `POST /v1/lookup/batch`: photo in, the library's
//! [`crate::search::lookup`] answer out.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;

use super::{blocking, St};
use crate::api::bodies::{BatchUpload, ImageUpload, RawImage};
use crate::api::error::ApiError;
use crate::api::extract::{ApiQuery, BatchBody, ImageBody};
use crate::api::pool::Lane;
use crate::api::types::{BatchItem, BatchRequest, BatchResponse, ImageJson, LookupParams, LookupResponse, QueryInfo, Timing};
use crate::api::AppState;
use crate::catalog::Filter;
use crate::review::{ListingContext, Seen};
use crate::search::SearchRequest;

/// The listing context a lookup's query string carries (split off, so the rest is the search).
fn take_listing(q: &mut LookupParams) -> ListingContext {
    ListingContext {
        listing_id: q.listing_id.take(),
        seller_id: q.seller_id.take(),
        marketplace: q.marketplace.take(),
        listing_url: q.listing_url.take(),
        title: q.title.take(),
        price: q.price.take(),
        currency: q.currency.take(),
    }
}

/// The search request a lookup's query string asks for.
fn search_request(state: &AppState, q: LookupParams) -> Result<SearchRequest, ApiError> {
    let k = q.k.unwrap_or(5);
    if k == 0 || k > state.config.max_k {
        return Err(ApiError::InvalidParameter { param: "k", detail: format!("k must be between 1 and {}", state.config.max_k) });
    }
    let filter = Filter { brand: q.brand, label: q.label.map(Into::into), category: q.category };
    Ok(SearchRequest { k, filter, ..Default::default() })
}

/// The explanation picture for the best copy, as a PNG data URL (`None` without a copy).
fn explain(state: &AppState, bytes: &[u8], copy: &crate::search::CopyMatch) -> Result<Option<String>, ApiError> {
    use base64::Engine as _;
    let photo = crate::embed::decode_image(bytes, "upload", state.embedder.limits())?;
    let png = crate::search::explain::picture(&state.catalog, &photo.rgb, copy)?;
    Ok(png.map(|png| format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))))
}

/// Looks up one photo: a raw image body, multipart/form-data with a file, or
/// application/json `{"image_base64"}` / `{"url"}`.
#[utoipa::path(post, path = "/v1/lookup", tag = "lookup", params(LookupParams),
    request_body(description = "The photo: a raw image body, multipart/form-data with a file, or JSON with exactly one of image_base64 and url.",
        content((RawImage = "image/*"), (ImageUpload = "multipart/form-data"), (ImageJson = "application/json"))),
    responses((status = 200, body = LookupResponse)))]
pub async fn lookup(
    State(state): St,
    query: Result<ApiQuery<LookupParams>, ApiError>,
    body: Result<ImageBody, ApiError>,
) -> Result<Json<LookupResponse>, ApiError> {
    let t0 = Instant::now();
    let mut params = query?.0;
    let want_explain = params.explain.unwrap_or(false);
    let listing = take_listing(&mut params);
    listing.check()?;
    let record = state.config.cases.record.records(&listing, params.record).then_some(listing);
    let req = search_request(&state, params)?;
    let want = Want { explain: want_explain, record, lane: Lane::Interactive };
    lookup_one(&state, body?.0, req, want, t0).await.map(Json)
}

/// What a lookup asks for besides the search: the explanation picture, to be
/// kept as a case (with this listing), and which inference lane it waits in.
struct Want {
    explain: bool,
    record: Option<ListingContext>,
    lane: Lane,
}

/// Embeds one photo (inference pool), then runs the library's lookup.
async fn lookup_one(state: &Arc<AppState>, bytes: Bytes, req: SearchRequest, want: Want, t0: Instant) -> Result<LookupResponse, ApiError> {
    let sha256 = crate::util::sha256_hex(&bytes);
    let n = bytes.len();
    let t_embed = Instant::now();
    let name = format!("upload {}", &sha256[..12]);
    let lane = want.lane;
    let v = if state.config.copy_detection {
        state.pool.describe(bytes.to_vec(), name, lane).await?
    } else {
        state.pool.embed(bytes.to_vec(), name, lane).await?
    };
    let embed_s = t_embed.elapsed().as_secs_f64();
    state.metrics.embed(embed_s);
    let t_search = Instant::now();
    let (st, photo, sha) = (state.clone(), bytes.clone(), sha256.clone());
    let (answer, case_id) = blocking(move || {
        let verdicts = st.verdicts();
        let answer = crate::search::lookup(&st.catalog, &v, &req, &verdicts.config)?;
        let case_id = match &want.record {
            Some(context) => {
                let calibration = verdicts.info.as_ref().map(|i| i.fitted_at.as_str());
                let model = st.embedder.name();
                let seen = Seen {
                    photo: &photo,
                    sha256: &sha,
                    embedding: &v.vector,
                    regions: &v.regions,
                    model,
                    answer: &answer,
                    context,
                    calibration,
                };
                Some(crate::review::record(&st.catalog, &seen)?)
            }
            None => None,
        };
        Ok((answer, case_id))
    })
    .await?;
    let search_s = t_search.elapsed().as_secs_f64();
    state.metrics.lookup(&answer);
    let picture = match answer.copies.first() {
        Some(top) if want.explain => {
            let (st, top, bytes) = (state.clone(), top.clone(), bytes.clone());
            blocking(move || explain(&st, &bytes, &top)).await?
        }
        _ => None,
    };
    state.metrics.search(search_s);
    let timing = Timing { embed_ms: embed_s * 1e3, search_ms: search_s * 1e3, total_ms: t0.elapsed().as_secs_f64() * 1e3 };
    let mut out = LookupResponse::new(QueryInfo { sha256, bytes: n, model: state.embedder.name().to_string(), timing }, answer);
    out.explain = picture;
    out.case_id = case_id;
    Ok(out)
}

/// Up to `max_batch` photos: multipart files, or JSON `{"images": [{"image_base64"|"url": ...}, ...]}`.
/// One result or one error per item, in order.
#[utoipa::path(post, path = "/v1/lookup/batch", tag = "lookup", params(LookupParams),
    request_body(description = "Up to max_batch photos (default 32), as JSON or as multipart/form-data files.",
        content((BatchRequest = "application/json"), (BatchUpload = "multipart/form-data"))),
    responses((status = 200, description = "one result or one error per item, in order", body = BatchResponse)))]
pub async fn lookup_batch(
    State(state): St,
    query: Result<ApiQuery<LookupParams>, ApiError>,
    body: Result<BatchBody, ApiError>,
) -> Result<Json<BatchResponse>, ApiError> {
    let t0 = Instant::now();
    let mut params = query?.0;
    if !take_listing(&mut params).is_empty() || params.record == Some(true) {
        return Err(ApiError::BadRequest("listing context and record=true are per photo: send each listing's photo to /v1/lookup".into()));
    }
    let want_explain = params.explain.unwrap_or(false);
    let req = search_request(&state, params)?;
    // Batch lookups are not recorded as cases (listing context is per photo).
    // Each item embeds through the bounded pool's bulk lane, concurrently; the
    // set aborts every item still running when the client goes (the handler is dropped).
    let items = body?.0;
    let mut set = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let (state, req) = (state.clone(), req.clone());
        let want = Want { explain: want_explain, record: None, lane: Lane::Bulk };
        set.spawn(async move {
            let answer = match item {
                Ok(bytes) => lookup_one(&state, bytes, req, want, t0).await,
                Err(e) => Err(e),
            };
            (i, answer)
        });
    }
    let mut results: Vec<Option<BatchItem>> = (0..set.len()).map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        let (i, r) = done.map_err(|e| ApiError::Internal(e.to_string()))?;
        results[i] = Some(match r {
            Ok(ok) => BatchItem { result: Some(ok), error: None },
            Err(e) => BatchItem { result: None, error: Some(e.problem()) },
        });
    }
    let results = results.into_iter().flatten().collect();
    Ok(Json(BatchResponse { results }))
}
