//! The shared backend: PostgreSQL ([`pg`]) holds what the embedded store
//! holds, Milvus ([`milvus`]) the vectors, and any number of stateless
//! replicas serve one catalog.
//!
//! Each replica keeps the same small in-memory table of image → product
//! metadata as the embedded catalog, caught up from PostgreSQL's change
//! numbers every [`SYNC_EVERY`]; searches ask Milvus (filtering inside the
//! search) and keep only images that table knows live, so a vector whose
//! store transaction failed, or an image deleted a moment ago, is never
//! answered. Writes go to PostgreSQL first, then to Milvus, then mark the
//! image's vector as placed; [`SharedCatalog::reconcile`] (at start and
//! every [`RECONCILE_EVERY`]) places what is missing and removes what is
//! deleted. The projection and the calibration are shared files in
//! PostgreSQL, mirrored into a private local folder that the file-based code
//! reads; a new projection gets a new Milvus collection, filled before the
//! switch.

pub mod milvus;
pub mod pg;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use self::milvus::{Milvus, MilvusRow};
use self::pg::PgStore;
use super::folder::ImageEntry;
use super::projection::{FitOptions, Projection, ProjectionInfo, PROJECTION_FILE};
use super::store::{ImageRecord, JobRow, JobStatus, NewImage};
use super::{CatalogError, CatalogOptions, CatalogStats, Filter, IndexParams, OpenReport, Product};
use crate::embed::local::LocalFeatures;

/// How often a replica applies other replicas' changes (the bound is 1 s).
pub const SYNC_EVERY: Duration = Duration::from_millis(200);
/// How often a replica reconciles PostgreSQL and Milvus.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// Without a successful sync for this long, a replica stops answering
/// lookups (503) rather than serve a catalog it can no longer vouch for.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// A tombstone is purged from PostgreSQL this long after its deletion.
const PURGE_AFTER: Duration = Duration::from_secs(600);
/// Files every replica mirrors from PostgreSQL into its local folder.
const SHARED_FILES: [&str; 2] = [PROJECTION_FILE, crate::search::calibration::CALIBRATION_FILE];

/// The two engines' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSpec {
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`
    pub store: String,
    /// `milvus://USER:PASSWORD@HOST:PORT`
    pub vectors: String,
}

#[derive(Default)]
struct Meta {
    products: HashMap<i64, Arc<Product>>,
    images: HashMap<i64, ImageEntry>,
    seq: i64,
}

struct Inner {
    pg: PgStore,
    milvus: Milvus,
    opts: CatalogOptions,
    /// This replica's private folder: the mirrored shared files.
    local: tempfile::TempDir,
    meta: RwLock<Meta>,
    /// The projection in force and the collection its vectors are in.
    space: RwLock<(Option<Arc<Projection>>, String)>,
    file_versions: RwLock<HashMap<String, i64>>,
    /// Bumped whenever a shared file changed (the service reloads its verdicts).
    state_version: AtomicU64,
    uid: String,
    /// When the last sync with PostgreSQL succeeded, and the last failure.
    synced: std::sync::Mutex<(Instant, Option<CatalogError>)>,
}

/// A catalog on PostgreSQL + Milvus, shared by every replica that opens it.
pub struct SharedCatalog {
    inner: Arc<Inner>,
}

fn lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
fn lock_mut<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Milvus collection name for this catalog and projection (letters, digits, underscores).
fn collection_name(uid: &str, projection: Option<&Projection>) -> String {
    let space = projection.map_or_else(|| "raw".to_string(), |p| p.info.id.clone());
    let clean: String = format!("knockoff_{uid}_{space}").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    clean
}

impl SharedCatalog {
    /// Connects to both engines, creates or checks the catalog (model,
    /// fingerprint), loads the metadata and reconciles the vectors.
    pub fn connect(spec: &SharedSpec, opts: CatalogOptions) -> Result<(SharedCatalog, OpenReport), CatalogError> {
        let pg = PgStore::connect(&spec.store)?;
        let milvus = Milvus::connect(&spec.vectors)?;
        let mut opts = opts;
        let model = pg.meta_or_set("model", &opts.model)?;
        if model != opts.model {
            return Err(CatalogError::ModelMismatch { path: pg.address().into(), found: model, wanted: opts.model });
        }
        pg.meta_or_set("dim", &opts.dim.to_string())?;
        if let Some(want) = &opts.fingerprint {
            let found = pg.meta_or_set("model_fingerprint", want)?;
            if &found != want {
                return Err(CatalogError::ModelChanged { path: pg.address().into(), model: opts.model.clone(), found, want: want.clone() });
            }
        }
        let params = pg.meta_or_set("index_params", &serde_json::to_string(&opts.params).unwrap_or_default())?;
        if let Ok(p) = serde_json::from_str::<IndexParams>(&params) {
            opts.params = IndexParams { ef_search: opts.params.ef_search, ..p };
        }
        let uid = pg
            .meta_or_set("catalog_uid", &crate::util::sha256_hex(format!("{:?}{}", Instant::now(), std::process::id()).as_bytes())[..12])?;
        let local = tempfile::Builder::new()
            .prefix("knockoff-replica-")
            .tempdir()
            .map_err(|error| CatalogError::Io { path: std::env::temp_dir(), error })?;
        let inner = Inner {
            pg,
            milvus,
            opts,
            local,
            meta: RwLock::default(),
            space: RwLock::new((None, collection_name(&uid, None))),
            file_versions: RwLock::default(),
            state_version: AtomicU64::new(0),
            uid,
            synced: std::sync::Mutex::new((Instant::now(), None)),
        };
        inner.sync_files()?;
        inner.sync_changes()?;
        let coll = inner.collection();
        inner.milvus.ensure_collection(&coll, inner.graph_dim())?;
        let placed = inner.reconcile()?;
        let points = inner.live_count();
        let inner = Arc::new(inner);
        spawn_sync(Arc::downgrade(&inner));
        Ok((SharedCatalog { inner }, OpenReport::Loaded { points, caught_up: placed }))
    }

    pub fn dir(&self) -> &Path {
        self.inner.local.path()
    }
    pub fn model(&self) -> &str {
        &self.inner.opts.model
    }
    pub fn dim(&self) -> usize {
        self.inner.opts.dim
    }
    pub fn params(&self) -> IndexParams {
        self.inner.opts.params
    }
    /// Where the catalog lives, for messages (no password).
    pub fn location(&self) -> String {
        format!("postgres {} + milvus {}", self.inner.pg.address(), self.inner.milvus.address())
    }
    pub fn projection(&self) -> Option<Arc<Projection>> {
        lock(&self.inner.space).0.clone()
    }
    pub fn state_version(&self) -> u64 {
        self.inner.state_version.load(Ordering::SeqCst)
    }
    /// The Milvus collection searched now (one per catalog and projection).
    pub fn collection(&self) -> String {
        self.inner.collection()
    }

    /// Places vectors missing from Milvus and removes deleted ones; returns how many were placed.
    pub fn reconcile(&self) -> Result<usize, CatalogError> {
        self.inner.reconcile()
    }

    /// Whether each engine answers: (engine, error if down).
    pub fn health(&self) -> Vec<(&'static str, Option<String>)> {
        let pg = self.inner.pg.ping().err().map(|e| e.to_string());
        let mv = self.inner.milvus.collections().err().map(|e| e.to_string());
        vec![("postgresql", pg), ("milvus", mv)]
    }

    /// Shares a file of the local folder (the calibration) with every replica.
    pub fn publish_file(&self, name: &str) -> Result<(), CatalogError> {
        let path = self.dir().join(name);
        let content = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(CatalogError::Io { path, error }),
        };
        self.inner.pg.put_file(name, content.as_deref())?;
        self.inner.sync_files()
    }

    /// Runs `f` only if no other replica runs work named `name` now (a
    /// PostgreSQL session lock); `None` when another does.
    pub fn lead<T>(&self, name: &str, f: impl FnOnce() -> T) -> Result<Option<T>, CatalogError> {
        self.inner.pg.with_session_lock(lock_key(&self.inner.uid, name), f)
    }

    pub fn fit_projection(&self, fit: FitOptions) -> Result<ProjectionInfo, CatalogError> {
        let inner = &self.inner;
        let live = inner.pg.live_vectors(&inner.opts.model, None, i64::MAX)?;
        let labels = inner.labels_of(&live);
        let refs: Vec<&[f32]> = live.iter().map(|(_, v)| v.as_slice()).collect();
        let p = Projection::fit(&refs, &labels, &inner.opts.model, fit)?;
        let info = p.info.clone();
        inner.switch_space(Some(&p), &live)?;
        Ok(info)
    }

    pub fn clear_projection(&self) -> Result<bool, CatalogError> {
        if self.projection().is_none() {
            return Ok(false);
        }
        let live = self.inner.pg.live_vectors(&self.inner.opts.model, None, i64::MAX)?;
        self.inner.switch_space(None, &live)?;
        Ok(true)
    }

    pub fn labelled_images(&self) -> Result<Vec<(i64, i64, Vec<f32>)>, CatalogError> {
        let live = self.inner.pg.live_vectors(&self.inner.opts.model, None, i64::MAX)?;
        let labels = self.inner.labels_of(&live);
        Ok(labels.into_iter().zip(live).map(|(l, (id, v))| (id, l, v)).collect())
    }

    pub fn product_labels(&self) -> HashMap<i64, super::Label> {
        lock(&self.inner.meta).products.iter().map(|(row, p)| (*row, p.label)).collect()
    }

    pub fn live_sources(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.inner.pg.live_sources()
    }
    pub fn live_hashes(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.inner.pg.live_hashes()
    }
    pub fn image_counts(&self) -> Result<HashMap<String, usize>, CatalogError> {
        self.inner.pg.image_counts()
    }
    pub fn thumbnail(&self, id: i64) -> Result<Option<Vec<u8>>, CatalogError> {
        self.inner.pg.thumbnail(id)
    }
    pub fn product(&self, product_id: &str) -> Result<Option<Product>, CatalogError> {
        self.inner.pg.product(product_id)
    }
    pub fn images_of(&self, product_id: &str) -> Result<Vec<ImageRecord>, CatalogError> {
        self.inner.pg.images_of(product_id)
    }
    pub fn image(&self, id: i64) -> Result<Option<ImageRecord>, CatalogError> {
        self.inner.pg.image(id)
    }
    pub fn pg(&self) -> &PgStore {
        &self.inner.pg
    }

    // Jobs: claimed through PostgreSQL, so each runs on one replica.
    pub fn create_job(&self, id: &str, format: &str, source: &str) -> Result<(), CatalogError> {
        self.inner.pg.create_job(id, format, source)
    }
    pub fn update_job(&self, id: &str, status: JobStatus, counts: &str, errors: &str, message: Option<&str>) -> Result<(), CatalogError> {
        self.inner.pg.update_job(id, status, counts, errors, message, job_lease())
    }
    pub fn job(&self, id: &str) -> Result<Option<JobRow>, CatalogError> {
        Ok(self.inner.pg.job(id)?.map(|(mut row, owner)| {
            row.runner = owner;
            row
        }))
    }
    pub fn claim_job(&self, owner: &str) -> Result<Option<String>, CatalogError> {
        self.inner.pg.claim_job(owner, job_lease())
    }
    pub fn renew_job(&self, id: &str, owner: &str) -> Result<(), CatalogError> {
        self.inner.pg.renew_job(id, owner, job_lease())
    }
    pub fn set_job_in_flight(&self, id: &str, item: Option<&str>) -> Result<(), CatalogError> {
        self.inner.pg.set_job_in_flight(id, item)
    }
    pub fn quarantine_job_in_flight(&self, id: &str) -> Result<(), CatalogError> {
        self.inner.pg.quarantine_in_flight(id)
    }

    /// Commits images to PostgreSQL, then places their vectors in Milvus.
    pub fn add_images(&self, items: &[NewImage]) -> Result<Vec<Option<i64>>, CatalogError> {
        let inner = &self.inner;
        super::check_new_images(items, inner.opts.dim)?;
        let changed = inner.changed_filter_fields(items.iter().map(|it| &it.product));
        let ids = inner.pg.add_images(&inner.opts.model, items)?;
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

    pub fn upsert_product(&self, p: &Product) -> Result<(), CatalogError> {
        super::check_product(p)?;
        let changed = self.inner.changed_filter_fields(std::iter::once(p));
        self.inner.pg.upsert_product(p)?;
        self.inner.sync_changes()?;
        self.inner.refresh_filter_fields(&changed)
    }

    pub fn delete_product(&self, product_id: &str) -> Result<usize, CatalogError> {
        let ids = self.inner.pg.delete_product(product_id)?;
        self.inner.after_delete(&ids)?;
        Ok(ids.len())
    }

    pub fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        self.inner.pg.delete_image(id)?;
        self.inner.after_delete(&[id])
    }

    /// Milvus compacts by itself: this reconciles and purges old tombstones.
    pub fn compact(&self) -> Result<usize, CatalogError> {
        self.inner.reconcile()?;
        self.inner.sweep_strays()?;
        self.inner.pg.purge_deleted(PURGE_AFTER)
    }

    pub fn tombstone_share(&self) -> f64 {
        0.0
    }

    /// The `k` nearest live images passing `filter`, best first.
    pub fn search_images(
        &self,
        q: &[f32],
        k: usize,
        _ef: Option<usize>,
        filter: &Filter,
    ) -> Result<Vec<(i64, f32, Arc<Product>)>, CatalogError> {
        self.inner.check_fresh()?;
        let (projection, coll) = lock(&self.inner.space).clone();
        let projected;
        let q = match &projection {
            Some(p) => {
                projected = p.apply(q);
                &projected[..]
            }
            None => q,
        };
        // A few more than asked: hits this replica does not know live yet (or any more) are dropped.
        let hits = self.inner.milvus.search(&coll, q, k + 8, filter)?;
        let meta = lock(&self.inner.meta);
        let mut seen = std::collections::HashSet::new();
        Ok(hits
            .into_iter()
            // An image's vector twice (a re-placement not yet cleaned up) counts once.
            .filter(|(id, _)| seen.insert(*id))
            .filter_map(|(id, sim)| {
                let e = meta.images.get(&id).filter(|e| !e.deleted)?;
                let p = meta.products.get(&e.product_row)?;
                filter.matches(p).then(|| (id, sim, p.clone()))
            })
            .take(k)
            .collect())
    }

    pub fn copy_features(&self, id: i64) -> Option<(Arc<LocalFeatures>, Arc<Product>)> {
        let meta = lock(&self.inner.meta);
        let e = meta.images.get(&id).filter(|e| !e.deleted)?;
        Some((e.copy.clone()?, meta.products.get(&e.product_row)?.clone()))
    }

    pub fn live_image_count(&self) -> usize {
        self.inner.live_count()
    }

    /// Live images whose vector Milvus holds in the collection searched now (counted there, not in the store).
    pub fn searchable_count(&self) -> Result<usize, CatalogError> {
        let coll = self.collection();
        let (live, max) = self.inner.pg.live_ids(0, i64::MAX)?;
        let placed: std::collections::HashSet<i64> =
            self.inner.milvus.image_ids(&coll, 0, max)?.into_iter().filter(|id| live.contains(id)).collect();
        Ok(placed.len())
    }

    pub fn stats(&self) -> Result<CatalogStats, CatalogError> {
        let inner = &self.inner;
        let counts = inner.pg.counts()?;
        Ok(CatalogStats {
            model: inner.opts.model.clone(),
            dim: inner.opts.dim,
            graph_points: usize::try_from(counts.images).unwrap_or(0),
            counts,
            params: inner.opts.params,
            generation: u64::try_from(lock(&inner.meta).seq).unwrap_or(0),
            disk_bytes: 0,
            projection: self.projection().map(|p| p.info.clone()),
        })
    }
}

/// The PostgreSQL advisory lock that stands for work `name` on this catalog.
fn lock_key(uid: &str, name: &str) -> i64 {
    i64::from_str_radix(&crate::util::sha256_hex(format!("{uid}:{name}").as_bytes())[..15], 16).unwrap_or(1)
}

/// How long a claimed job stays with its replica without a sign of life
/// (`KNOCKOFF_JOB_LEASE_MS`, default 30 s); then another replica takes it over.
pub fn job_lease() -> Duration {
    std::env::var("KNOCKOFF_JOB_LEASE_MS").ok().and_then(|v| v.parse().ok()).map_or(Duration::from_secs(30), Duration::from_millis)
}

impl Inner {
    /// The Milvus collection searched now (one per catalog and projection).
    fn collection(&self) -> String {
        lock(&self.space).1.clone()
    }

    /// `Err` when this replica has not synced for [`STALE_AFTER`] (the store is down).
    fn check_fresh(&self) -> Result<(), CatalogError> {
        let synced = self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if synced.0.elapsed() <= STALE_AFTER {
            return Ok(());
        }
        Err(match &synced.1 {
            Some(e @ CatalogError::Unavailable { .. }) => clone_error(e),
            other => CatalogError::Unavailable {
                engine: "PostgreSQL",
                setting: "KNOCKOFF_STORE",
                address: self.pg.address().to_string(),
                detail: format!(
                    "no sync for {:.0?} ({})",
                    synced.0.elapsed(),
                    other.as_ref().map_or_else(String::new, ToString::to_string)
                ),
            },
        })
    }

    fn record_sync(&self, result: &Result<(), CatalogError>) {
        let mut synced = self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(()) => *synced = (Instant::now(), None),
            Err(e) => synced.1 = Some(clone_error(e)),
        }
    }

    fn graph_dim(&self) -> usize {
        lock(&self.space).0.as_ref().map_or(self.opts.dim, |p| p.info.out_dim)
    }

    fn live_count(&self) -> usize {
        lock(&self.meta).images.values().filter(|e| !e.deleted).count()
    }

    fn labels_of(&self, live: &[(i64, Vec<f32>)]) -> Vec<i64> {
        let meta = lock(&self.meta);
        live.iter().map(|(id, _)| meta.images.get(id).map_or(-1 - *id, |e| e.product_row)).collect()
    }

    /// Applies product and image changes committed since the last call.
    fn sync_changes(&self) -> Result<(), CatalogError> {
        let since = lock(&self.meta).seq;
        let ch = self.pg.changes_since(since)?;
        if ch.upto == since {
            return Ok(());
        }
        let mut meta = lock_mut(&self.meta);
        for (row, p, _deleted) in ch.products {
            meta.products.insert(row, Arc::new(p));
        }
        for (id, product_row, deleted, copy) in ch.images {
            let copy = copy.as_deref().and_then(LocalFeatures::from_bytes).map(Arc::new);
            meta.images.insert(id, ImageEntry { product_row, deleted, copy });
        }
        meta.seq = meta.seq.max(ch.upto);
        Ok(())
    }

    /// Mirrors changed shared files into the local folder; a new projection switches the collection searched.
    fn sync_files(&self) -> Result<(), CatalogError> {
        let files = self.pg.files()?;
        let mut changed = false;
        for name in SHARED_FILES {
            let found = files.iter().find(|(n, _, _)| n == name);
            let version = found.map_or(0, |f| f.1);
            if lock(&self.file_versions).get(name).copied().unwrap_or(0) == version {
                continue;
            }
            let path = self.local.path().join(name);
            let io = |error| CatalogError::Io { path: path.clone(), error };
            match found {
                Some((_, _, content)) => std::fs::write(&path, content).map_err(io)?,
                None => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                },
            }
            if name == PROJECTION_FILE {
                let p = Projection::load(self.local.path())?.map(Arc::new);
                let coll = collection_name(&self.uid, p.as_deref());
                *lock_mut(&self.space) = (p, coll);
            }
            lock_mut(&self.file_versions).insert(name.to_string(), version);
            changed = true;
        }
        if changed {
            self.state_version.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Puts vectors (model space) into the current collection and records it.
    fn place(&self, vectors: &[(i64, Vec<f32>)]) -> Result<(), CatalogError> {
        if vectors.is_empty() {
            return Ok(());
        }
        let (projection, coll) = lock(&self.space).clone();
        self.place_in(&coll, projection.as_deref(), vectors)
    }

    fn place_in(&self, coll: &str, projection: Option<&Projection>, vectors: &[(i64, Vec<f32>)]) -> Result<(), CatalogError> {
        let projected: Vec<(i64, Vec<f32>)> = match projection {
            Some(p) => vectors.iter().map(|(id, v)| (*id, p.apply(v))).collect(),
            None => vectors.to_vec(),
        };
        let meta = lock(&self.meta);
        let rows: Vec<MilvusRow<'_>> = projected
            .iter()
            .filter_map(|(id, v)| {
                let p = meta.products.get(&meta.images.get(id)?.product_row)?;
                Some(MilvusRow { image_id: *id, vector: v, label: p.label, brand: p.brand.as_deref(), category: p.category.as_deref() })
            })
            .collect();
        let ids: Vec<i64> = rows.iter().map(|r| r.image_id).collect();
        let last = self.milvus.insert(coll, &rows)?;
        drop(meta);
        self.pg.set_vectors_at(&ids, Some(coll))?;
        // Read your writes: the inserts are searchable once the last one is.
        if let Some(last) = last {
            if !self.milvus.wait_visible(coll, last, Duration::from_secs(2))? {
                tracing::warn!("Milvus has not made its row {last} searchable after 2 s");
            }
        }
        Ok(())
    }

    /// Products among `products` whose label, brand or category (the fields
    /// Milvus filters on) differ from what this replica knows.
    fn changed_filter_fields<'a>(&self, products: impl Iterator<Item = &'a Product>) -> Vec<String> {
        let meta = lock(&self.meta);
        let known: HashMap<&str, &Product> = meta.products.values().map(|p| (p.product_id.as_str(), p.as_ref())).collect();
        let mut out: Vec<String> = products
            .filter(|p| {
                known.get(p.product_id.as_str()).is_some_and(|k| {
                    // Upserts keep a field that is not given.
                    k.label != p.label
                        || p.brand.as_ref().is_some_and(|b| k.brand.as_ref() != Some(b))
                        || p.category.as_ref().is_some_and(|c| k.category.as_ref() != Some(c))
                })
            })
            .map(|p| p.product_id.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Re-places the vectors of these products, so that Milvus filters on their new fields.
    fn refresh_filter_fields(&self, product_ids: &[String]) -> Result<(), CatalogError> {
        if product_ids.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::new();
        for p in product_ids {
            ids.extend(self.pg.images_of(p)?.iter().map(|i| i.id));
        }
        let coll = self.collection();
        self.milvus.delete_images(&coll, &ids)?;
        self.place(&self.pg.vectors_of(&self.opts.model, &ids)?)
    }

    fn after_delete(&self, ids: &[i64]) -> Result<(), CatalogError> {
        self.sync_changes()?;
        let coll = self.collection();
        // The store says deleted and every replica stops answering it within
        // a sync; a failure here leaves the vector to reconciliation.
        match self.milvus.delete_images(&coll, ids) {
            Ok(()) => self.pg.set_vectors_at(ids, None),
            Err(e) => {
                tracing::warn!("deleted in the store; removing {} vectors from Milvus failed ({e}): reconciliation will", ids.len());
                Ok(())
            }
        }
    }

    /// Vectors of live images that are not in the current collection are
    /// placed (any partial copy removed first); vectors of deleted images removed.
    fn reconcile(&self) -> Result<usize, CatalogError> {
        // One replica at a time (two would both place what is missing, twice).
        let key = lock_key(&self.uid, "reconcile");
        self.pg.with_session_lock(key, || self.reconcile_alone()).and_then(|r| r.unwrap_or(Ok(0)))
    }

    fn reconcile_alone(&self) -> Result<usize, CatalogError> {
        let coll = self.collection();
        self.milvus.ensure_collection(&coll, self.graph_dim())?;
        let mut placed = 0;
        loop {
            let missing = self.pg.live_vectors(&self.opts.model, Some(&coll), 2000)?;
            if missing.is_empty() {
                break;
            }
            let ids: Vec<i64> = missing.iter().map(|(id, _)| *id).collect();
            self.milvus.delete_images(&coll, &ids)?;
            self.place(&missing)?;
            placed += missing.len();
        }
        loop {
            let gone = self.pg.deleted_with_vectors(2000)?;
            if gone.is_empty() {
                break;
            }
            let mut by_coll: HashMap<String, Vec<i64>> = HashMap::new();
            for (id, c) in gone {
                by_coll.entry(c).or_default().push(id);
            }
            for (c, ids) in by_coll {
                if self.milvus.collections()?.contains(&c) {
                    self.milvus.delete_images(&c, &ids)?;
                }
                self.pg.set_vectors_at(&ids, None)?;
            }
        }
        if placed > 0 {
            tracing::info!("reconciliation placed {placed} vectors missing from Milvus collection {coll}");
        }
        Ok(placed)
    }

    /// Removes vectors in Milvus whose image the store does not hold live
    /// (written by a replica that died before its store transaction
    /// committed), and collections of this catalog no longer in use.
    fn sweep_strays(&self) -> Result<usize, CatalogError> {
        let coll = self.collection();
        let (_, max) = self.pg.live_ids(0, 0)?;
        let mut removed = 0;
        let mut lo = 0;
        while lo <= max {
            let hi = lo + 50_000;
            let (live, _) = self.pg.live_ids(lo, hi)?;
            let stray: Vec<i64> = self.milvus.image_ids(&coll, lo, hi)?.into_iter().filter(|id| !live.contains(id)).collect();
            removed += stray.len();
            self.milvus.delete_images(&coll, &stray)?;
            lo = hi + 1;
        }
        let beyond = self.milvus.image_ids_above(&coll, max)?;
        removed += beyond.len();
        self.milvus.delete_images(&coll, &beyond)?;
        let prefix = format!("knockoff_{}_", self.uid);
        for c in self.milvus.collections()? {
            if c.starts_with(&prefix) && c != coll {
                self.milvus.drop_collection(&c)?;
            }
        }
        Ok(removed)
    }

    /// Fills a new collection for `projection`, then switches every replica to it.
    fn switch_space(&self, projection: Option<&Projection>, live: &[(i64, Vec<f32>)]) -> Result<(), CatalogError> {
        let coll = collection_name(&self.uid, projection);
        if coll == self.collection() {
            // The same projection (its id is its content): the collection searched now already holds it.
            return Ok(());
        }
        let dim = projection.map_or(self.opts.dim, |p| p.info.out_dim);
        let _ = self.milvus.drop_collection(&coll);
        self.milvus.ensure_collection(&coll, dim)?;
        self.place_in(&coll, projection, live)?;
        let content = match projection {
            Some(p) => {
                p.save(self.local.path())?;
                let path = self.local.path().join(PROJECTION_FILE);
                Some(std::fs::read_to_string(&path).map_err(|error| CatalogError::Io { path, error })?)
            }
            None => None,
        };
        self.pg.put_file(PROJECTION_FILE, content.as_deref())?;
        self.sync_files()?;
        // Images added meanwhile went to the old collection: place them too.
        self.reconcile()?;
        Ok(())
    }
}

/// The replica's background loop: apply changes every [`SYNC_EVERY`],
/// reconcile every [`RECONCILE_EVERY`]; ends with the catalog. Errors (an
/// engine down) are logged once per outage and retried.
fn spawn_sync(inner: Weak<Inner>) {
    let _ = std::thread::Builder::new().name("knockoff-sync".into()).spawn(move || {
        let mut last_reconcile = Instant::now();
        let mut failing = false;
        loop {
            std::thread::sleep(SYNC_EVERY);
            let Some(inner) = inner.upgrade() else { return };
            let mut result = inner.sync_files().and_then(|()| inner.sync_changes());
            inner.record_sync(&result);
            if result.is_ok() && last_reconcile.elapsed() >= RECONCILE_EVERY {
                last_reconcile = Instant::now();
                result = inner.reconcile().map(drop);
            }
            match result {
                Err(e) if !failing => {
                    tracing::warn!("shared catalog: {e}; retrying");
                    failing = true;
                }
                Ok(()) if failing => {
                    tracing::info!("shared catalog: engines answer again");
                    failing = false;
                }
                _ => {}
            }
        }
    });
}

/// A copy of an engine error good enough to report again later.
fn clone_error(e: &CatalogError) -> CatalogError {
    match e {
        CatalogError::Unavailable { engine, setting, address, detail } => {
            CatalogError::Unavailable { engine, setting, address: address.clone(), detail: detail.clone() }
        }
        other => CatalogError::Engine { engine: "shared catalog", detail: other.to_string() },
    }
}
