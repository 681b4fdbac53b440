//! Review cases (analyst role): list, read (with an `ETag`), the photo,
//! decide (`If-Match` required), undo, and the evidence pack. Each handler translates to one
//! [`crate::review`] call.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;

use super::{blocking, St};
use crate::api::auth::Caller;
use crate::api::error::{etag, ApiError};
use crate::api::extract::{ApiPath, ApiQuery, JsonBody};
use crate::api::pages::CaseList;
use crate::catalog::store::{CaseQuery, CaseSort};
use crate::review::{self, Case, DecisionInput};

fn case_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::InvalidParameter { param: "id", detail: format!("case id must be an integer, not '{id}'") })
}

/// The version an `If-Match` header names (428 without one).
fn if_match(headers: &HeaderMap) -> Result<i64, ApiError> {
    let v = headers.get(header::IF_MATCH).ok_or(ApiError::PreconditionRequired)?;
    let v = v.to_str().unwrap_or("").trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("If-Match must be the ETag GET /v1/cases/{{id}} returned, not '{v}'")))
}

/// A case with its `ETag`.
fn with_etag(case: Case) -> impl IntoResponse {
    let tag = HeaderValue::from_str(&etag(case.version)).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    ([(header::ETAG, tag), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(case))
}

/// Filters, order and page of `GET /v1/cases`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CaseParams {
    /// `open`, `decided` or `skipped`.
    pub status: Option<String>,
    /// The verdict the lookup got (`uncertain`, `likely_counterfeit`, …).
    pub verdict: Option<String>,
    /// The top match's brand.
    pub brand: Option<String>,
    pub seller_id: Option<String>,
    pub min_p_counterfeit: Option<f32>,
    /// `priority` (most worth reviewing first, the default) or `time` (newest first).
    pub sort: Option<String>,
    /// The `id` of the last case of the previous page (absent: the first page).
    pub starting_after: Option<String>,
    /// Cases per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<usize>,
}

/// Lists cases, most worth reviewing first (or newest first), a page at a time.
#[utoipa::path(get, path = "/v1/cases", tag = "review", params(CaseParams), responses((status = 200, body = CaseList)))]
pub async fn list_cases(State(state): St, query: Result<ApiQuery<CaseParams>, ApiError>) -> Result<Json<CaseList>, ApiError> {
    let p = query?.0;
    let sort = match p.sort.as_deref() {
        None | Some("priority") => CaseSort::Priority,
        Some("time") => CaseSort::Time,
        Some(other) => {
            return Err(ApiError::InvalidParameter { param: "sort", detail: format!("sort must be 'priority' or 'time', not '{other}'") })
        }
    };
    let q = CaseQuery {
        status: p.status,
        verdict: p.verdict,
        brand: p.brand,
        seller_id: p.seller_id,
        min_p_counterfeit: p.min_p_counterfeit,
        sort,
        after: None,
        limit: p.limit.unwrap_or(50),
    };
    blocking(move || Ok(review::list(&state.catalog, q, p.starting_after.as_deref())?.into())).await.map(Json)
}

/// One case: its context, the answer it got, its decision and audit trail; the `ETag` a decision must send back.
#[utoipa::path(get, path = "/v1/cases/{id}", tag = "review", params(("id" = i64, Path)),
    responses((status = 200, body = Case, headers(("ETag" = String, description = "send it back in If-Match to decide")))))]
pub async fn get_case(State(state): St, ApiPath(id): ApiPath<String>) -> Result<impl IntoResponse, ApiError> {
    let id = case_id(&id)?;
    let case = blocking(move || Ok(review::get(&state.catalog, id)?)).await?;
    Ok(with_etag(case))
}

/// The listing photo of a case, as it was uploaded.
#[utoipa::path(get, path = "/v1/cases/{id}/photo", tag = "review", params(("id" = i64, Path)),
    responses((status = 200, description = "the photo", body = Vec<u8>, content_type = "image/*")))]
pub async fn case_photo(State(state): St, ApiPath(id): ApiPath<String>) -> Result<impl IntoResponse, ApiError> {
    let id = case_id(&id)?;
    let bytes = blocking(move || {
        review::photo(&state.catalog, id)?
            .ok_or_else(|| ApiError::NotFound(format!("the photo of case {id} was dropped after its retention time")))
    })
    .await?;
    let kind = image::guess_format(&bytes).map_or("application/octet-stream", |f| f.to_mime_type());
    Ok(([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "private, max-age=3600")], bytes))
}

/// Decides a case (`If-Match`: the `ETag` it was read with). A decision on a
/// product makes the photo a reference of it (or of the counterfeit product
/// imitating it) at once.
#[utoipa::path(post, path = "/v1/cases/{id}/decision", tag = "review", params(("id" = i64, Path), ("If-Match" = String, Header)),
    request_body = DecisionInput, responses((status = 200, body = Case)))]
pub async fn decide(
    State(state): St,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<JsonBody<DecisionInput>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let id = case_id(&id)?;
    let version = if_match(&headers)?;
    let input = body?.0;
    let limits = state.embedder.limits();
    let case = blocking(move || Ok(review::decide(&state.catalog, limits, id, version, caller.name.as_deref(), &input)?)).await?;
    Ok(with_etag(case))
}

/// Undoes a case's decision (`If-Match` required): the case is open again and its reference removed.
#[utoipa::path(delete, path = "/v1/cases/{id}/decision", tag = "review", params(("id" = i64, Path), ("If-Match" = String, Header)),
    responses((status = 200, body = Case)))]
pub async fn undo(
    State(state): St,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let id = case_id(&id)?;
    let version = if_match(&headers)?;
    let case = blocking(move || Ok(review::undo(&state.catalog, id, version, caller.name.as_deref())?)).await?;
    Ok(with_etag(case))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_the_etag_given_out_and_nothing_else() {
        let mut h = HeaderMap::new();
        assert!(matches!(if_match(&h), Err(ApiError::PreconditionRequired)));
        h.insert(header::IF_MATCH, HeaderValue::from_str(&etag(3)).unwrap());
        assert_eq!(if_match(&h).unwrap(), 3);
        h.insert(header::IF_MATCH, HeaderValue::from_static("W/\"4\""));
        assert_eq!(if_match(&h).unwrap(), 4);
        for bad in ["*", "3", "\"x\""] {
            h.insert(header::IF_MATCH, HeaderValue::from_static(bad));
            assert!(matches!(if_match(&h), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }
}

/// The case's evidence pack: a ZIP with `manifest.json` (the case, its answer, the sha256 of
/// every file), the listing photo, the catalog references and a printable `summary.html`.
#[utoipa::path(get, path = "/v1/cases/{id}/evidence", tag = "review", params(("id" = i64, Path)),
    responses((status = 200, description = "the evidence pack (the same bytes for the same case)", content_type = "application/zip", body = Vec<u8>)))]
pub async fn evidence(State(state): St, ApiPath(id): ApiPath<String>) -> Result<impl IntoResponse, ApiError> {
    let id = case_id(&id)?;
    let limits = state.embedder.limits();
    let zip = blocking(move || Ok(review::evidence_pack(&state.catalog, limits, id)?)).await?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"case-{id}-evidence.zip\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/zip")), (header::CONTENT_DISPOSITION, disposition)], zip))
}
