use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::store::{ImageRecord, NewImage, Store, StoreCounts};
use super::vectors::{IndexParams, VectorIndex};
use super::{CatalogError, Filter, Product};

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
}

/// What `open` found, for the operator.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum OpenReport {
    /// The dump matched; `caught_up` vectors committed after it were added.
    Loaded { points: usize, caught_up: usize },
    /// No usable dump: rebuilt from the store.
    Rebuilt { points: usize, reason: String },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CatalogStats {
    pub model: String,
    pub dim: usize,
    #[serde(flatten)]
    pub counts: StoreCounts,
    pub graph_points: usize,
    pub params: IndexParams,
    pub generation: u64,
    pub disk_bytes: u64,
}

struct ImageEntry {
    product_row: i64,
    deleted: bool,
}

#[derive(Default)]
struct Meta {
    products: HashMap<i64, Arc<Product>>,
    images: HashMap<i64, ImageEntry>,
    tombstones: usize,
}

/// A durable, searchable catalog in one index folder.
pub struct Catalog {
    dir: PathBuf,
    opts: CatalogOptions,
    /// The store; its lock also serialises writers (add, delete, compact, dump).
    store: Mutex<Store>,
    index: RwLock<Arc<VectorIndex>>,
    meta: RwLock<Meta>,
}

impl Catalog {
    /// Opens or creates the catalog in `dir`, loading the vector dump if it
    /// checks out and rebuilding it from the store otherwise.
    pub fn open(dir: &Path, opts: CatalogOptions) -> Result<(Catalog, OpenReport), CatalogError> {
        let store = Store::open(dir)?;
        let mut opts = opts;
        match store.meta("model")? {
            Some(m) if m != opts.model => {
                return Err(CatalogError::ModelMismatch { path: dir.into(), found: m, wanted: opts.model });
            }
            Some(_) => {
                if let Some(p) = store.meta("index_params")?.and_then(|p| serde_json::from_str::<IndexParams>(&p).ok()) {
                    opts.params = IndexParams { ef_search: opts.params.ef_search, ..p };
                }
            }
            None => {
                store.set_meta("model", &opts.model)?;
                store.set_meta("dim", &opts.dim.to_string())?;
                store.set_meta("index_params", &serde_json::to_string(&opts.params).unwrap_or_default())?;
            }
        }
        let mut meta = Meta::default();
        for (row, p) in store.products()? {
            meta.products.insert(row, Arc::new(p));
        }
        for (id, product_row, deleted) in store.image_owners()? {
            meta.tombstones += deleted as usize;
            meta.images.insert(id, ImageEntry { product_row, deleted });
        }
        let vdir = vectors_dir(dir, &opts.model);
        let generation = store.generation()?;
        let (index, report) = match VectorIndex::load(&vdir, opts.dim, opts.params) {
            Ok(Some((idx, marker))) => {
                let newer = store.live_vectors_after(&opts.model, marker.max_image_id)?;
                idx.insert_many(&newer)?;
                let caught_up = newer.len();
                if caught_up > 0 || marker.generation != generation {
                    tracing::info!("index dump is {} generations behind the store: added {caught_up} vectors", generation.saturating_sub(marker.generation));
                }
                (idx, OpenReport::Loaded { points: marker.points + caught_up, caught_up })
            }
            other => {
                let reason = match other {
                    Ok(None) => "no index dump yet".to_string(),
                    Err(e) => format!("index dump unusable ({e})"),
                    Ok(Some(_)) => unreachable!(),
                };
                let all = store.live_vectors_after(&opts.model, 0)?;
                let idx = VectorIndex::new(opts.dim, opts.params, all.len());
                idx.insert_many(&all)?;
                if !all.is_empty() {
                    tracing::warn!("{reason}: rebuilt the vector index from the store ({} vectors)", all.len());
                }
                (idx, OpenReport::Rebuilt { points: all.len(), reason })
            }
        };
        let cat = Catalog {
            dir: dir.into(),
            opts,
            store: Mutex::new(store),
            index: RwLock::new(Arc::new(index)),
            meta: RwLock::new(meta),
        };
        if matches!(report, OpenReport::Rebuilt { points, .. } if points > 0) || matches!(report, OpenReport::Loaded { caught_up, .. } if caught_up > 0) {
            cat.persist()?;
        }
        Ok((cat, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn model(&self) -> &str {
        &self.opts.model
    }
    pub fn dim(&self) -> usize {
        self.opts.dim
    }
    pub fn params(&self) -> IndexParams {
        self.opts.params
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn index(&self) -> Arc<VectorIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Live (product_id, source) pairs already indexed.
    pub fn live_sources(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.store().live_sources()
    }

    pub fn image_counts(&self) -> Result<HashMap<String, usize>, CatalogError> {
        self.store().image_counts()
    }

    pub fn thumbnail(&self, id: i64) -> Result<Option<Vec<u8>>, CatalogError> {
        self.store().thumbnail(id)
    }

    /// Runs `f` with the store (jobs bookkeeping).
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> Result<T, CatalogError>) -> Result<T, CatalogError> {
        f(&self.store())
    }

    /// Live (product_id, sha256) pairs already indexed.
    pub fn live_hashes(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.store().live_hashes()
    }

    /// Commits images in one transaction, then makes them searchable.
    /// Returns each item's new image id, or `None` if it was already indexed.
    pub fn add_images(&self, items: &[NewImage]) -> Result<Vec<Option<i64>>, CatalogError> {
        if let Some(it) = items.iter().find(|it| it.embedding.len() != self.opts.dim) {
            return Err(CatalogError::Dimension { got: it.embedding.len(), want: self.opts.dim });
        }
        let mut store = self.store();
        let ids = store.add_images(&self.opts.model, items)?;
        {
            let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
            for (it, id) in items.iter().zip(&ids) {
                if let Some((image, row)) = id {
                    meta.products.insert(*row, Arc::new(it.product.clone()));
                    meta.images.insert(*image, ImageEntry { product_row: *row, deleted: false });
                }
            }
        }
        let index = self.index();
        for (it, id) in items.iter().zip(&ids) {
            if let Some((image, _)) = id {
                index.insert(*image, &it.embedding)?;
            }
        }
        Ok(ids.into_iter().map(|o| o.map(|(i, _)| i)).collect())
    }

    /// Creates or updates a product's metadata.
    pub fn upsert_product(&self, p: &Product) -> Result<(), CatalogError> {
        let mut store = self.store();
        store.upsert_product(p)?;
        // Refresh the in-memory copy that searches filter and answer with.
        if let Some((row, prod)) = store.product_row(&p.product_id)? {
            self.meta.write().unwrap_or_else(|p| p.into_inner()).products.insert(row, Arc::new(prod));
        }
        Ok(())
    }

    /// Deletes a product: its images become tombstones, hidden from every search at once.
    pub fn delete_product(&self, product_id: &str) -> Result<usize, CatalogError> {
        let ids = self.store().delete_product(product_id)?;
        self.tombstone(&ids);
        self.maybe_compact()?;
        Ok(ids.len())
    }

    pub fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        self.store().delete_image(id)?;
        self.tombstone(&[id]);
        self.maybe_compact()?;
        Ok(())
    }

    fn tombstone(&self, ids: &[i64]) {
        let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if let Some(e) = meta.images.get_mut(id) {
                if !e.deleted {
                    e.deleted = true;
                    meta.tombstones += 1;
                }
            }
        }
    }

    /// Share of the graph that is tombstones.
    pub fn tombstone_share(&self) -> f64 {
        let t = self.meta.read().unwrap_or_else(|p| p.into_inner()).tombstones;
        let n = self.index().len().max(1);
        t as f64 / n as f64
    }

    fn maybe_compact(&self) -> Result<(), CatalogError> {
        if self.tombstone_share() > self.opts.auto_compact_share {
            tracing::info!("tombstones over {:.0}% of the graph: compacting", self.opts.auto_compact_share * 100.0);
            self.compact()?;
        }
        Ok(())
    }

    /// Rebuilds the graph without tombstones, persists it, then purges the
    /// tombstoned rows from the store. Searches keep running on the old graph
    /// until the new one is swapped in; writers wait.
    pub fn compact(&self) -> Result<usize, CatalogError> {
        let mut store = self.store();
        let live = store.live_vectors_after(&self.opts.model, 0)?;
        let fresh = VectorIndex::new(self.opts.dim, self.opts.params, live.len());
        fresh.insert_many(&live)?;
        let generation = store.generation()?;
        fresh.dump(&vectors_dir(&self.dir, &self.opts.model), generation)?;
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        let purged = store.purge_deleted()?;
        let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
        meta.images.retain(|_, e| !e.deleted);
        meta.tombstones = 0;
        Ok(purged)
    }

    /// Writes the vector index dump, tagged with the store generation.
    pub fn persist(&self) -> Result<(), CatalogError> {
        let store = self.store();
        let generation = store.generation()?;
        self.index().dump(&vectors_dir(&self.dir, &self.opts.model), generation)?;
        Ok(())
    }

    /// The `k` nearest live images passing `filter`, best first, with their product.
    pub fn search_images(&self, q: &[f32], k: usize, ef: Option<usize>, filter: &Filter) -> Vec<(i64, f32, Arc<Product>)> {
        let index = self.index();
        let meta = self.meta.read().unwrap_or_else(|p| p.into_inner());
        let keep = |id: i64| -> bool {
            match meta.images.get(&id) {
                Some(e) if !e.deleted => filter.is_empty() || meta.products.get(&e.product_row).is_some_and(|p| filter.matches(p)),
                _ => false,
            }
        };
        let ef = ef.unwrap_or(self.opts.params.ef_search);
        index
            .search(q, k, ef, Some(&keep))
            .into_iter()
            .filter_map(|(id, sim)| {
                let e = meta.images.get(&id)?;
                Some((id, sim, meta.products.get(&e.product_row)?.clone()))
            })
            .collect()
    }

    pub fn product(&self, product_id: &str) -> Result<Option<Product>, CatalogError> {
        self.store().product(product_id)
    }
    pub fn images_of(&self, product_id: &str) -> Result<Vec<ImageRecord>, CatalogError> {
        self.store().images_of(product_id)
    }
    pub fn image(&self, id: i64) -> Result<Option<ImageRecord>, CatalogError> {
        self.store().image(id)
    }

    pub fn stats(&self) -> Result<CatalogStats, CatalogError> {
        let store = self.store();
        Ok(CatalogStats {
            model: self.opts.model.clone(),
            dim: self.opts.dim,
            counts: store.counts()?,
            graph_points: self.index().len(),
            params: self.opts.params,
            generation: store.generation()?,
            disk_bytes: dir_size(&self.dir),
        })
    }
}

pub fn vectors_dir(dir: &Path, model: &str) -> PathBuf {
    dir.join("vectors").join(model)
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
