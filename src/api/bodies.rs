//! The request bodies as the `OpenAPI` document names them: the handlers
//! read the bytes themselves (see [`super::extract`]); these types only
//! describe each form a route accepts, so that a generated client has them.

/// A photo sent as the raw request body (`image/jpeg`, `image/png`, `image/webp`, …).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawImage(pub Vec<u8>);

/// A photo sent as `multipart/form-data`: the first file part.
#[derive(utoipa::ToSchema)]
pub struct ImageUpload {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Several photos as `multipart/form-data` files (each part one photo).
#[derive(utoipa::ToSchema)]
pub struct BatchUpload {
    #[schema(value_type = Vec<String>, format = Binary)]
    pub files: Vec<Vec<u8>>,
}

/// One manifest row: `image` is an `http(s)` URL or an absolute path on the server.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct ManifestRow {
    pub image: String,
    pub product_id: String,
    pub label: super::types::Label,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
}

/// A JSON job: its rows, or a list of URLs of one product.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum JobJson {
    Items {
        items: Vec<ManifestRow>,
    },
    Urls {
        urls: Vec<String>,
        product_id: String,
        label: super::types::Label,
        brand: Option<String>,
        name: Option<String>,
        category: Option<String>,
    },
}

/// A manifest as `text/csv` (header `image,product_id,label,brand,name,category`) or `application/x-ndjson`.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String)]
pub struct ManifestText(pub String);
