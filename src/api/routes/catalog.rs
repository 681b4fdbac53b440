//! Catalog routes (admin): products, their images, thumbnails.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::{blocking, St};
use crate::api::bodies::{ImageUpload, RawImage};
use crate::api::error::ApiError;
use crate::api::extract::{ApiPath, ApiQuery, ImageBody, JsonBody};
use crate::api::pages::{ListParams, ProductList};
use crate::api::pool::Lane;
use crate::api::types::{AddImageOut, DeletedOut, ImageJson, ProductIn, ProductOut};
use crate::catalog::NewImage;

fn image_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::InvalidParameter { param: "id", detail: format!("image id must be an integer, not '{id}'") })
}

/// Lists the live products, a page at a time, in id order.
#[utoipa::path(get, path = "/v1/products", tag = "catalog", params(ListParams), responses((status = 200, body = ProductList)))]
pub async fn list_products(State(state): St, query: Result<ApiQuery<ListParams>, ApiError>) -> Result<Json<ProductList>, ApiError> {
    let q = query?.0;
    let limit = q.limit()?;
    blocking(move || Ok(state.catalog.products_page(q.after(), limit)?.into())).await.map(Json)
}

#[utoipa::path(get, path = "/v1/products/{id}", tag = "catalog", params(("id" = String, Path)), responses((status = 200, body = ProductOut)))]
pub async fn get_product(State(state): St, ApiPath(id): ApiPath<String>) -> Result<Json<ProductOut>, ApiError> {
    blocking(move || {
        let p = state.catalog.records().product(&id)?.ok_or_else(|| ApiError::NotFound(format!("unknown product '{id}'")))?;
        Ok(ProductOut::new(p, state.catalog.records().images_of(&id)?))
    })
    .await
    .map(Json)
}

/// Creates (201) or updates (200) a product's metadata (fields not given keep their value).
#[utoipa::path(put, path = "/v1/products/{id}", tag = "catalog", params(("id" = String, Path)), request_body = ProductIn,
    responses((status = 200, description = "updated", body = ProductOut), (status = 201, description = "created", body = ProductOut)))]
pub async fn put_product(
    State(state): St,
    ApiPath(id): ApiPath<String>,
    body: Result<JsonBody<ProductIn>, ApiError>,
) -> Result<(StatusCode, Json<ProductOut>), ApiError> {
    let product = body?.0.into_product(id.clone());
    blocking(move || {
        let existed = state.catalog.records().product(&id)?.is_some();
        state.catalog.upsert_product(&product)?;
        let p = state.catalog.records().product(&id)?.ok_or_else(|| ApiError::Internal("product vanished".into()))?;
        let code = if existed { StatusCode::OK } else { StatusCode::CREATED };
        Ok((code, Json(ProductOut::new(p, state.catalog.records().images_of(&id)?))))
    })
    .await
}

/// Deletes a product and its images (200 with how many); a product deleted
/// before answers 204, so a retried delete succeeds; one never created, 404.
#[utoipa::path(delete, path = "/v1/products/{id}", tag = "catalog", params(("id" = String, Path)),
    responses((status = 200, body = DeletedOut), (status = 204, description = "deleted before")))]
pub async fn delete_product(State(state): St, ApiPath(id): ApiPath<String>) -> Result<axum::response::Response, ApiError> {
    match blocking(move || Ok(state.catalog.delete_product(&id))).await? {
        Ok(deleted_images) => Ok(Json(DeletedOut { deleted_images }).into_response()),
        Err(crate::catalog::CatalogError::ProductDeleted(_)) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(e.into()),
    }
}

/// Adds a photo to an existing product.
#[utoipa::path(post, path = "/v1/products/{id}/images", tag = "catalog", params(("id" = String, Path)),
    request_body(description = "The photo, in any form /v1/lookup accepts.",
        content((RawImage = "image/*"), (ImageUpload = "multipart/form-data"), (ImageJson = "application/json"))),
    responses((status = 201, body = AddImageOut), (status = 200, description = "already indexed", body = AddImageOut)))]
pub async fn add_image(
    State(state): St,
    ApiPath(id): ApiPath<String>,
    body: Result<ImageBody, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = body?.0;
    let (st, pid) = (state.clone(), id.clone());
    let product = blocking(move || {
        st.catalog.records().product(&pid)?.ok_or_else(|| ApiError::NotFound(format!("unknown product '{pid}'; create it with PUT first")))
    })
    .await?;
    let sha256 = crate::util::sha256_hex(&bytes);
    // Decode once here for the size and thumbnail; the pool embeds.
    let (limits, b2) = (state.embedder.limits(), bytes.clone());
    let (width, height, thumb, copy) = blocking(move || {
        let img = crate::embed::decode_image(&b2, "upload", limits)?;
        let mut resizer = fast_image_resize::Resizer::new();
        let copy = crate::catalog::copy_features(&img.rgb, &mut resizer);
        Ok((img.width(), img.height(), crate::catalog::thumbnail(&img.rgb, &mut resizer), copy))
    })
    .await?;
    let embedding = state.pool.embed(bytes.to_vec(), "upload".into(), Lane::Bulk).await?.vector;
    let item = NewImage {
        product,
        source: format!("upload:{sha256}"),
        sha256,
        width,
        height,
        embedding,
        thumbnail: Some(thumb),
        copy_features: Some(copy),
    };
    // Only to the product as it is now: one deleted meanwhile stays deleted (404).
    let ids = blocking(move || Ok(state.catalog.add_images_to_existing(&[item])?)).await?;
    let image_id = ids.first().copied().flatten();
    let code = if image_id.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, Json(AddImageOut { product_id: id, image_id, already_indexed: image_id.is_none() })))
}

#[utoipa::path(get, path = "/v1/images/{id}/thumbnail", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, description = "JPEG, at most 256 px", body = Vec<u8>, content_type = "image/jpeg")))]
pub async fn thumbnail(State(state): St, ApiPath(id): ApiPath<String>) -> Result<impl IntoResponse, ApiError> {
    let id = image_id(&id)?;
    let jpeg =
        blocking(move || state.catalog.records().thumbnail(id)?.ok_or_else(|| ApiError::NotFound(format!("no thumbnail for image {id}"))))
            .await?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=3600")], jpeg))
}

#[utoipa::path(delete, path = "/v1/images/{id}", tag = "catalog", params(("id" = i64, Path)), responses((status = 204, description = "deleted")))]
pub async fn delete_image(State(state): St, ApiPath(id): ApiPath<String>) -> Result<StatusCode, ApiError> {
    let id = image_id(&id)?;
    blocking(move || Ok(state.catalog.delete_image(id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
