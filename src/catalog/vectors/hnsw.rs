//! The embedded vector index: an HNSW graph (`hnsw_rs`, inner-product
//! distance over unit vectors) of one model's (or projection's) vectors.
//!
//! Queries walk a flat copy of the graph over int8 points ([`super::flat`],
//! [`super::quant`]) and rescore their shortlist exactly from a contiguous
//! f32 matrix; `hnsw_rs` builds and extends the graph and writes its part
//! of the dump ([`super::dump`]). An index loaded from a dump reads only what
//! queries need (the exact rows and the flat copy); the `hnsw_rs` graph is
//! read on the first write.
//!
//! Removing a point is not something the graph does: a deleted image stays
//! a point until compaction rebuilds the graph, and searches skip it through
//! the catalog's `keep` test inside the walk.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hnsw_rs::prelude::Hnsw;
use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::dot::dot;
use super::flat::FlatGraph;
use super::marker::DumpMarker;
use super::quant::{quantize, ExactRows, QuantDot};
use super::{IndexParams, VectorIndex, VectorRow};
use crate::catalog::{CatalogError, Filter};

/// Points added after the flat copy that queries compare exactly before a
/// write takes a new copy (a scan of at most ~1.3 MB of f32 rows at 1280-d).
const MAX_UNCOPIED: usize = 256;

/// The flat copy queries walk, and how many exact rows existed when it was taken.
pub(super) struct Snapshot {
    pub(super) graph: FlatGraph,
    pub(super) rows_covered: usize,
}

/// Reads the `hnsw_rs` part of a dump.
pub(super) type ReadGraph = fn(&std::path::Path, &DumpMarker) -> Result<Graph, CatalogError>;

/// The `hnsw_rs` graph over int8 points.
pub(super) type Graph = Hnsw<'static, i8, QuantDot>;

/// Where the `hnsw_rs` graph of a loaded index is read from when a write
/// first needs it, and how (the dump's reader, [`super::dump`]).
pub(super) struct Deferred {
    pub(super) dir: std::path::PathBuf,
    pub(super) marker: DumpMarker,
    pub(super) read: ReadGraph,
}

pub struct HnswIndex {
    /// The `hnsw_rs` graph: built here, or read from `deferred` on first use.
    pub(super) hnsw: OnceLock<Hnsw<'static, i8, QuantDot>>,
    pub(super) deferred: Option<Deferred>,
    /// Whether anything was inserted since the index was loaded.
    pub(super) dirty: AtomicBool,
    pub(super) exact: RwLock<ExactRows>,
    pub(super) flat: RwLock<Option<Arc<Snapshot>>>,
    /// Held while a flat copy is being taken (one at a time).
    pub(super) freezing: Mutex<()>,
    pub(super) params: IndexParams,
    pub(super) dim: usize,
    pub(super) points: AtomicUsize,
    pub(super) max_id: AtomicI64,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex").field("points", &self.len()).field("dim", &self.dim).field("params", &self.params).finish()
    }
}

fn new_hnsw(params: IndexParams, capacity: usize) -> Hnsw<'static, i8, QuantDot> {
    Hnsw::new(params.m, capacity.max(1024), 16, params.ef_construction, QuantDot)
}

impl HnswIndex {
    pub fn new(dim: usize, params: IndexParams, capacity: usize) -> Self {
        let hnsw = OnceLock::new();
        let _ = hnsw.set(new_hnsw(params, capacity));
        HnswIndex {
            hnsw,
            deferred: None,
            dirty: AtomicBool::new(false),
            exact: RwLock::new(ExactRows::with_capacity(dim, capacity)),
            flat: RwLock::new(None),
            freezing: Mutex::new(()),
            params,
            dim,
            points: AtomicUsize::new(0),
            max_id: AtomicI64::new(0),
        }
    }

    pub fn params(&self) -> IndexParams {
        self.params
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn len(&self) -> usize {
        self.points.load(Ordering::Relaxed)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Highest image id inserted.
    pub fn max_id(&self) -> i64 {
        self.max_id.load(Ordering::Relaxed)
    }

    /// The `hnsw_rs` graph, read from the dump the index was loaded from the
    /// first time a write needs it (rebuilt from the exact rows if that part
    /// of the dump does not check out).
    pub(super) fn graph(&self) -> &Hnsw<'static, i8, QuantDot> {
        self.hnsw.get_or_init(|| {
            let Some(d) = &self.deferred else { return new_hnsw(self.params, self.len()) };
            match (d.read)(&d.dir, &d.marker) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("{e}; rebuilding the graph from the index's own vectors");
                    let rows = self.rows();
                    let points: Vec<(i64, Vec<i8>)> = rows.rows_from(0).map(|(id, v)| (id, quantize(v))).collect();
                    drop(rows);
                    let h = new_hnsw(self.params, points.len());
                    let refs: Vec<(&[i8], usize)> = points.iter().map(|(id, p)| (p.as_slice(), *id as usize)).collect();
                    h.parallel_insert_slice(&refs);
                    h
                }
            }
        })
    }

    /// Inserts one unit vector under `id` (thread-safe; concurrent searches proceed).
    pub fn add(&self, id: i64, v: &[f32]) -> Result<(), CatalogError> {
        if v.len() != self.dim {
            return Err(CatalogError::Dimension { got: v.len(), want: self.dim });
        }
        // Graph first, then the exact row: a flat copy counts a point as covered
        // only once its row exists, and its row only once it is in the graph.
        self.graph().insert_slice((&quantize(v), id as usize));
        self.rows_mut().push(id, v);
        self.dirty.store(true, Ordering::Relaxed);
        self.points.fetch_add(1, Ordering::Relaxed);
        self.max_id.fetch_max(id, Ordering::Relaxed);
        // Queries compare points added since the flat copy exactly; past
        // `MAX_UNCOPIED` the writer takes a new copy (writes wait, reads do not).
        let covered = self.snapshot().map_or(0, |s| s.rows_covered);
        if self.rows().len().saturating_sub(covered) > MAX_UNCOPIED {
            self.freeze();
        }
        Ok(())
    }

    /// Inserts many vectors using all cores, then takes a new flat copy.
    pub fn add_many(&self, items: &[(i64, Vec<f32>)]) -> Result<(), CatalogError> {
        if let Some((_, v)) = items.iter().find(|(_, v)| v.len() != self.dim) {
            return Err(CatalogError::Dimension { got: v.len(), want: self.dim });
        }
        let points: Vec<Vec<i8>> = items.iter().map(|(_, v)| quantize(v)).collect();
        let refs: Vec<(&[i8], usize)> = points.iter().zip(items).map(|(p, (id, _))| (p.as_slice(), *id as usize)).collect();
        self.graph().parallel_insert_slice(&refs);
        {
            let mut rows = self.rows_mut();
            for (id, v) in items {
                rows.push(*id, v);
            }
        }
        self.dirty.store(true, Ordering::Relaxed);
        self.points.fetch_add(items.len(), Ordering::Relaxed);
        if let Some(m) = items.iter().map(|(id, _)| *id).max() {
            self.max_id.fetch_max(m, Ordering::Relaxed);
        }
        self.freeze();
        Ok(())
    }

    /// The `k` nearest ids with their similarity (dot product), best first,
    /// skipping ids for which `keep` is false during the graph walk.
    pub fn nearest(&self, q: &[f32], k: usize, ef: usize, keep: Option<&dyn Fn(i64) -> bool>) -> Vec<(i64, f32)> {
        if q.len() != self.dim || k == 0 || self.is_empty() {
            return Vec::new();
        }
        let ef = ef.max(k);
        // The walk's best `shortlist` by approximate distance, rescored exactly.
        let shortlist = (2 * k).max(k + 16).min(ef);
        let snap = self.snapshot();
        let rows = self.rows();
        let mut out: Vec<(i64, f32)> = snap.as_ref().map_or_else(Vec::new, |s| {
            s.graph
                .search(&quantize(q), shortlist, ef, keep)
                .into_iter()
                .map(|(id, d)| (id, rows.get(id).map_or(1.0 - d, |v| dot(q, v))))
                .collect()
        });
        // Points added since the copy was taken (at most `MAX_UNCOPIED`): compared exactly.
        let covered = snap.as_ref().map_or(0, |s| s.rows_covered);
        if rows.len() > covered {
            let known: std::collections::HashSet<i64> = out.iter().map(|(id, _)| *id).collect();
            out.extend(
                rows.rows_from(covered).filter(|(id, _)| !known.contains(id) && keep.is_none_or(|f| f(*id))).map(|(id, v)| (id, dot(q, v))),
            );
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(k);
        out
    }

    pub(super) fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.flat.read().clone()
    }

    /// Takes a new flat copy of the graph (waits for one being taken).
    pub(super) fn freeze(&self) {
        let _taking = self.freezing.lock();
        self.freeze_locked();
    }

    fn freeze_locked(&self) {
        // Rows counted before the graph is read: every counted row's point is in the graph.
        let rows_covered = self.rows().len();
        let snap = FlatGraph::freeze(self.graph(), self.params.m).map(|graph| Arc::new(Snapshot { graph, rows_covered }));
        *self.flat.write() = snap;
    }

    pub(super) fn rows(&self) -> RwLockReadGuard<'_, ExactRows> {
        self.exact.read()
    }

    pub(super) fn rows_mut(&self) -> RwLockWriteGuard<'_, ExactRows> {
        self.exact.write()
    }
}

impl VectorIndex for HnswIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn insert(&self, rows: &[VectorRow<'_>]) -> Result<(), CatalogError> {
        rows.iter().try_for_each(|r| self.add(r.id, r.vector))
    }

    /// Tests `keep` inside the walk (the catalog's keep holds the filter).
    fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        _filter: &Filter,
        keep: &dyn Fn(i64) -> bool,
    ) -> Result<Vec<(i64, f32)>, CatalogError> {
        Ok(self.nearest(q, k, ef, Some(keep)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<(i64, Vec<f32>)> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 20_001) as f32 / 10_000.0 - 1.0
        };
        let centres: Vec<Vec<f32>> = (0..50).map(|_| (0..dim).map(|_| next()).collect()).collect();
        (0..n)
            .map(|i| {
                let v: Vec<f32> = centres[i % 50].iter().map(|c| c + 0.6 * next()).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                (i as i64 * 3 + 1, v.iter().map(|x| x / norm).collect())
            })
            .collect()
    }

    fn exact_top(items: &[(i64, Vec<f32>)], q: &[f32], k: usize, keep: &dyn Fn(i64) -> bool) -> Vec<i64> {
        let mut all: Vec<(i64, f32)> = items.iter().filter(|(id, _)| keep(*id)).map(|(id, v)| (*id, dot(q, v))).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.into_iter().take(k).map(|(id, _)| id).collect()
    }

    fn recall(idx: &HnswIndex, items: &[(i64, Vec<f32>)], queries: &[(i64, Vec<f32>)], keep: Option<&dyn Fn(i64) -> bool>) -> f64 {
        let all = |_: i64| true;
        let mut hits = 0;
        for (_, q) in queries {
            let want = exact_top(items, q, 10, keep.unwrap_or(&all));
            let got = idx.nearest(q, 10, 64, keep);
            // Similarities are the exact ones, best first.
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
            for (id, sim) in &got {
                let v = &items.iter().find(|(i, _)| i == id).unwrap().1;
                assert!((dot(q, v) - sim).abs() < 1e-6);
            }
            hits += got.iter().filter(|(id, _)| want.contains(id)).count();
        }
        hits as f64 / (10 * queries.len()) as f64
    }

    #[test]
    fn the_flat_int8_walk_finds_the_exact_neighbours_with_and_without_filters_and_after_a_reload() {
        let items = clustered(3000, 64, 11);
        let queries = clustered(40, 64, 99);
        let idx = HnswIndex::new(64, IndexParams::default(), items.len());
        idx.add_many(&items[..2500]).unwrap();
        // Added one by one after the flat copy: found by the exact pass, then by a new copy.
        for (id, v) in &items[2500..] {
            idx.add(*id, v).unwrap();
        }
        let odd: &dyn Fn(i64) -> bool = &|id: i64| id % 2 == 1;
        assert!(recall(&idx, &items, &queries, None) >= 0.95);
        assert!(recall(&idx, &items, &queries, Some(odd)) >= 0.95);
        let (id, v) = &items[2999];
        assert_eq!(idx.nearest(v, 1, 64, None)[0].0, *id);
        let dir = tempfile::tempdir().unwrap();
        idx.dump(dir.path(), 7).unwrap();
        let (loaded, marker) = HnswIndex::load(dir.path(), 64, IndexParams::default()).unwrap().unwrap();
        assert_eq!((loaded.len(), marker.points, marker.format), (3000, 3000, 2));
        for (_, q) in &queries {
            assert_eq!(loaded.nearest(q, 10, 64, None), idx.nearest(q, 10, 64, None));
        }
        // A marker of the first layout is not loaded (the caller rebuilds from the store).
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(super::super::marker::MARKER)).unwrap()).unwrap();
        old["format"] = 0.into();
        std::fs::write(dir.path().join(super::super::marker::MARKER), old.to_string()).unwrap();
        assert!(HnswIndex::load(dir.path(), 64, IndexParams::default()).is_err());
    }
}
