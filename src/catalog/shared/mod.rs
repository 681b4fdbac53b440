//! The shared backend: PostgreSQL ([`crate::catalog::store::postgres`])
//! holds the records, Milvus ([`crate::catalog::vectors::milvus`]) the
//! vectors, and any number of stateless replicas serve one catalog.
//!
//! Each replica keeps the same in-memory table as the embedded catalog,
//! caught up from PostgreSQL's change feed every [`sync::SYNC_EVERY`]
//! ([`sync`]); searches ask Milvus (filtering inside the search) and keep
//! only images that table knows live, so a vector whose store transaction
//! failed, or an image deleted a moment ago, is never answered. Writes go to
//! PostgreSQL first, then to Milvus, then mark the image's vector as placed;
//! reconciliation ([`reconcile`], at start and every
//! [`sync::RECONCILE_EVERY`]) places what is missing and removes what is
//! deleted. The projection and the calibration are shared files in
//! PostgreSQL; a new projection gets a new Milvus collection, filled before
//! the switch ([`collections`]).

mod collections;
mod open;
mod reconcile;
mod sync;

pub use sync::{RECONCILE_EVERY, STALE_AFTER, SYNC_EVERY};

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use super::backend::{Backend, Hooks, Space};
use super::projection::{FitOptions, Projection, ProjectionInfo};
use super::store::postgres::PgStore;
use super::store::{Products, RecordStore};
use super::table::ImageTable;
use super::vectors::{Milvus, MilvusCollection};
use super::{CatalogError, CatalogOptions, CatalogStats, NewImage, Product};

/// A tombstone is purged from PostgreSQL this long after its deletion.
const PURGE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// The two engines' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSpec {
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`
    pub store: String,
    /// `milvus://USER:PASSWORD@HOST:PORT`
    pub vectors: String,
}

/// The projection in force and the collection its vectors are in.
#[derive(Clone)]
struct Collection {
    projection: Option<Arc<Projection>>,
    index: Arc<MilvusCollection>,
}

struct Inner {
    pg: PgStore,
    milvus: Arc<Milvus>,
    opts: CatalogOptions,
    table: RwLock<ImageTable>,
    /// The change number applied up to.
    seq: AtomicI64,
    space: RwLock<Collection>,
    file_versions: RwLock<HashMap<String, i64>>,
    /// Bumped whenever a shared file changed (the service reloads its verdicts).
    state_version: AtomicU64,
    uid: String,
    /// When the last sync with PostgreSQL succeeded, and the last failure.
    synced: Mutex<(Instant, Option<CatalogError>)>,
    hooks: Hooks,
}

/// A catalog on PostgreSQL + Milvus, shared by every replica that opens it.
pub struct SharedCatalog {
    inner: Arc<Inner>,
}

impl Inner {
    fn collection(&self) -> Arc<MilvusCollection> {
        self.space.read().index.clone()
    }

    fn records(&self) -> &dyn RecordStore {
        self.pg.as_dyn()
    }
}

impl Backend for SharedCatalog {
    fn records(&self) -> &dyn RecordStore {
        self.inner.pg.as_dyn()
    }
    fn options(&self) -> &CatalogOptions {
        &self.inner.opts
    }
    fn table(&self) -> &RwLock<ImageTable> {
        &self.inner.table
    }
    fn space(&self) -> Space {
        let c = self.inner.space.read().clone();
        Space { projection: c.projection, index: c.index }
    }
    fn hooks(&self) -> &Hooks {
        &self.inner.hooks
    }
    fn location(&self) -> String {
        format!("postgres {} + milvus {}", self.inner.pg.address(), self.inner.milvus.address())
    }

    /// Commits images to PostgreSQL, then places their vectors in Milvus.
    fn add_images(&self, items: &[NewImage], products: Products) -> Result<Vec<Option<i64>>, CatalogError> {
        let inner = &self.inner;
        let changed = match products {
            Products::Upsert => inner.changed_filter_fields(items.iter().map(|it| &it.product)),
            Products::MustExist => Vec::new(),
        };
        let ids = inner.records().add_images(&inner.opts.model, items, products)?;
        inner.sync_changes()?;
        inner.refresh_filter_fields(&changed)?;
        let fresh: Vec<(i64, Vec<f32>)> =
            items.iter().zip(&ids).filter_map(|(it, id)| id.map(|(image, _)| (image, it.embedding.clone()))).collect();
        // Committed: a failure to place the vectors now is repaired by reconciliation.
        if let Err(e) = inner.place(&fresh) {
            tracing::warn!("{} images committed but not yet searchable ({e}); reconciliation will place them", fresh.len());
        }
        Ok(ids.into_iter().map(|o| o.map(|(i, _)| i)).collect())
    }

    fn upsert_product(&self, p: &Product) -> Result<(), CatalogError> {
        let changed = self.inner.changed_filter_fields(std::iter::once(p));
        self.inner.records().upsert_product(p)?;
        self.inner.sync_changes()?;
        self.inner.refresh_filter_fields(&changed)
    }

    fn delete_product(&self, product_id: &str) -> Result<usize, CatalogError> {
        let ids = self.inner.records().delete_product(product_id)?;
        self.inner.after_delete(&ids)?;
        Ok(ids.len())
    }

    fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        self.inner.records().delete_image(id)?;
        self.inner.after_delete(&[id])
    }

    /// Milvus compacts by itself: this reconciles and purges old tombstones.
    fn compact(&self) -> Result<usize, CatalogError> {
        self.inner.reconcile()?;
        self.inner.sweep_strays()?;
        self.inner.purge_deleted(PURGE_AFTER)
    }

    fn fit_projection(&self, fit: FitOptions) -> Result<ProjectionInfo, CatalogError> {
        let inner = &self.inner;
        let live = inner.records().live_vectors_by_source(&inner.opts.model)?;
        let labels = inner.table.read().labels_of(live.iter().map(|(id, _)| *id));
        let refs: Vec<&[f32]> = live.iter().map(|(_, v)| v.as_slice()).collect();
        let p = Projection::fit(&refs, &labels, &inner.opts.model, fit)?;
        let info = p.info.clone();
        inner.switch_space(Some(&p), &live)?;
        Ok(info)
    }

    fn clear_projection(&self) -> Result<bool, CatalogError> {
        if self.inner.space.read().projection.is_none() {
            return Ok(false);
        }
        let live = self.inner.records().live_vectors_by_source(&self.inner.opts.model)?;
        self.inner.switch_space(None, &live)?;
        Ok(true)
    }

    fn stats(&self) -> Result<CatalogStats, CatalogError> {
        let inner = &self.inner;
        let counts = inner.records().counts()?;
        Ok(CatalogStats {
            model: inner.opts.model.clone(),
            dim: inner.opts.dim,
            graph_points: usize::try_from(counts.images).unwrap_or(0),
            counts,
            params: inner.opts.params,
            generation: u64::try_from(inner.seq.load(Ordering::SeqCst)).unwrap_or(0),
            disk_bytes: 0,
            projection: inner.space.read().projection.as_ref().map(|p| p.info.clone()),
        })
    }

    /// Shares a file with every replica (they load it within a sync).
    fn put_file(&self, name: &str, content: Option<&str>) -> Result<(), CatalogError> {
        self.inner.pg.put_file(name, content)?;
        self.inner.sync_files()
    }

    fn state_version(&self) -> u64 {
        self.inner.state_version.load(Ordering::SeqCst)
    }

    /// Live images whose vector Milvus holds in the collection searched now (counted there, not in the store).
    fn searchable_count(&self) -> Result<usize, CatalogError> {
        self.inner.searchable_count()
    }

    fn check_fresh(&self) -> Result<(), CatalogError> {
        self.inner.check_fresh()
    }

    /// Runs `f` only if no other replica runs work named `name` now (a PostgreSQL session lock).
    fn lead(&self, name: &str, f: &mut dyn FnMut()) -> Result<bool, CatalogError> {
        Ok(self.inner.pg.with_session_lock(lock_key(&self.inner.uid, name), f)?.is_some())
    }

    /// Places vectors missing from Milvus and removes deleted ones; returns how many were placed.
    fn reconcile(&self) -> Result<usize, CatalogError> {
        self.inner.reconcile()
    }

    /// Whether each engine answers: (engine, error if down).
    fn health(&self) -> Vec<(&'static str, Option<String>)> {
        let pg = self.inner.pg.ping().err().map(|e| e.to_string());
        let mv = self.inner.milvus.loaded(&self.inner.collection().name).err().map(|e| e.to_string());
        vec![("postgresql", pg), ("milvus", mv)]
    }
}

/// The PostgreSQL advisory lock that stands for work `name` on this catalog.
fn lock_key(uid: &str, name: &str) -> i64 {
    i64::from_str_radix(&crate::util::sha256_hex(format!("{uid}:{name}").as_bytes())[..15], 16).unwrap_or(1)
}

impl std::fmt::Debug for SharedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedCatalog({:?})", self.inner.pg)
    }
}
