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
//!
//! [`Catalog`] is the one interface the rest of the code uses, with two
//! implementations: [`FolderCatalog`] (the embedded default above, one
//! process) and [`SharedCatalog`] (PostgreSQL + Milvus, any number of
//! replicas; see [`shared`]).

mod error;
mod flat;
mod folder;
pub mod projection;
pub mod quant;
pub mod shared;
pub mod store;
pub mod transfer;
pub mod vectors;

pub use error::CatalogError;
pub use folder::{CatalogOptions, CatalogStats, FolderCatalog, OpenReport};
pub use projection::{FitOptions, Projection, ProjectionInfo};
pub use shared::{SharedCatalog, SharedSpec};
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

/// What both backends check before writing a product: its id.
fn check_product(p: &Product) -> Result<(), CatalogError> {
    check_product_id(&p.product_id).map_err(|detail| CatalogError::Invalid { field: "product_id", detail })
}

/// What both backends check before writing images: every vector has the
/// catalog's dimension and every product id is valid (nothing is written otherwise).
fn check_new_images(items: &[NewImage], dim: usize) -> Result<(), CatalogError> {
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

/// A catalog on either backend; every use case calls this.
pub enum Catalog {
    /// `SQLite` + the embedded HNSW index in one folder.
    Folder(Box<FolderCatalog>),
    /// PostgreSQL + Milvus, shared by replicas.
    Shared(SharedCatalog),
}

/// Calls the same method on whichever backend this is.
macro_rules! both {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Catalog::Folder($c) => $e,
            Catalog::Shared($c) => $e,
        }
    };
}

type Hits = Vec<(i64, f32, std::sync::Arc<Product>)>;
type Pairs = std::collections::HashSet<(String, String)>;

impl Catalog {
    /// Opens or creates the embedded catalog in `dir`.
    pub fn open(dir: &std::path::Path, opts: CatalogOptions) -> Result<(Catalog, OpenReport), CatalogError> {
        FolderCatalog::open(dir, opts).map(|(c, r)| (Catalog::Folder(Box::new(c)), r))
    }
    /// Connects to the shared catalog on PostgreSQL + Milvus.
    pub fn connect(spec: &SharedSpec, opts: CatalogOptions) -> Result<(Catalog, OpenReport), CatalogError> {
        SharedCatalog::connect(spec, opts).map(|(c, r)| (Catalog::Shared(c), r))
    }
    /// A local folder: the index folder, or a replica's private mirror of the shared files.
    pub fn dir(&self) -> &std::path::Path {
        both!(self, c => c.dir())
    }
    /// Where the catalog lives, for people (no password).
    pub fn location(&self) -> String {
        match self {
            Catalog::Folder(c) => c.dir().display().to_string(),
            Catalog::Shared(c) => c.location(),
        }
    }
    pub fn model(&self) -> &str {
        both!(self, c => c.model())
    }
    pub fn dim(&self) -> usize {
        both!(self, c => c.dim())
    }
    pub fn params(&self) -> IndexParams {
        both!(self, c => c.params())
    }
    pub fn projection(&self) -> Option<std::sync::Arc<Projection>> {
        both!(self, c => c.projection())
    }
    pub fn fit_projection(&self, opts: FitOptions) -> Result<ProjectionInfo, CatalogError> {
        both!(self, c => c.fit_projection(opts))
    }
    pub fn clear_projection(&self) -> Result<bool, CatalogError> {
        both!(self, c => c.clear_projection())
    }
    /// The live model vectors with their product's row id, in source order.
    pub fn labelled_vectors(&self) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        Ok(self.labelled_images()?.into_iter().map(|(_, product, v)| (product, v)).collect())
    }
    /// The live images as (image id, product row id, model vector), in source order.
    pub fn labelled_images(&self) -> Result<Vec<(i64, i64, Vec<f32>)>, CatalogError> {
        both!(self, c => c.labelled_images())
    }
    pub fn product_labels(&self) -> std::collections::HashMap<i64, Label> {
        both!(self, c => c.product_labels())
    }
    pub fn live_sources(&self) -> Result<Pairs, CatalogError> {
        both!(self, c => c.live_sources())
    }
    pub fn live_hashes(&self) -> Result<Pairs, CatalogError> {
        both!(self, c => c.live_hashes())
    }
    pub fn image_counts(&self) -> Result<std::collections::HashMap<String, usize>, CatalogError> {
        both!(self, c => c.image_counts())
    }
    pub fn thumbnail(&self, id: i64) -> Result<Option<Vec<u8>>, CatalogError> {
        both!(self, c => c.thumbnail(id))
    }
    pub fn create_job(&self, id: &str, format: &str, source: &str) -> Result<(), CatalogError> {
        both!(self, c => c.create_job(id, format, source))
    }
    pub fn update_job(&self, id: &str, status: JobStatus, counts: &str, errors: &str, message: Option<&str>) -> Result<(), CatalogError> {
        both!(self, c => c.update_job(id, status, counts, errors, message))
    }
    pub fn job(&self, id: &str) -> Result<Option<JobRow>, CatalogError> {
        both!(self, c => c.job(id))
    }
    /// At start: jobs an earlier run of this process left running are queued
    /// again (counting a crash); on the shared backend, leases do this.
    pub fn recover_jobs(&self) -> Result<usize, CatalogError> {
        match self {
            Catalog::Folder(c) => c.recover_jobs(),
            Catalog::Shared(_) => Ok(0),
        }
    }
    /// Takes the next job to run, for `owner`: each job is claimed once.
    pub fn claim_job(&self, owner: &str) -> Result<Option<String>, CatalogError> {
        match self {
            Catalog::Folder(c) => c.claim_job(),
            Catalog::Shared(c) => c.claim_job(owner),
        }
    }
    /// Tells the other replicas that `owner` still runs job `id`.
    pub fn renew_job(&self, id: &str, owner: &str) -> Result<(), CatalogError> {
        match self {
            Catalog::Folder(_) => Ok(()),
            Catalog::Shared(c) => c.renew_job(id, owner),
        }
    }
    pub fn set_job_in_flight(&self, id: &str, item: Option<&str>) -> Result<(), CatalogError> {
        both!(self, c => c.set_job_in_flight(id, item))
    }
    pub fn quarantine_job_in_flight(&self, id: &str) -> Result<(), CatalogError> {
        both!(self, c => c.quarantine_job_in_flight(id))
    }
    /// Commits images, then makes them searchable; per item its new id, or `None` if already indexed.
    pub fn add_images(&self, items: &[NewImage]) -> Result<Vec<Option<i64>>, CatalogError> {
        both!(self, c => c.add_images(items))
    }
    pub fn upsert_product(&self, p: &Product) -> Result<(), CatalogError> {
        both!(self, c => c.upsert_product(p))
    }
    pub fn delete_product(&self, product_id: &str) -> Result<usize, CatalogError> {
        both!(self, c => c.delete_product(product_id))
    }
    pub fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        both!(self, c => c.delete_image(id))
    }
    pub fn tombstone_share(&self) -> f64 {
        both!(self, c => c.tombstone_share())
    }
    pub fn compact(&self) -> Result<usize, CatalogError> {
        both!(self, c => c.compact())
    }
    /// Makes the current state durable (the embedded dump; the shared backend always is).
    pub fn persist(&self) -> Result<(), CatalogError> {
        match self {
            Catalog::Folder(c) => c.persist(),
            Catalog::Shared(_) => Ok(()),
        }
    }
    /// The `k` nearest live images passing `filter`, best first, with their product.
    pub fn search_images(&self, q: &[f32], k: usize, ef: Option<usize>, filter: &Filter) -> Result<Hits, CatalogError> {
        both!(self, c => c.search_images(q, k, ef, filter))
    }
    pub fn copy_features(&self, id: i64) -> Option<(std::sync::Arc<crate::embed::local::LocalFeatures>, std::sync::Arc<Product>)> {
        both!(self, c => c.copy_features(id))
    }
    pub fn product(&self, product_id: &str) -> Result<Option<Product>, CatalogError> {
        both!(self, c => c.product(product_id))
    }
    pub fn images_of(&self, product_id: &str) -> Result<Vec<ImageRecord>, CatalogError> {
        both!(self, c => c.images_of(product_id))
    }
    pub fn image(&self, id: i64) -> Result<Option<ImageRecord>, CatalogError> {
        both!(self, c => c.image(id))
    }
    pub fn live_image_count(&self) -> usize {
        both!(self, c => c.live_image_count())
    }
    /// Live images a search can find: the graph's live points, or the live
    /// images whose vector Milvus holds (counted in Milvus).
    pub fn searchable_count(&self) -> Result<usize, CatalogError> {
        match self {
            Catalog::Folder(c) => Ok(c.live_image_count()),
            Catalog::Shared(c) => c.searchable_count(),
        }
    }
    pub fn stats(&self) -> Result<CatalogStats, CatalogError> {
        both!(self, c => c.stats())
    }
    /// Changes whenever state shared by replicas (projection, calibration) changed.
    pub fn state_version(&self) -> u64 {
        match self {
            Catalog::Folder(_) => 0,
            Catalog::Shared(c) => c.state_version(),
        }
    }
    /// Shares a file written into [`Catalog::dir`] (the calibration) with every replica.
    pub fn publish_file(&self, name: &str) -> Result<(), CatalogError> {
        match self {
            Catalog::Folder(_) => Ok(()),
            Catalog::Shared(c) => c.publish_file(name),
        }
    }
    /// Runs `f` unless another replica runs the work named `name` now (then `None`).
    pub fn lead<T>(&self, name: &str, f: impl FnOnce() -> T) -> Result<Option<T>, CatalogError> {
        match self {
            Catalog::Folder(_) => Ok(Some(f())),
            Catalog::Shared(c) => c.lead(name, f),
        }
    }
    /// Shared backend: places vectors missing from Milvus and removes deleted
    /// ones now (also done periodically); returns how many were placed.
    pub fn reconcile(&self) -> Result<usize, CatalogError> {
        match self {
            Catalog::Folder(_) => Ok(0),
            Catalog::Shared(c) => c.reconcile(),
        }
    }
    /// Each dependency and, if it is down, why (the embedded backend has none).
    pub fn health(&self) -> Vec<(&'static str, Option<String>)> {
        match self {
            Catalog::Folder(_) => Vec::new(),
            Catalog::Shared(c) => c.health(),
        }
    }
}
