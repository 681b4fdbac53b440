//! What a catalog holds and answers, the same on every backend: products
//! and their labels, images to add and as stored, search filters, the
//! options a catalog is opened with and what it reports.

use serde::{Deserialize, Serialize};

use super::projection::ProjectionInfo;
use super::CatalogError;

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

/// The source of a listing photo an analyst's decision made a reference:
/// `case:<case id>` ([`crate::review`]).
pub const LISTING_SOURCE_PREFIX: &str = "case:";

/// How close (cosine) a query must be to a listing-photo reference for that
/// reference to count toward its product's ranking: the same photo or an
/// edited copy of it. Below, such a reference only takes part in the copy
/// check. (Listing photos are closer to other listing photos than studio
/// references are, whatever they show: counted at any similarity, 20 shelf
/// photos made references took R@1 on the next shelf photos from 0.53 to
/// 0.23 on the grocery stream; docs/review.md.)
pub const LISTING_MATCH_MIN: f32 = 0.85;

/// Whether an image source names a listing photo a decision made a reference.
#[must_use]
pub fn is_listing_reference(source: &str) -> bool {
    source.starts_with(LISTING_SOURCE_PREFIX)
}

/// The same test in SQL, on `images i` (1 or 0; the pattern is [`LISTING_SOURCE_PREFIX`], checked by a test).
pub(crate) const LISTING_SQL: &str = "CASE WHEN i.source LIKE 'case:%' THEN 1 ELSE 0 END";

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

/// The longest brand, name or category, in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// The most bytes a product's free-form attributes take as JSON.
pub const MAX_ATTRIBUTES_BYTES: usize = 4096;

/// A brand, name or category: at most 200 characters, no control characters
/// (NUL, CR, newline, …: they break manifests, logs and engines' parsers).
pub fn check_product_text(value: &str) -> Result<(), String> {
    let shown = || value.chars().take(40).flat_map(char::escape_debug).collect::<String>();
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("'{}…' is longer than {MAX_TEXT_CHARS} characters", shown()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("'{}' contains a control character (NUL, CR, newline, tab, …)", shown()));
    }
    Ok(())
}

/// What every backend checks before writing a product: its id, its text
/// fields and the size of its attributes (the one rule for manifests, jobs,
/// `PUT` and the store).
pub fn check_product(p: &Product) -> Result<(), CatalogError> {
    check_product_id(&p.product_id).map_err(|detail| CatalogError::Invalid { field: "product_id", detail })?;
    for (field, value) in [("brand", &p.brand), ("name", &p.name), ("category", &p.category)] {
        if let Some(v) = value {
            check_product_text(v).map_err(|detail| CatalogError::Invalid { field, detail })?;
        }
    }
    let attributes = serde_json::Value::Object(p.attributes.clone()).to_string().len();
    if attributes > MAX_ATTRIBUTES_BYTES {
        let detail = format!("{attributes} bytes of JSON; at most {MAX_ATTRIBUTES_BYTES}");
        return Err(CatalogError::Invalid { field: "attributes", detail });
    }
    Ok(())
}

/// What every backend checks before writing images: every vector has the
/// catalog's dimension and every product id is valid (nothing is written otherwise).
pub(crate) fn check_new_images(items: &[NewImage], dim: usize) -> Result<(), CatalogError> {
    if let Some(it) = items.iter().find(|it| it.embedding.len() != dim) {
        return Err(CatalogError::Dimension { got: it.embedding.len(), want: dim });
    }
    items.iter().try_for_each(|it| check_product(&it.product))
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

/// Search-time restrictions, applied inside the search.
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

/// An image to add, with its embedding for the catalog's model.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub product: Product,
    pub source: String,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub embedding: Vec<f32>,
    /// A small JPEG for display.
    pub thumbnail: Option<Vec<u8>>,
    /// Copy-detection features (`embed::local::LocalFeatures::to_bytes`).
    pub copy_features: Option<Vec<u8>>,
}

/// A stored image record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRecord {
    pub id: i64,
    pub product_id: String,
    pub source: String,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub added_at: String,
    pub deleted: bool,
}

/// How many products and images a catalog holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreCounts {
    pub products: i64,
    pub images: i64,
    pub tombstones: i64,
    pub per_label: Vec<(String, i64)>,
    pub per_brand: Vec<(String, i64)>,
}

/// HNSW parameters. `m` and `ef_construction` are fixed when the graph is
/// built; `ef_search` is the default for queries (each query may override it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams { m: 16, ef_construction: 200, ef_search: 64 }
    }
}

/// How a catalog is opened.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    /// Model whose embeddings this index holds.
    pub model: String,
    pub dim: usize,
    /// HNSW parameters used when the index is created (an existing index keeps its own).
    pub params: IndexParams,
    /// Compact automatically when tombstones exceed this share of the graph.
    pub auto_compact_share: f64,
    /// The model's fingerprint (`ModelManifest::fingerprint`): recorded by a
    /// new index, checked by an existing one.
    pub fingerprint: Option<String>,
}

/// What opening a catalog found, for the operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum OpenReport {
    /// The vectors were there; `caught_up` committed after them were added (or placed).
    Loaded { points: usize, caught_up: usize },
    /// No usable vector dump: rebuilt from the store.
    Rebuilt { points: usize, reason: String },
}

/// What `stats` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CatalogStats {
    pub model: String,
    pub dim: usize,
    #[serde(flatten)]
    pub counts: StoreCounts,
    pub graph_points: usize,
    pub params: IndexParams,
    pub generation: u64,
    pub disk_bytes: u64,
    /// The learned projection the vectors are searched in, if any.
    pub projection: Option<ProjectionInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_test_for_listing_references_matches_the_source_prefix() {
        assert!(LISTING_SQL.contains(&format!("LIKE '{LISTING_SOURCE_PREFIX}%'")), "{LISTING_SQL}");
        assert!(is_listing_reference("case:12") && !is_listing_reference("shots/case-12.jpg"));
    }
}

/// One page of a list: its items, and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// From up to `limit + 1` rows fetched: the extra row only says that more follow.
    #[must_use]
    pub fn of(mut rows: Vec<T>, limit: usize) -> Self {
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        Page { items: rows, has_more }
    }
}
