use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::projection::{FitOptions, Projection, ProjectionInfo};
use super::store::{ImageRecord, JobRow, JobStatus, NewImage, Store, StoreCounts};
use super::vectors::{IndexParams, VectorIndex};
use super::{CatalogError, Filter, Product};
use crate::embed::local::LocalFeatures;

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
    /// The learned projection the graph is built in, if any.
    pub projection: Option<ProjectionInfo>,
}

/// What a catalog keeps in memory per image (both backends).
pub(crate) struct ImageEntry {
    pub(crate) product_row: i64,
    pub(crate) deleted: bool,
    /// Copy-detection features (none for images indexed before they existed).
    pub(crate) copy: Option<Arc<LocalFeatures>>,
}

#[derive(Default)]
struct Meta {
    products: HashMap<i64, Arc<Product>>,
    images: HashMap<i64, ImageEntry>,
    tombstones: usize,
}

/// Images indexed before copy detection existed (a store migrated from
/// schema 3) have no copy features, so a listing reusing their photo would
/// never be found: computes them from the stored thumbnails (256 px; the
/// features are taken at 200 px) and stores them, once. Images without a
/// readable thumbnail are left as they are.
fn backfill_copy_features(store: &mut Store, meta: &mut Meta) -> Result<(), CatalogError> {
    let mut missing: Vec<i64> = meta.images.iter().filter(|(_, e)| !e.deleted && e.copy.is_none()).map(|(id, _)| *id).collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    tracing::info!("computing copy features for {} images indexed without them, from their thumbnails", missing.len());
    let mut resizer = fast_image_resize::Resizer::new();
    let (mut done, mut skipped) = (0usize, 0usize);
    for chunk in missing.chunks(1000) {
        let mut features = Vec::with_capacity(chunk.len());
        for id in chunk {
            let rgb = store.thumbnail(*id)?.and_then(|jpeg| image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).ok());
            let Some(rgb) = rgb.map(|i| i.to_rgb8()) else {
                skipped += 1;
                continue;
            };
            let data = super::copy_features(&rgb, &mut resizer);
            if let Some(e) = meta.images.get_mut(id) {
                e.copy = LocalFeatures::from_bytes(&data).map(Arc::new);
            }
            features.push((*id, data));
        }
        store.put_copy_features(&features)?;
        done += features.len();
    }
    tracing::info!("copy features computed for {done} images ({skipped} without a readable thumbnail)");
    Ok(())
}

/// A durable, searchable catalog in one index folder (the embedded backend).
pub struct FolderCatalog {
    dir: PathBuf,
    opts: CatalogOptions,
    /// The store; its lock also serialises writers (add, delete, compact, dump).
    store: Mutex<Store>,
    /// A read-only connection to the same store, for the reads lookups and the
    /// API make (thumbnails, products, images, counts): they never wait for a
    /// writer, such as a compaction holding the store lock while it rebuilds the graph.
    reader: Mutex<Store>,
    index: RwLock<Arc<VectorIndex>>,
    meta: RwLock<Meta>,
    /// Applied to stored vectors and queries before they meet the graph.
    projection: RwLock<Option<Arc<Projection>>>,
    /// Deletes and purges so far (counted under the store lock): a graph
    /// built from a snapshot of the live vectors can only be caught up by
    /// adding newer ids when none happened since.
    removals: AtomicU64,
}

/// The live vectors as of one moment, for a graph built without the store lock.
struct Snapshot {
    live: Vec<(i64, Vec<f32>)>,
    /// The highest image id then: ids added later are higher.
    upto: i64,
    removals: u64,
}

impl FolderCatalog {
    /// Opens or creates the catalog in `dir`, loading the vector dump if it
    /// checks out and rebuilding it from the store otherwise.
    pub fn open(dir: &Path, opts: CatalogOptions) -> Result<(FolderCatalog, OpenReport), CatalogError> {
        let mut store = Store::open(dir)?;
        let mut opts = opts;
        match store.meta("model")? {
            Some(m) if m != opts.model => {
                return Err(CatalogError::ModelMismatch { path: dir.into(), found: m, wanted: opts.model });
            }
            Some(_) => {
                match (store.meta("model_fingerprint")?, &opts.fingerprint) {
                    (Some(found), Some(want)) if &found != want => {
                        return Err(CatalogError::ModelChanged { path: dir.into(), model: opts.model.clone(), found, want: want.clone() });
                    }
                    (None, Some(want)) => {
                        tracing::warn!(
                            "index {} predates model fingerprints: recorded the installed '{}' ({want}); if the model changed since the index was built, re-index",
                            dir.display(),
                            opts.model
                        );
                        store.set_meta("model_fingerprint", want)?;
                    }
                    _ => {}
                }
                if let Some(p) = store.meta("index_params")?.and_then(|p| serde_json::from_str::<IndexParams>(&p).ok()) {
                    opts.params = IndexParams { ef_search: opts.params.ef_search, ..p };
                }
            }
            None => {
                store.set_meta("model", &opts.model)?;
                store.set_meta("dim", &opts.dim.to_string())?;
                if let Some(f) = &opts.fingerprint {
                    store.set_meta("model_fingerprint", f)?;
                }
                store.set_meta("index_params", &serde_json::to_string(&opts.params).unwrap_or_default())?;
            }
        }
        let mut meta = Meta::default();
        for (row, p) in store.products()? {
            meta.products.insert(row, Arc::new(p));
        }
        for (id, product_row, deleted) in store.image_owners()? {
            meta.tombstones += usize::from(deleted);
            meta.images.insert(id, ImageEntry { product_row, deleted, copy: None });
        }
        for (id, data) in store.copy_features()? {
            if let Some(e) = meta.images.get_mut(&id) {
                e.copy = LocalFeatures::from_bytes(&data).map(Arc::new);
            }
        }
        backfill_copy_features(&mut store, &mut meta)?;
        let projection = match Projection::load(dir)? {
            Some(p) if p.info.model != opts.model || p.info.in_dim != opts.dim => {
                return Err(CatalogError::Projection(format!(
                    "{} was fitted for model '{}' ({}-d), not this index's '{}' ({}-d); remove it or refit with `knockoff tune`",
                    dir.join(super::projection::PROJECTION_FILE).display(),
                    p.info.model,
                    p.info.in_dim,
                    opts.model,
                    opts.dim
                )));
            }
            p => p.map(Arc::new),
        };
        let (index, report) = load_graph(&store, dir, &opts, projection.as_deref())?;
        let cat = FolderCatalog {
            dir: dir.into(),
            opts,
            store: Mutex::new(store),
            reader: Mutex::new(Store::open_read_only(dir)?),
            index: RwLock::new(Arc::new(index)),
            meta: RwLock::new(meta),
            projection: RwLock::new(projection),
            removals: AtomicU64::new(0),
        };
        if matches!(report, OpenReport::Rebuilt { points, .. } if points > 0)
            || matches!(report, OpenReport::Loaded { caught_up, .. } if caught_up > 0)
        {
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
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Store> {
        self.reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The graph and the projection it is built in, read together.
    fn space(&self) -> (Arc<VectorIndex>, Option<Arc<Projection>>) {
        let index = self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let projection = self.projection.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (index.clone(), projection.clone())
    }

    /// Swaps in a graph and the projection it is built in, both at once (in
    /// `space`'s order: a search never meets the new graph with the old
    /// projection). Returns the old ones: free them outside the store lock
    /// (freeing a graph takes a while).
    fn swap_space(&self, fresh: VectorIndex, projection: Option<Arc<Projection>>) -> (Arc<VectorIndex>, Option<Arc<Projection>>) {
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut current = self.projection.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        (std::mem::replace(&mut *index, Arc::new(fresh)), std::mem::replace(&mut *current, projection))
    }

    fn index(&self) -> Arc<VectorIndex> {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The learned projection the graph is built in, if any.
    pub fn projection(&self) -> Option<Arc<Projection>> {
        self.projection.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn vdir(&self) -> PathBuf {
        graph_dir(&self.dir, &self.opts.model, self.projection().as_deref())
    }

    /// Fits a projection on the live photos (labelled by product), saves it,
    /// and rebuilds the graph in the projected space. Searches keep running
    /// on the old graph until the new one is swapped in; writers go on until
    /// the swap too (see [`FolderCatalog::rebuild_with`]).
    pub fn fit_projection(&self, opts: FitOptions) -> Result<ProjectionInfo, CatalogError> {
        let snap = self.snapshot()?;
        let labels = self.labels_of(&snap.live);
        let refs: Vec<&[f32]> = snap.live.iter().map(|(_, v)| v.as_slice()).collect();
        let p = Projection::fit(&refs, &labels, &self.opts.model, opts)?;
        let info = p.info.clone();
        self.rebuild_with(Some(p), snap)?;
        Ok(info)
    }

    fn snapshot(&self) -> Result<Snapshot, CatalogError> {
        let store = self.store();
        Ok(Snapshot {
            live: store.live_vectors_after(&self.opts.model, 0)?,
            upto: store.max_image_id()?,
            removals: self.removals.load(Ordering::SeqCst),
        })
    }

    /// The live model vectors (not projected), each with its product's row id,
    /// in source order (file name or URL; see [`Store::live_vectors_by_source`]).
    pub fn labelled_images(&self) -> Result<Vec<(i64, i64, Vec<f32>)>, CatalogError> {
        let live = self.store().live_vectors_by_source(&self.opts.model)?;
        let labels = self.labels_of(&live);
        Ok(labels.into_iter().zip(live).map(|(l, (id, v))| (id, l, v)).collect())
    }

    /// Each live product's row id (the key of `labelled_vectors`) and label.
    pub fn product_labels(&self) -> HashMap<i64, super::Label> {
        let meta = self.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        meta.products.iter().map(|(row, p)| (*row, p.label)).collect()
    }

    fn labels_of(&self, live: &[(i64, Vec<f32>)]) -> Vec<i64> {
        let meta = self.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.iter().map(|(id, _)| meta.images.get(id).map_or(-1 - *id, |e| e.product_row)).collect()
    }

    /// Removes the projection (the graph goes back to the model's own vectors).
    pub fn clear_projection(&self) -> Result<bool, CatalogError> {
        if self.projection().is_none() {
            return Ok(false);
        }
        self.rebuild_with(None, self.snapshot()?)?;
        Ok(true)
    }

    /// Builds the graph of `snap`'s vectors in `projection`'s space without the
    /// store lock (searches and writers go on), then, holding it, catches up on
    /// images added since (a delete or purge since: builds again from the
    /// store instead), dumps it, and swaps it and the projection in.
    fn rebuild_with(&self, projection: Option<Projection>, snap: Snapshot) -> Result<(), CatalogError> {
        let projection = projection.map(Arc::new);
        let fresh = build_graph(projection.as_deref(), &self.opts, snap.live)?;
        // What was added meanwhile, read without waiting for writers, until little
        // is left (writers may keep adding while these are inserted); the rest below.
        let mut upto = snap.upto;
        for _ in 0..8 {
            let newer = self.reader().live_vectors_after(&self.opts.model, upto)?;
            upto = newer.iter().map(|(id, _)| *id).max().unwrap_or(upto);
            let few = newer.len() <= 32;
            fresh.insert_many(&project_all(projection.as_deref(), newer))?;
            if few {
                break;
            }
        }
        let mut store = self.store();
        let fresh = if self.removals.load(Ordering::SeqCst) == snap.removals {
            // Only additions since the snapshot, all with higher ids; one at a
            // time, which takes no new flat copy of the graph for a few.
            for (id, v) in project_all(projection.as_deref(), store.live_vectors_after(&self.opts.model, upto)?) {
                fresh.insert(id, &v)?;
            }
            fresh
        } else {
            build_graph(projection.as_deref(), &self.opts, store.live_vectors_after(&self.opts.model, 0)?)?
        };
        fresh.dump(&graph_dir(&self.dir, &self.opts.model, projection.as_deref()), store.generation()?)?;
        // The projection file is the switch: written (or removed) only once
        // the matching dump is on disk, so a crash leaves either state whole.
        match &projection {
            Some(p) => p.save(&self.dir)?,
            None => {
                Projection::remove(&self.dir)?;
            }
        }
        let keep = graph_dir(&self.dir, &self.opts.model, projection.as_deref());
        let replaced = self.swap_space(fresh, projection);
        // The new graph holds live images only: purge the tombstones, so that
        // the dump's point count matches the store (see `dump_matches_store`).
        self.purge_tombstones(&mut store)?;
        // Dumps of other projections of this model are dead weight now.
        let prefix = format!("{}@", self.opts.model);
        if let Ok(entries) = std::fs::read_dir(self.dir.join("vectors")) {
            for e in entries.flatten() {
                let stale = e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) && e.path() != keep;
                if stale {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        // The old graph is freed outside the locks, so no search or writer waits for that.
        drop(store);
        drop(replaced);
        Ok(())
    }

    /// Live (`product_id`, source) pairs already indexed.
    pub fn live_sources(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.store().live_sources()
    }

    pub fn image_counts(&self) -> Result<HashMap<String, usize>, CatalogError> {
        self.store().image_counts()
    }

    pub fn thumbnail(&self, id: i64) -> Result<Option<Vec<u8>>, CatalogError> {
        self.reader().thumbnail(id)
    }

    /// Records a new indexing job (queued) with its manifest.
    pub fn create_job(&self, id: &str, format: &str, source: &str) -> Result<(), CatalogError> {
        self.store().create_job(id, format, source)
    }

    /// Records a job's status, counts and errors (JSON text).
    pub fn update_job(&self, id: &str, status: JobStatus, counts: &str, errors: &str, message: Option<&str>) -> Result<(), CatalogError> {
        self.store().update_job(id, status, counts, errors, message)
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRow>, CatalogError> {
        self.store().job(id)
    }

    /// At start: jobs that were running when the process stopped count one
    /// more crash and are queued again; returns how many jobs are unfinished.
    pub fn recover_jobs(&self) -> Result<usize, CatalogError> {
        let store = self.store();
        store.count_job_crashes()?;
        Ok(store.unfinished_jobs()?.len())
    }

    /// Takes the oldest queued job (this process is the folder's only runner).
    pub fn claim_job(&self) -> Result<Option<String>, CatalogError> {
        self.store().claim_job()
    }

    /// Records the item a job is about to work on (`None`: between items).
    pub fn set_job_in_flight(&self, id: &str, item: Option<&str>) -> Result<(), CatalogError> {
        self.store().set_job_in_flight(id, item)
    }

    /// Moves the job's in-flight item (the one the process died on) to its quarantine list.
    pub fn quarantine_job_in_flight(&self, id: &str) -> Result<(), CatalogError> {
        self.store().quarantine_in_flight(id)
    }

    /// Live (`product_id`, sha256) pairs already indexed.
    pub fn live_hashes(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.store().live_hashes()
    }

    /// Commits images in one transaction, then makes them searchable.
    /// Returns each item's new image id, or `None` if it was already indexed.
    pub fn add_images(&self, items: &[NewImage]) -> Result<Vec<Option<i64>>, CatalogError> {
        super::check_new_images(items, self.opts.dim)?;
        let mut store = self.store();
        let ids = store.add_images(&self.opts.model, items)?;
        {
            let mut meta = self.meta.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (it, id) in items.iter().zip(&ids) {
                if let Some((image, row)) = id {
                    meta.products.insert(*row, Arc::new(it.product.clone()));
                    let copy = it.copy_features.as_deref().and_then(LocalFeatures::from_bytes).map(Arc::new);
                    meta.images.insert(*image, ImageEntry { product_row: *row, deleted: false, copy });
                }
            }
        }
        let index = self.index();
        let projection = self.projection();
        for (it, id) in items.iter().zip(&ids) {
            if let Some((image, _)) = id {
                match &projection {
                    Some(p) => index.insert(*image, &p.apply(&it.embedding))?,
                    None => index.insert(*image, &it.embedding)?,
                }
            }
        }
        Ok(ids.into_iter().map(|o| o.map(|(i, _)| i)).collect())
    }

    /// Creates or updates a product's metadata.
    pub fn upsert_product(&self, p: &Product) -> Result<(), CatalogError> {
        super::check_product(p)?;
        let mut store = self.store();
        store.upsert_product(p)?;
        // Refresh the in-memory copy that searches filter and answer with.
        if let Some((row, prod)) = store.product_row(&p.product_id)? {
            self.meta.write().unwrap_or_else(std::sync::PoisonError::into_inner).products.insert(row, Arc::new(prod));
        }
        Ok(())
    }

    /// Deletes a product: its images become tombstones, hidden from every search at once.
    pub fn delete_product(&self, product_id: &str) -> Result<usize, CatalogError> {
        let ids = {
            let mut store = self.store();
            self.removals.fetch_add(1, Ordering::SeqCst);
            store.delete_product(product_id)?
        };
        self.tombstone(&ids);
        self.maybe_compact()?;
        Ok(ids.len())
    }

    pub fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        {
            let mut store = self.store();
            self.removals.fetch_add(1, Ordering::SeqCst);
            store.delete_image(id)?;
        }
        self.tombstone(&[id]);
        self.maybe_compact()?;
        Ok(())
    }

    fn tombstone(&self, ids: &[i64]) {
        let mut meta = self.meta.write().unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let t = self.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner).tombstones;
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
        let projection = self.projection();
        let fresh = build_graph(projection.as_deref(), &self.opts, store.live_vectors_after(&self.opts.model, 0)?)?;
        let generation = store.generation()?;
        fresh.dump(&self.vdir(), generation)?;
        let replaced = self.swap_space(fresh, projection);
        let purged = self.purge_tombstones(&mut store)?;
        drop(store);
        drop(replaced);
        Ok(purged)
    }

    /// Removes tombstoned rows from the store and the in-memory table, once
    /// the graph no longer holds them; returns how many images were purged.
    fn purge_tombstones(&self, store: &mut Store) -> Result<usize, CatalogError> {
        self.removals.fetch_add(1, Ordering::SeqCst);
        let purged = store.purge_deleted()?;
        let mut meta = self.meta.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        meta.images.retain(|_, e| !e.deleted);
        meta.tombstones = 0;
        Ok(purged)
    }

    /// Writes the vector index dump, tagged with the store generation.
    pub fn persist(&self) -> Result<(), CatalogError> {
        let store = self.store();
        let generation = store.generation()?;
        self.index().dump(&self.vdir(), generation)?;
        Ok(())
    }

    /// The `k` nearest live images passing `filter`, best first, with their
    /// product. `q` is a model vector; the projection, if any, is applied here.
    pub fn search_images(
        &self,
        q: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: &Filter,
    ) -> Result<Vec<(i64, f32, Arc<Product>)>, CatalogError> {
        let (index, projection) = self.space();
        let projected;
        let q = match projection {
            Some(p) => {
                projected = p.apply(q);
                &projected[..]
            }
            None => q,
        };
        let meta = self.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let keep = |id: i64| -> bool {
            match meta.images.get(&id) {
                Some(e) if !e.deleted => filter.is_empty() || meta.products.get(&e.product_row).is_some_and(|p| filter.matches(p)),
                _ => false,
            }
        };
        let ef = ef.unwrap_or(self.opts.params.ef_search);
        Ok(index
            .search(q, k, ef, Some(&keep))
            .into_iter()
            .filter_map(|(id, sim)| {
                let e = meta.images.get(&id)?;
                Some((id, sim, meta.products.get(&e.product_row)?.clone()))
            })
            .collect())
    }

    /// A live image's copy-detection features and product, if it has features.
    pub fn copy_features(&self, id: i64) -> Option<(Arc<LocalFeatures>, Arc<Product>)> {
        let meta = self.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = meta.images.get(&id).filter(|e| !e.deleted)?;
        Some((e.copy.clone()?, meta.products.get(&e.product_row)?.clone()))
    }

    pub fn product(&self, product_id: &str) -> Result<Option<Product>, CatalogError> {
        self.reader().product(product_id)
    }
    pub fn images_of(&self, product_id: &str) -> Result<Vec<ImageRecord>, CatalogError> {
        self.reader().images_of(product_id)
    }
    pub fn image(&self, id: i64) -> Result<Option<ImageRecord>, CatalogError> {
        self.reader().image(id)
    }

    /// Live images, counted in memory (no store query, no disk walk): what
    /// the service's refit check polls.
    pub fn live_image_count(&self) -> usize {
        let meta = self.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        meta.images.values().filter(|e| !e.deleted).count()
    }

    pub fn stats(&self) -> Result<CatalogStats, CatalogError> {
        let store = self.reader();
        Ok(CatalogStats {
            model: self.opts.model.clone(),
            dim: self.opts.dim,
            counts: store.counts()?,
            graph_points: self.index().len(),
            params: self.opts.params,
            generation: store.generation()?,
            disk_bytes: dir_size(&self.dir),
            projection: self.projection().map(|p| p.info.clone()),
        })
    }
}

/// Loads the graph dump if it checks out (catching up on vectors committed
/// after it), else rebuilds the graph from the store.
fn load_graph(
    store: &Store,
    dir: &Path,
    opts: &CatalogOptions,
    projection: Option<&Projection>,
) -> Result<(VectorIndex, OpenReport), CatalogError> {
    let project = |v: Vec<(i64, Vec<f32>)>| project_all(projection, v);
    let graph_dim = projection.as_ref().map_or(opts.dim, |p| p.info.out_dim);
    let vdir = graph_dir(dir, &opts.model, projection);
    let generation = store.generation()?;
    let loaded = VectorIndex::load(&vdir, graph_dim, opts.params).and_then(|found| match found {
        Some((idx, marker)) => dump_matches_store(store, generation, &opts.model, &marker).map(|()| Some((idx, marker))),
        None => Ok(None),
    });
    let (index, report) = match loaded {
        Ok(Some((idx, marker))) => {
            let newer = project(store.live_vectors_after(&opts.model, marker.max_image_id)?);
            idx.insert_many(&newer)?;
            let caught_up = newer.len();
            if caught_up > 0 || marker.generation != generation {
                tracing::info!(
                    "index dump is {} generations behind the store: added {caught_up} vectors",
                    generation.saturating_sub(marker.generation)
                );
            }
            (idx, OpenReport::Loaded { points: marker.points + caught_up, caught_up })
        }
        other => {
            let reason = match other {
                Err(e) => format!("index dump unusable ({e})"),
                Ok(_) => "no index dump yet".to_string(),
            };
            let idx = build_graph(projection, opts, store.live_vectors_after(&opts.model, 0)?)?;
            let points = idx.len();
            if points > 0 {
                tracing::warn!("{reason}: rebuilt the vector index from the store ({points} vectors)");
            }
            (idx, OpenReport::Rebuilt { points, reason })
        }
    };
    Ok((index, report))
}

/// A dump is used only if it provably describes this store: not from a
/// later generation, no image id beyond the store's, and exactly as many
/// points as the store has vectors up to its highest id (a restored older
/// store, or a store file swapped for another, fails one of these).
fn dump_matches_store(store: &Store, generation: u64, model: &str, marker: &super::vectors::DumpMarker) -> Result<(), CatalogError> {
    let max_id = store.max_image_id()?;
    let vectors = store.count_vectors_upto(model, marker.max_image_id)?;
    let why = if marker.generation > generation {
        format!("it is from store generation {}, the store is at {generation} (a restored older store?)", marker.generation)
    } else if marker.max_image_id > max_id {
        format!("it holds image ids up to {}, the store only up to {max_id}", marker.max_image_id)
    } else if marker.points != vectors {
        format!("it holds {} points, the store {vectors} vectors up to image {}", marker.points, marker.max_image_id)
    } else {
        return Ok(());
    };
    Err(CatalogError::Dump(format!("the dump does not match the store: {why}")))
}

pub fn vectors_dir(dir: &Path, model: &str) -> PathBuf {
    dir.join("vectors").join(model)
}

/// Where the graph dump lives: per model, and per projection when there is
/// one, so a dump is never loaded into a space it was not built in.
fn graph_dir(dir: &Path, model: &str, projection: Option<&Projection>) -> PathBuf {
    match projection {
        Some(p) => dir.join("vectors").join(format!("{model}@{}", p.info.id)),
        None => vectors_dir(dir, model),
    }
}

/// A graph of `live` in `projection`'s space (the model's own without one).
fn build_graph(projection: Option<&Projection>, opts: &CatalogOptions, live: Vec<(i64, Vec<f32>)>) -> Result<VectorIndex, CatalogError> {
    let vectors = project_all(projection, live);
    let graph = VectorIndex::new(projection.map_or(opts.dim, |p| p.info.out_dim), opts.params, vectors.len());
    graph.insert_many(&vectors)?;
    Ok(graph)
}

fn project_all(projection: Option<&Projection>, vectors: Vec<(i64, Vec<f32>)>) -> Vec<(i64, Vec<f32>)> {
    match projection {
        Some(p) => vectors.into_iter().map(|(id, v)| (id, p.apply(&v))).collect(),
        None => vectors,
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
