//! What a catalog backend is: a [`RecordStore`] and a vector index
//! ([`Space`]), composed with what only that backend needs. [`super::Catalog`]
//! holds one and writes everything the two share once (searching, the
//! in-memory table, the record reads, the job queue); a backend supplies the
//! writes that keep its records, table and vectors in step, and the
//! operations only one backend has (with defaults that say what the other
//! does instead).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;

use super::projection::{FitOptions, Projection, ProjectionInfo};
use super::store::{Products, RecordStore};
use super::table::ImageTable;
use super::vectors::VectorIndex;
use super::{CatalogError, CatalogOptions, CatalogStats, NewImage, Product};

/// The space vectors are searched in: the projection (none: the model's own)
/// and the index holding the projected vectors, always read together.
#[derive(Clone)]
pub struct Space {
    pub projection: Option<Arc<Projection>>,
    pub index: Arc<dyn VectorIndex>,
}

impl Space {
    /// A model vector in this space.
    pub fn project<'a>(&self, v: &'a [f32]) -> Cow<'a, [f32]> {
        match &self.projection {
            Some(p) => Cow::Owned(p.apply(v)),
            None => Cow::Borrowed(v),
        }
    }
}

/// A moment inside a long catalog operation, announced to a [`Hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Images are committed and the writer lock is held while they enter the graph: searches go on.
    Adding,
    /// A projection refit builds its new graph without the writer lock:
    /// writes and reads go on meanwhile.
    RefitBuilding,
    /// A projection refit holds the writer lock to catch up, dump and swap: reads go on.
    RefitLocked,
    /// A projection refit swapped its graph and projection in.
    RefitSwapped,
    /// A compaction holds the writer lock while it rebuilds the graph: reads go on.
    Compacting,
    /// A replica applied the change feed up to this change number.
    Synced(i64),
}

/// Called at each [`Phase`], on the thread doing the work (which waits for it):
/// how tests observe, and hold, a moment without timing it.
pub type Hook = Arc<dyn Fn(Phase) + Send + Sync>;

/// Where a backend announces its phases.
#[derive(Default)]
pub struct Hooks(RwLock<Option<Hook>>);

impl Hooks {
    pub fn set(&self, hook: Option<Hook>) {
        *self.0.write() = hook;
    }

    pub fn at(&self, phase: Phase) {
        let hook = self.0.read().clone();
        if let Some(h) = hook {
            h(phase);
        }
    }
}

pub trait Backend: Send + Sync {
    fn records(&self) -> &dyn RecordStore;
    fn options(&self) -> &CatalogOptions;
    fn table(&self) -> &RwLock<ImageTable>;
    fn space(&self) -> Space;
    fn hooks(&self) -> &Hooks;
    /// Where the catalog lives, for people (no password).
    fn location(&self) -> String;

    /// Commits images (their products as `products` says), then makes them
    /// searchable; per item its new id, or `None` if already indexed.
    fn add_images(&self, items: &[NewImage], products: Products) -> Result<Vec<Option<i64>>, CatalogError>;
    fn upsert_product(&self, p: &Product) -> Result<(), CatalogError>;
    /// Deletes a product; returns how many images went with it.
    fn delete_product(&self, product_id: &str) -> Result<usize, CatalogError>;
    fn delete_image(&self, id: i64) -> Result<(), CatalogError>;
    /// Frees what deleted images hold; returns how many were purged.
    fn compact(&self) -> Result<usize, CatalogError>;
    fn fit_projection(&self, opts: FitOptions) -> Result<ProjectionInfo, CatalogError>;
    fn clear_projection(&self) -> Result<bool, CatalogError>;
    fn stats(&self) -> Result<CatalogStats, CatalogError>;
    /// Replaces (or removes) a shared file and makes every server of the catalog load it.
    fn put_file(&self, name: &str, content: Option<&str>) -> Result<(), CatalogError>;
    /// Changes whenever a shared file (projection, calibration) changed.
    fn state_version(&self) -> u64;

    /// The index folder, when the catalog lives in one (the shared backend has none).
    fn folder(&self) -> Option<&Path> {
        None
    }
    /// Whether this process is the only job runner there is (an index
    /// folder); otherwise leases decide who runs what.
    fn sole_runner(&self) -> bool {
        false
    }
    /// Share of the vector index that is deleted images still held (an index that deletes at once holds none).
    fn tombstone_share(&self) -> f64 {
        0.0
    }
    /// Makes what is in memory durable (a backend that writes through has nothing to do).
    fn persist(&self) -> Result<(), CatalogError> {
        Ok(())
    }
    /// Live images a search can find (where the index holds exactly the live images, all of them).
    fn searchable_count(&self) -> Result<usize, CatalogError> {
        Ok(self.table().read().live_count())
    }
    /// `Err` when the catalog cannot vouch for its answers now (a replica cut off from its store).
    fn check_fresh(&self) -> Result<(), CatalogError> {
        Ok(())
    }
    /// Runs `f` unless another server of the catalog runs the work named `name` now (then `false`).
    fn lead(&self, _name: &str, f: &mut dyn FnMut()) -> Result<bool, CatalogError> {
        f();
        Ok(true)
    }
    /// Repairs differences between the records and the vector index; returns how many vectors were placed.
    fn reconcile(&self) -> Result<usize, CatalogError> {
        Ok(0)
    }
    /// Each engine the catalog depends on and, if it is down, why (an embedded catalog depends on none).
    fn health(&self) -> Vec<(&'static str, Option<String>)> {
        Vec::new()
    }
}
