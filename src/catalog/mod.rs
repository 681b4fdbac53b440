//! The catalog: products, their reference photos, and the vectors that make
//! them searchable.
//!
//! A catalog is two things composed: a **record store** ([`store`]: the
//! source of truth — products, images with their embeddings, thumbnails,
//! copy features, jobs, shared files; `SQLite` or PostgreSQL behind one
//! interface, [`store::RecordStore`]) and a **vector index** ([`vectors`]:
//! derived from the stored embeddings and rebuildable; the embedded HNSW
//! graph or a Milvus collection behind one interface,
//! [`vectors::VectorIndex`]). [`Catalog`] is the one handle the rest of the
//! code uses; it holds a [`backend::Backend`] — [`folder::FolderCatalog`]
//! (`SQLite` + HNSW in one index folder, with its graph dump and compaction)
//! or [`shared::SharedCatalog`] (PostgreSQL + Milvus, any number of
//! replicas, with their change feed and reconciliation) — and writes
//! everything the two share once: searching through the in-memory
//! image → product table ([`table`]), record reads, the job queue.
//!
//! An optional [`projection`] learned from the catalog's own photos maps the
//! stored model vectors into the space the index is built in.

mod backend;
pub mod backup;
mod error;
pub mod features;
pub mod files;
pub mod folder;
pub mod projection;
pub mod shared;
pub mod store;
mod table;
pub mod transfer;
mod types;
pub mod vectors;

pub use backend::{Hook, Phase};
pub use error::CatalogError;
pub use features::{copy_features, thumbnail};
pub use projection::{FitOptions, Projection, ProjectionInfo};
pub use shared::SharedSpec;
pub use store::{ImageRow, JobRow, JobStatus, JobSummary, ProductRow, RecordStore};
pub use types::{
    check_product, check_product_id, check_product_text, is_listing_reference, CatalogOptions, CatalogStats, Filter, ImageRecord,
    IndexParams, Label, NewImage, OpenReport, Page, Product, StoreCounts, LISTING_MATCH_MIN, LISTING_SOURCE_PREFIX, MAX_ATTRIBUTES_BYTES,
    MAX_PRODUCT_ID_CHARS, MAX_TEXT_CHARS,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backend::Backend;

/// Where a catalog lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An index folder (the embedded backend).
    Folder(PathBuf),
    /// PostgreSQL + Milvus (the shared backend).
    Shared(SharedSpec),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Folder(p) => write!(f, "{}", p.display()),
            Location::Shared(s) => write!(f, "{} + {}", crate::util::address_only(&s.store), crate::util::address_only(&s.vectors)),
        }
    }
}

impl Location {
    /// The record store there, opened on its own (no vectors), or `None`
    /// for an index folder that holds no store yet.
    pub fn records(&self) -> Result<Option<Box<dyn RecordStore>>, CatalogError> {
        Ok(match self {
            Location::Folder(dir) if !dir.join(files::STORE_FILE).exists() => None,
            Location::Folder(dir) => Some(Box::new(store::sqlite::SqliteStore::open(dir)?)),
            Location::Shared(s) => Some(Box::new(store::postgres::PgStore::connect(&s.store)?)),
        })
    }

    /// The record store there, created if the index folder holds none yet.
    pub fn records_or_create(&self) -> Result<Box<dyn RecordStore>, CatalogError> {
        Ok(match self {
            Location::Folder(dir) => Box::new(store::sqlite::SqliteStore::open(dir)?),
            Location::Shared(s) => Box::new(store::postgres::PgStore::connect(&s.store)?),
        })
    }
}

/// A catalog on either backend; every use case calls this.
pub struct Catalog {
    backend: Box<dyn Backend>,
}

type Hits = Vec<(i64, f32, Arc<Product>)>;

impl Catalog {
    /// Opens or creates the embedded catalog in `dir`.
    pub fn open(dir: &Path, opts: CatalogOptions) -> Result<(Catalog, OpenReport), CatalogError> {
        let (c, report) = folder::FolderCatalog::open(dir, opts)?;
        Ok((Catalog { backend: Box::new(c) }, report))
    }

    /// Connects to the shared catalog on PostgreSQL + Milvus.
    pub fn connect(spec: &SharedSpec, opts: CatalogOptions) -> Result<(Catalog, OpenReport), CatalogError> {
        let (c, report) = shared::SharedCatalog::connect(spec, opts)?;
        Ok((Catalog { backend: Box::new(c) }, report))
    }

    /// Opens the catalog at `location`.
    pub fn open_at(location: &Location, opts: CatalogOptions) -> Result<(Catalog, OpenReport), CatalogError> {
        match location {
            Location::Folder(dir) => Catalog::open(dir, opts),
            Location::Shared(spec) => Catalog::connect(spec, opts),
        }
    }

    /// The record store: products, images, jobs, shared files.
    pub fn records(&self) -> &dyn RecordStore {
        self.backend.records()
    }
    /// The index folder, when the catalog lives in one.
    pub fn folder(&self) -> Option<&Path> {
        self.backend.folder()
    }
    /// Where the catalog lives, for people (no password).
    pub fn location(&self) -> String {
        self.backend.location()
    }
    pub fn model(&self) -> &str {
        &self.backend.options().model
    }
    pub fn dim(&self) -> usize {
        self.backend.options().dim
    }
    pub fn params(&self) -> IndexParams {
        self.backend.options().params
    }
    /// The learned projection vectors are searched in, if any.
    pub fn projection(&self) -> Option<Arc<Projection>> {
        self.backend.space().projection
    }
    /// Fits a projection on the live photos (labelled by product), and searches in it from then on.
    pub fn fit_projection(&self, opts: FitOptions) -> Result<ProjectionInfo, CatalogError> {
        self.backend.fit_projection(opts)
    }
    /// Searches in the model's own space again; `false` when there was no projection.
    pub fn clear_projection(&self) -> Result<bool, CatalogError> {
        self.backend.clear_projection()
    }
    /// Watches the phases of long operations (tests; `None` stops).
    pub fn set_hook(&self, hook: Option<Hook>) {
        self.backend.hooks().set(hook);
    }

    /// The live model vectors with their product's row id, in source order.
    pub fn labelled_vectors(&self) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        Ok(self.labelled_images()?.into_iter().map(|(_, product, v)| (product, v)).collect())
    }
    /// The live images as (image id, product row id, model vector), in
    /// source order: the brand's own (listing photos a decision made
    /// references are left out: fitting counts them as reviewed lookups).
    pub fn labelled_images(&self) -> Result<Vec<(i64, i64, Vec<f32>)>, CatalogError> {
        let mut live = self.records().live_vectors_by_source(self.model())?;
        let table = self.backend.table().read();
        live.retain(|(id, _)| !table.is_listing(*id));
        let labels = table.labels_of(live.iter().map(|(id, _)| *id));
        Ok(labels.into_iter().zip(live).map(|(l, (id, v))| (id, l, v)).collect())
    }
    /// Every product's label, by row id.
    pub fn product_labels(&self) -> HashMap<i64, Label> {
        self.backend.table().read().product_labels()
    }

    /// Commits images, then makes them searchable; per item its new id, or `None` if already indexed.
    /// Nothing is written unless every item is valid.
    pub fn add_images(&self, items: &[NewImage]) -> Result<Vec<Option<i64>>, CatalogError> {
        types::check_new_images(items, self.dim())?;
        self.backend.add_images(items, store::Products::Upsert)
    }
    /// Like [`Catalog::add_images`], but only to products that exist now,
    /// which it leaves as they are (`UnknownProduct` otherwise, nothing
    /// written): a photo uploaded for a product deleted meanwhile does not bring it back.
    pub fn add_images_to_existing(&self, items: &[NewImage]) -> Result<Vec<Option<i64>>, CatalogError> {
        types::check_new_images(items, self.dim())?;
        self.backend.add_images(items, store::Products::MustExist)
    }
    /// Creates or updates a product's metadata (fields not given keep their value).
    pub fn upsert_product(&self, p: &Product) -> Result<(), CatalogError> {
        types::check_product(p)?;
        self.backend.upsert_product(p)
    }
    /// One page of the live products, in id order, after `starting_after` (`""`: from the first).
    pub fn products_page(&self, starting_after: &str, limit: usize) -> Result<Page<Product>, CatalogError> {
        Ok(Page::of(self.records().products_page(starting_after, limit.saturating_add(1))?, limit))
    }
    /// Deletes a product: its images are hidden from every search at once; returns how many.
    pub fn delete_product(&self, product_id: &str) -> Result<usize, CatalogError> {
        self.backend.delete_product(product_id)
    }
    pub fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        self.backend.delete_image(id)
    }
    pub fn tombstone_share(&self) -> f64 {
        self.backend.tombstone_share()
    }
    pub fn compact(&self) -> Result<usize, CatalogError> {
        self.backend.compact()
    }
    /// Makes the current state durable.
    pub fn persist(&self) -> Result<(), CatalogError> {
        self.backend.persist()
    }

    /// The `k` nearest live images passing `filter`, best first, with their
    /// product. `q` is a model vector; the projection, if any, is applied here.
    pub fn search_images(&self, q: &[f32], k: usize, ef: Option<usize>, filter: &Filter) -> Result<Hits, CatalogError> {
        self.backend.check_fresh()?;
        let space = self.backend.space();
        let q = space.project(q);
        let ef = ef.unwrap_or(self.params().ef_search);
        let table = self.backend.table();
        // An index that tests ids inside its walk locks the table once, at its first test;
        // one that asks an engine over the network never holds it while it waits.
        let held = std::cell::OnceCell::new();
        let keep = |id: i64| held.get_or_init(|| table.read()).keep(id, filter);
        let hits = space.index.search(&q, k, ef, filter, &keep)?;
        let table = held.get_or_init(|| table.read());
        Ok(hits.into_iter().filter_map(|(id, sim)| Some((id, sim, table.hit(id, filter)?.clone()))).take(k).collect())
    }

    /// Drops the hits on listing photos a decision made references that are
    /// less similar than [`LISTING_MATCH_MIN`] (the table read once for all).
    pub fn drop_weak_listing_hits(&self, hits: &mut Hits) {
        let table = self.backend.table().read();
        hits.retain(|(id, sim, _)| *sim >= LISTING_MATCH_MIN || !table.is_listing(*id));
    }
    /// A live image's copy-detection features and product, if it has features.
    pub fn copy_features(&self, id: i64) -> Option<(Arc<crate::embed::local::LocalFeatures>, Arc<Product>)> {
        self.backend.table().read().copy_features(id)
    }
    /// Live images, counted in memory (no store query): what the service's refit check polls.
    pub fn live_image_count(&self) -> usize {
        self.backend.table().read().live_count()
    }
    /// Live images a search can find (on the shared backend, counted in Milvus).
    pub fn searchable_count(&self) -> Result<usize, CatalogError> {
        self.backend.searchable_count()
    }
    pub fn stats(&self) -> Result<CatalogStats, CatalogError> {
        self.backend.stats()
    }

    /// Changes whenever a shared file (projection, calibration) changed.
    pub fn state_version(&self) -> u64 {
        self.backend.state_version()
    }
    /// Replaces (or removes) a shared file (the calibration) for every server of the catalog.
    pub fn put_file(&self, name: &str, content: Option<&str>) -> Result<(), CatalogError> {
        self.backend.put_file(name, content)
    }
    /// Runs `f` unless another server of the catalog runs the work named `name` now (then `None`).
    pub fn lead<T>(&self, name: &str, f: impl FnOnce() -> T) -> Result<Option<T>, CatalogError> {
        let (mut f, mut out) = (Some(f), None);
        self.backend.lead(name, &mut || out = f.take().map(|f| f()))?;
        Ok(out)
    }
    /// Repairs differences between records and vectors now (the shared backend also does it periodically).
    pub fn reconcile(&self) -> Result<usize, CatalogError> {
        self.backend.reconcile()
    }
    /// Each engine the catalog depends on and, if it is down, why.
    pub fn health(&self) -> Vec<(&'static str, Option<String>)> {
        self.backend.health()
    }
    /// At a job runner's start: takes up the jobs an earlier runner left
    /// (see [`RecordStore::recover_jobs`]); returns how many are unfinished.
    pub fn recover_jobs(&self) -> Result<usize, CatalogError> {
        self.records().recover_jobs(self.backend.sole_runner())
    }
}
