//! The embedded backend: one index folder holding the `SQLite` record store
//! ([`crate::catalog::store::sqlite`]), the HNSW graph and its dump
//! ([`graph`]), and the shared files, served by one process.
//!
//! Writers (adding, deleting, compacting, dumping, a refit's swap) take one
//! writer lock, so the records, the in-memory table and the graph change
//! together; searches never take it. A projection refit builds its new graph
//! without the lock ([`refit`]); a compaction rebuilds holding it
//! ([`compact`]), while searches and the record reads go on.

mod compact;
mod graph;
mod refit;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::backend::{Backend, Hooks, Phase, Space};
use super::projection::{FitOptions, Projection, ProjectionInfo};
use super::store::sqlite::SqliteStore;
use super::store::{Products, RecordStore};
use super::table::ImageTable;
use super::vectors::HnswIndex;
use super::{CatalogError, CatalogOptions, CatalogStats, NewImage, OpenReport, Product};

/// The graph and the projection it is built in, swapped together.
#[derive(Clone)]
struct Graph {
    index: Arc<HnswIndex>,
    projection: Option<Arc<Projection>>,
}

/// A durable, searchable catalog in one index folder.
pub struct FolderCatalog {
    dir: PathBuf,
    opts: CatalogOptions,
    store: SqliteStore,
    /// Serialises writers (see the module doc).
    writer: Mutex<()>,
    table: RwLock<ImageTable>,
    graph: RwLock<Graph>,
    /// Deletes and purges so far (counted under the writer lock): a graph
    /// built from a snapshot of the live vectors can only be caught up by
    /// adding newer ids when none happened since.
    removals: AtomicU64,
    /// Bumped by every change of a shared file.
    state_version: AtomicU64,
    hooks: Hooks,
}

impl FolderCatalog {
    /// Opens or creates the catalog in `dir`, loading the graph dump if it
    /// checks out and rebuilding it from the store otherwise.
    pub fn open(dir: &Path, opts: CatalogOptions) -> Result<(FolderCatalog, OpenReport), CatalogError> {
        let store = SqliteStore::open(dir)?;
        let records = store.as_dyn();
        let opts = records.adopt(opts)?;
        let table = graph::load_table(records)?;
        let projection = Projection::stored(records)?;
        if let Some(p) = projection.as_ref().filter(|p| p.info.model != opts.model || p.info.in_dim != opts.dim) {
            return Err(CatalogError::Projection(format!(
                "{} was fitted for model '{}' ({}-d), not this index's '{}' ({}-d); remove it or refit with `knockoff tune`",
                dir.join(super::files::PROJECTION_FILE).display(),
                p.info.model,
                p.info.in_dim,
                opts.model,
                opts.dim
            )));
        }
        let projection = projection.map(Arc::new);
        let (index, report) = graph::load_graph(records, dir, &opts, projection.as_deref())?;
        let cat = FolderCatalog {
            dir: dir.into(),
            opts,
            store,
            writer: Mutex::new(()),
            table: RwLock::new(table),
            graph: RwLock::new(Graph { index: Arc::new(index), projection }),
            removals: AtomicU64::new(0),
            state_version: AtomicU64::new(0),
            hooks: Hooks::default(),
        };
        if matches!(report, OpenReport::Rebuilt { points, .. } if points > 0)
            || matches!(report, OpenReport::Loaded { caught_up, .. } if caught_up > 0)
        {
            cat.persist()?;
        }
        Ok((cat, report))
    }

    fn current(&self) -> Graph {
        self.graph.read().clone()
    }

    /// Swaps in a graph and its projection together; returns the old ones,
    /// to free outside the writer lock (freeing a graph takes a while).
    fn swap(&self, fresh: Graph) -> Graph {
        std::mem::replace(&mut *self.graph.write(), fresh)
    }
}

impl Backend for FolderCatalog {
    fn records(&self) -> &dyn RecordStore {
        &self.store
    }
    fn options(&self) -> &CatalogOptions {
        &self.opts
    }
    fn table(&self) -> &RwLock<ImageTable> {
        &self.table
    }
    fn space(&self) -> Space {
        let g = self.current();
        Space { projection: g.projection, index: g.index }
    }
    fn hooks(&self) -> &Hooks {
        &self.hooks
    }
    fn folder(&self) -> Option<&Path> {
        Some(&self.dir)
    }
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn sole_runner(&self) -> bool {
        true
    }

    fn add_images(&self, items: &[NewImage], products: Products) -> Result<Vec<Option<i64>>, CatalogError> {
        let _writing = self.writer.lock();
        let ids = self.store.as_dyn().add_images(&self.opts.model, items, products)?;
        {
            let mut table = self.table.write();
            for (it, id) in items.iter().zip(&ids) {
                if let Some((image, row)) = id {
                    if products == Products::Upsert {
                        table.put_product(*row, it.product.clone());
                    }
                    let listing = crate::catalog::is_listing_reference(&it.source);
                    table.put_image(*image, *row, false, listing, it.copy_features.as_deref());
                }
            }
        }
        self.hooks.at(Phase::Adding);
        let g = self.current();
        for (it, id) in items.iter().zip(&ids) {
            if let Some((image, _)) = id {
                match &g.projection {
                    Some(p) => g.index.add(*image, &p.apply(&it.embedding))?,
                    None => g.index.add(*image, &it.embedding)?,
                }
            }
        }
        Ok(ids.into_iter().map(|o| o.map(|(i, _)| i)).collect())
    }

    fn upsert_product(&self, p: &Product) -> Result<(), CatalogError> {
        let _writing = self.writer.lock();
        let records = self.store.as_dyn();
        records.upsert_product(p)?;
        // The in-memory copy searches filter and answer with: as stored (fields not given kept).
        if let Some((row, stored)) = records.product_row(&p.product_id)? {
            self.table.write().put_product(row, stored);
        }
        Ok(())
    }

    fn delete_product(&self, product_id: &str) -> Result<usize, CatalogError> {
        let ids = {
            let _writing = self.writer.lock();
            self.removals.fetch_add(1, Ordering::SeqCst);
            self.store.as_dyn().delete_product(product_id)?
        };
        self.table.write().tombstone(&ids);
        self.maybe_compact()?;
        Ok(ids.len())
    }

    fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        {
            let _writing = self.writer.lock();
            self.removals.fetch_add(1, Ordering::SeqCst);
            self.store.as_dyn().delete_image(id)?;
        }
        self.table.write().tombstone(&[id]);
        self.maybe_compact()
    }

    fn compact(&self) -> Result<usize, CatalogError> {
        FolderCatalog::compact(self)
    }

    fn fit_projection(&self, opts: FitOptions) -> Result<ProjectionInfo, CatalogError> {
        FolderCatalog::fit_projection(self, opts)
    }

    fn clear_projection(&self) -> Result<bool, CatalogError> {
        FolderCatalog::clear_projection(self)
    }

    fn stats(&self) -> Result<CatalogStats, CatalogError> {
        let records = self.store.as_dyn();
        let g = self.current();
        Ok(CatalogStats {
            model: self.opts.model.clone(),
            dim: self.opts.dim,
            counts: records.counts()?,
            graph_points: g.index.len(),
            params: self.opts.params,
            generation: records.generation()?,
            disk_bytes: dir_size(&self.dir),
            projection: g.projection.map(|p| p.info.clone()),
        })
    }

    fn put_file(&self, name: &str, content: Option<&str>) -> Result<(), CatalogError> {
        self.store.put_file(name, content)?;
        self.state_version.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn state_version(&self) -> u64 {
        self.state_version.load(Ordering::SeqCst)
    }

    fn tombstone_share(&self) -> f64 {
        let t = self.table.read().tombstones();
        t as f64 / self.current().index.len().max(1) as f64
    }

    /// Writes the graph dump, tagged with the store generation, and folds the
    /// store's write-ahead log into its file (the store file alone is then complete).
    fn persist(&self) -> Result<(), CatalogError> {
        let _writing = self.writer.lock();
        let g = self.current();
        g.index.dump(&graph::graph_dir(&self.dir, &self.opts.model, g.projection.as_deref()), self.store.as_dyn().generation()?)?;
        self.store.checkpoint()
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
