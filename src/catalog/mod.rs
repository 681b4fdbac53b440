//! The catalog: products, their reference photos, and the vectors that make
//! them searchable.
//!
//! `SQLite` ([`store`]) is the source of truth: product metadata, image
//! records and the embeddings themselves. The HNSW graph ([`vectors`]) is a
//! derived, rebuildable structure, persisted as an atomic dump tagged with the
//! store state it reflects. [`Catalog`] ties the two together and keeps a small
//! in-memory table of image → product metadata so that searches can filter on
//! brand, label, category and tombstones inside the graph walk. An optional
//! [`projection`] learned from the catalog's own photos maps the stored model
//! vectors into the space the graph is built in.

mod error;
mod flat;
mod folder;
pub mod projection;
pub mod quant;
pub mod store;
pub mod vectors;

pub use error::CatalogError;
pub use folder::{Catalog, CatalogOptions, CatalogStats, OpenReport};
pub use projection::{FitOptions, Projection, ProjectionInfo};
pub use store::{ImageRecord, JobRow, JobStatus, NewImage, Store};

/// A small JPEG (at most 256 px on a side) for display (and the copy check's pixel comparison).
pub fn thumbnail(rgb: &image::RgbImage, resizer: &mut fast_image_resize::Resizer) -> Vec<u8> {
    let (w, h) = rgb.dimensions();
    let scale = (256.0 / w.max(h) as f32).min(1.0);
    let (tw, th) = (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1));
    let small = crate::embed::resize_rgb(rgb, tw, th, resizer);
    // `jpeg-encoder` (SIMD): the image crate's encoder took a tenth of `knockoff index`.
    let mut out = Vec::new();
    let _ = jpeg_encoder::Encoder::new(&mut out, 80).encode(small.as_raw(), tw as u16, th as u16, jpeg_encoder::ColorType::Rgb);
    out
}
pub use vectors::{IndexParams, VectorIndex};

/// An image's stored copy-detection features (`embed::local`, catalog scale).
pub fn copy_features(rgb: &image::RgbImage, resizer: &mut fast_image_resize::Resizer) -> Vec<u8> {
    crate::embed::local::LocalFeatures::extract(rgb, &crate::embed::local::CATALOG, false, resizer).to_bytes()
}

use serde::{Deserialize, Serialize};

/// Whether a product's reference photos show the genuine article or a known fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Authentic,
    Counterfeit,
}

impl Label {
    pub fn as_str(&self) -> &'static str {
        match self {
            Label::Authentic => "authentic",
            Label::Counterfeit => "counterfeit",
        }
    }
}

impl std::str::FromStr for Label {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "authentic" => Ok(Label::Authentic),
            "counterfeit" => Ok(Label::Counterfeit),
            other => Err(format!("label must be 'authentic' or 'counterfeit', not '{other}'")),
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest product id, in characters.
pub const MAX_PRODUCT_ID_CHARS: usize = 200;

/// The one rule for product ids, everywhere (manifests, jobs, `PUT`, the
/// store): 1 to 200 characters, no control characters (tab, newline, NUL,
/// BEL, …) and no leading or trailing white space.
pub fn check_product_id(id: &str) -> Result<(), String> {
    let n = id.chars().count();
    let problem = if n == 0 {
        "is empty"
    } else if n > MAX_PRODUCT_ID_CHARS {
        "is longer than 200 characters"
    } else if id.chars().any(char::is_control) {
        "contains a control character (tab, newline, NUL, …)"
    } else if id.trim() != id {
        "starts or ends with white space"
    } else {
        return Ok(());
    };
    let shown: String = id.chars().take(40).flat_map(char::escape_debug).collect();
    Err(format!("product id '{shown}' {problem}; ids are 1-{MAX_PRODUCT_ID_CHARS} printable characters"))
}

/// A catalog product (the caller's `product_id` is its key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub product_id: String,
    pub label: Label,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// Free-form attributes.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Product {
    pub fn new(product_id: impl Into<String>, label: Label) -> Self {
        Product { product_id: product_id.into(), label, brand: None, name: None, category: None, attributes: serde_json::Map::default() }
    }
}

/// Search-time restrictions, applied inside the graph walk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub brand: Option<String>,
    pub label: Option<Label>,
    pub category: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.brand.is_none() && self.label.is_none() && self.category.is_none()
    }
    pub fn matches(&self, p: &Product) -> bool {
        self.brand.as_ref().is_none_or(|b| p.brand.as_deref() == Some(b.as_str()))
            && self.label.is_none_or(|l| p.label == l)
            && self.category.as_ref().is_none_or(|c| p.category.as_deref() == Some(c.as_str()))
    }
}
