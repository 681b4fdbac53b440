//! The HNSW graph of one model's vectors (`hnsw_rs`, inner-product distance
//! over unit vectors), and its crash-safe persistence.
//!
//! A dump lives in `<index>/vectors/<model>/`: `<base>.hnsw.graph` and
//! `<base>.hnsw.data` written by `hnsw_rs`, fsynced, then `CURRENT.json`
//! (the marker) replaced atomically (temp file, fsync, rename, fsync of the
//! folder). The marker names the files with their sha256, the store
//! generation and the highest image id the dump contains. Anything that does
//! not check out is ignored and the graph is rebuilt from the store.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use hnsw_rs::prelude::{AnnT, Distance, FilterT, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

use super::CatalogError;

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

/// What a dump contains; written last, atomically.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpMarker {
    pub basename: String,
    pub graph_sha256: String,
    pub data_sha256: String,
    pub generation: u64,
    pub max_image_id: i64,
    pub points: usize,
    pub dim: usize,
    pub params: IndexParams,
}

pub struct VectorIndex {
    hnsw: Hnsw<'static, f32, UnitDot>,
    params: IndexParams,
    dim: usize,
    points: AtomicUsize,
    max_id: AtomicI64,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex").field("points", &self.len()).field("dim", &self.dim).field("params", &self.params).finish()
    }
}

impl VectorIndex {
    pub fn new(dim: usize, params: IndexParams, capacity: usize) -> Self {
        let hnsw = Hnsw::new(params.m, capacity.max(1024), 16, params.ef_construction, UnitDot);
        VectorIndex { hnsw, params, dim, points: AtomicUsize::new(0), max_id: AtomicI64::new(0) }
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

    /// Inserts one unit vector under `id` (thread-safe; concurrent searches proceed).
    pub fn insert(&self, id: i64, v: &[f32]) -> Result<(), CatalogError> {
        if v.len() != self.dim {
            return Err(CatalogError::Dimension { got: v.len(), want: self.dim });
        }
        self.hnsw.insert_slice((v, id as usize));
        self.points.fetch_add(1, Ordering::Relaxed);
        self.max_id.fetch_max(id, Ordering::Relaxed);
        Ok(())
    }

    /// Inserts many vectors using all cores.
    pub fn insert_many(&self, items: &[(i64, Vec<f32>)]) -> Result<(), CatalogError> {
        if let Some((_, v)) = items.iter().find(|(_, v)| v.len() != self.dim) {
            return Err(CatalogError::Dimension { got: v.len(), want: self.dim });
        }
        let refs: Vec<(&[f32], usize)> = items.iter().map(|(id, v)| (v.as_slice(), *id as usize)).collect();
        self.hnsw.parallel_insert_slice(&refs);
        self.points.fetch_add(items.len(), Ordering::Relaxed);
        if let Some(m) = items.iter().map(|(id, _)| *id).max() {
            self.max_id.fetch_max(m, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The `k` nearest ids with their similarity (dot product), best first,
    /// skipping ids for which `keep` is false during the graph walk.
    pub fn search(&self, q: &[f32], k: usize, ef: usize, keep: Option<&dyn Fn(i64) -> bool>) -> Vec<(i64, f32)> {
        if q.len() != self.dim || k == 0 || self.is_empty() {
            return Vec::new();
        }
        let ef = ef.max(k);
        let res = match keep {
            Some(keep) => {
                let f = move |id: &usize| keep(*id as i64);
                self.hnsw.search_filter(q, k, ef, Some(&f as &dyn FilterT))
            }
            None => self.hnsw.search(q, k, ef),
        };
        res.into_iter().map(|n| (n.d_id as i64, 1.0 - n.distance)).collect()
    }

    /// Writes the graph to `dir` atomically and returns the marker. An empty
    /// graph is recorded by its marker alone (`hnsw_rs` does not dump one).
    pub fn dump(&self, dir: &Path, generation: u64) -> Result<DumpMarker, CatalogError> {
        let io = |error| CatalogError::Io { path: dir.into(), error };
        std::fs::create_dir_all(dir).map_err(io)?;
        if self.is_empty() {
            let marker = DumpMarker {
                basename: String::new(),
                graph_sha256: String::new(),
                data_sha256: String::new(),
                generation,
                max_image_id: self.max_id(),
                points: 0,
                dim: self.dim,
                params: self.params,
            };
            let json = serde_json::to_vec_pretty(&marker).map_err(|e| CatalogError::Dump(e.to_string()))?;
            write_atomic(&dir.join(MARKER), &json)?;
            remove_dumps_except(dir, None);
            return Ok(marker);
        }
        let basename = format!("g{generation}-{}", u64::from(std::process::id()) * 1000 + (now_nanos() % 1000));
        self.hnsw.file_dump(dir, &basename).map_err(|e| CatalogError::Dump(e.to_string()))?;
        let graph = dir.join(format!("{basename}.hnsw.graph"));
        let data = dir.join(format!("{basename}.hnsw.data"));
        for f in [&graph, &data] {
            File::open(f).and_then(|f| f.sync_all()).map_err(io)?;
        }
        let marker = DumpMarker {
            basename: basename.clone(),
            graph_sha256: sha256_file(&graph)?,
            data_sha256: sha256_file(&data)?,
            generation,
            max_image_id: self.max_id(),
            points: self.len(),
            dim: self.dim,
            params: self.params,
        };
        let json = serde_json::to_vec_pretty(&marker).map_err(|e| CatalogError::Dump(e.to_string()))?;
        write_atomic(&dir.join(MARKER), &json)?;
        remove_dumps_except(dir, Some(&basename));
        Ok(marker)
    }

    /// Loads the dump in `dir` if its marker and files check out.
    /// `Ok(None)`: no dump. `Err`: a dump exists but is unusable (the caller rebuilds).
    pub fn load(dir: &Path, dim: usize, params: IndexParams) -> Result<Option<(VectorIndex, DumpMarker)>, CatalogError> {
        let marker_path = dir.join(MARKER);
        let bytes = match std::fs::read(&marker_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(CatalogError::Io { path: marker_path, error }),
        };
        let marker: DumpMarker =
            serde_json::from_slice(&bytes).map_err(|e| CatalogError::Dump(format!("marker {}: {e}", marker_path.display())))?;
        if marker.dim != dim || marker.params.m != params.m || marker.params.ef_construction != params.ef_construction {
            return Err(CatalogError::Dump("dump was built with other dimension or parameters".into()));
        }
        if marker.points == 0 {
            let idx = VectorIndex::new(dim, IndexParams { ef_search: params.ef_search, ..marker.params }, 0);
            idx.max_id.store(marker.max_image_id, Ordering::Relaxed);
            return Ok(Some((idx, marker)));
        }
        if !valid_basename(&marker.basename) {
            return Err(CatalogError::Dump(format!(
                "marker {} names '{}', not a dump of this folder",
                marker_path.display(),
                marker.basename
            )));
        }
        let graph = dir.join(format!("{}.hnsw.graph", marker.basename));
        let data = dir.join(format!("{}.hnsw.data", marker.basename));
        for (f, want) in [(&graph, &marker.graph_sha256), (&data, &marker.data_sha256)] {
            let got = sha256_file(f)?;
            if &got != want {
                return Err(CatalogError::Dump(format!("{} is damaged (sha256 {got}, marker says {want})", f.display())));
            }
        }
        // hnsw_rs ties the loaded graph's lifetime to its reader; the reader is
        // a few paths and options, leaked once per load.
        let reader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, &marker.basename)));
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let reader = reader;
            load_static(reader)
        }));
        let hnsw = match loaded {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return Err(CatalogError::Dump(format!("cannot read dump: {e}"))),
            Err(_) => return Err(CatalogError::Dump("dump reader panicked on the files".into())),
        };
        if hnsw.get_nb_point() != marker.points {
            return Err(CatalogError::Dump(format!("dump holds {} points, marker says {}", hnsw.get_nb_point(), marker.points)));
        }
        let idx = VectorIndex {
            hnsw,
            params: IndexParams { ef_search: params.ef_search, ..marker.params },
            dim,
            points: AtomicUsize::new(marker.points),
            max_id: AtomicI64::new(marker.max_image_id),
        };
        Ok(Some((idx, marker)))
    }
}

/// A dump's base name as `dump` writes it (`g<generation>-<number>`): no
/// path separators, no `..`, so a marker can never point outside its folder.
fn valid_basename(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix('g').and_then(|rest| rest.split_once('-')).is_some_and(|(a, b)| digits(a) && digits(b))
}

/// Removes dump files other than `keep`'s.
fn remove_dumps_except(dir: &Path, keep: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.contains(".hnsw.") && keep.is_none_or(|k| !name.starts_with(&format!("{k}."))) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn load_static(reader: &'static mut HnswIo) -> anyhow::Result<Hnsw<'static, f32, UnitDot>> {
    reader.load_hnsw::<f32, UnitDot>()
}

/// `1 - a·b` for unit vectors, clamped at 0 (rounding can push a·b of
/// near-identical vectors just over 1, which `anndists::DistDot` asserts on).
#[derive(Debug, Default, Clone, Copy)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Dot product with AVX2 + FMA when the CPU has them.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { dot_avx2_fma(a, b) };
        }
    }
    dot_lanes(a, b)
}

/// Four independent 8-wide FMA accumulators (hides FMA latency).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{_mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps};
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc_k) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_ps(pa.add(i + 8 * k));
            let y = _mm256_loadu_ps(pb.add(i + 8 * k));
            *acc_k = _mm256_fmadd_ps(x, y, *acc_k);
        }
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), s);
    let mut total: f32 = lanes.iter().sum();
    while i < n {
        total += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    total
}

/// Sixteen independent accumulators, so the compiler can vectorise.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

pub const MARKER: &str = "CURRENT.json";

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos()))
}

fn sha256_file(p: &Path) -> Result<String, CatalogError> {
    crate::util::sha256_file(p).map_err(|error| CatalogError::Io { path: p.into(), error })
}

/// [`crate::util::write_atomic`], with the index folder's error.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    crate::util::write_atomic(path, bytes).map_err(|error| CatalogError::Io { path: path.into(), error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_cannot_name_files_outside_their_folder() {
        assert!(valid_basename("g12-3456789"));
        for bad in ["../..", "g1-2/../../x", "g-1", "g1-", "/etc/passwd", "g1-2.hnsw", ""] {
            assert!(!valid_basename(bad), "{bad}");
        }
    }

    #[test]
    fn an_empty_graph_dumps_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let idx = VectorIndex::new(8, IndexParams::default(), 0);
        let m = idx.dump(dir.path(), 3).unwrap();
        assert_eq!((m.points, m.generation), (0, 3));
        let (loaded, marker) = VectorIndex::load(dir.path(), 8, IndexParams::default()).unwrap().unwrap();
        assert_eq!((loaded.len(), marker.points), (0, 0));
        assert!(loaded.search(&[0.5; 8], 3, 16, None).is_empty());
    }

    #[test]
    fn dot_matches_naive_and_distance_never_goes_negative() {
        let a: Vec<f32> = (0..1283).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect();
        let b: Vec<f32> = (0..1283).map(|i| ((i * 53) % 97) as f32 / 97.0 - 0.5).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-3);
        let n = dot(&a, &a).sqrt();
        let u: Vec<f32> = a.iter().map(|x| x / n).collect();
        assert!(UnitDot.eval(&u, &u) >= 0.0);
        assert!(UnitDot.eval(&u, &u) < 1e-5);
    }
}
