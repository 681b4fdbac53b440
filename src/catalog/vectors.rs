//! The HNSW graph of one model's vectors (`hnsw_rs`, inner-product distance
//! over unit vectors), and its crash-safe persistence.
//!
//! Queries walk a flat copy of the graph over int8 points ([`super::flat`],
//! [`super::quant`]) and rescore their shortlist exactly from a contiguous
//! f32 matrix; `hnsw_rs` builds and extends the graph and writes its part
//! of the dump. Opening an index reads only what queries need (the exact
//! rows and the flat copy); the `hnsw_rs` graph is read on the first write.
//!
//! A dump lives in `<index>/vectors/<model>/`: `<base>.hnsw.graph` and
//! `<base>.hnsw.data` written by `hnsw_rs`, `<base>.hnsw.exact` (the f32
//! rows) and `<base>.hnsw.flat` (the flat copy), fsynced, then `CURRENT.json`
//! (the marker) replaced atomically (temp file, fsync, rename, fsync of the
//! folder). The marker names the files with their CRC-32 and size, the
//! store generation and the highest image id the dump contains. Anything
//! that does not check out is ignored and the graph is rebuilt from the
//! store (or, for the `hnsw_rs` part read later, from the exact rows).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use hnsw_rs::prelude::{AnnT, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

use super::flat::FlatGraph;
use super::quant::{quantize, ExactRows, QuantDot};
use super::CatalogError;

/// The dump layout this code writes (int8 graph, exact rows, flat copy);
/// a dump of another layout is not loaded (the graph is rebuilt).
const DUMP_FORMAT: u32 = 2;

/// Points added after the flat copy that queries compare exactly before a
/// write takes a new copy (a scan of at most ~1.3 MB of f32 rows at 1280-d).
const MAX_UNCOPIED: usize = 256;

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

/// One file of a dump: its size and CRC-32 (torn or damaged writes show).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DumpFile {
    pub bytes: u64,
    pub crc32: u32,
}

/// What a dump contains; written last, atomically.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpMarker {
    pub basename: String,
    pub generation: u64,
    pub max_image_id: i64,
    pub points: usize,
    pub dim: usize,
    pub params: IndexParams,
    /// Dump layout (absent in the first one: f32 points, sha256 per file).
    #[serde(default)]
    pub format: u32,
    /// Each file by suffix (`graph`, `data`, `exact`, `flat`).
    #[serde(default)]
    pub files: BTreeMap<String, DumpFile>,
}

/// The flat copy queries walk, and how many exact rows existed when it was taken.
struct Snapshot {
    graph: FlatGraph,
    rows_covered: usize,
}

/// Where the `hnsw_rs` graph of a loaded index is read from when a write first needs it.
struct Deferred {
    dir: PathBuf,
    marker: DumpMarker,
}

pub struct VectorIndex {
    /// The `hnsw_rs` graph: built here, or read from `deferred` on first use.
    hnsw: OnceLock<Hnsw<'static, i8, QuantDot>>,
    deferred: Option<Deferred>,
    /// Whether anything was inserted since the index was loaded.
    dirty: AtomicBool,
    exact: RwLock<ExactRows>,
    flat: RwLock<Option<Arc<Snapshot>>>,
    /// Held while a flat copy is being taken (one at a time).
    freezing: Mutex<()>,
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

fn new_hnsw(params: IndexParams, capacity: usize) -> Hnsw<'static, i8, QuantDot> {
    Hnsw::new(params.m, capacity.max(1024), 16, params.ef_construction, QuantDot)
}

impl VectorIndex {
    pub fn new(dim: usize, params: IndexParams, capacity: usize) -> Self {
        let hnsw = OnceLock::new();
        let _ = hnsw.set(new_hnsw(params, capacity));
        VectorIndex {
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
    fn graph(&self) -> &Hnsw<'static, i8, QuantDot> {
        self.hnsw.get_or_init(|| {
            let Some(d) = &self.deferred else { return new_hnsw(self.params, self.len()) };
            match read_hnsw(&d.dir, &d.marker) {
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
    pub fn insert(&self, id: i64, v: &[f32]) -> Result<(), CatalogError> {
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
    pub fn insert_many(&self, items: &[(i64, Vec<f32>)]) -> Result<(), CatalogError> {
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
    pub fn search(&self, q: &[f32], k: usize, ef: usize, keep: Option<&dyn Fn(i64) -> bool>) -> Vec<(i64, f32)> {
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

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.flat.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Takes a new flat copy of the graph (waits for one being taken).
    fn freeze(&self) {
        let _taking = self.freezing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.freeze_locked();
    }

    fn freeze_locked(&self) {
        // Rows counted before the graph is read: every counted row's point is in the graph.
        let rows_covered = self.rows().len();
        let snap = FlatGraph::freeze(self.graph(), self.params.m).map(|graph| Arc::new(Snapshot { graph, rows_covered }));
        *self.flat.write().unwrap_or_else(std::sync::PoisonError::into_inner) = snap;
    }

    fn rows(&self) -> std::sync::RwLockReadGuard<'_, ExactRows> {
        self.exact.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rows_mut(&self) -> std::sync::RwLockWriteGuard<'_, ExactRows> {
        self.exact.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the graph to `dir` atomically and returns the marker. An empty
    /// graph is recorded by its marker alone (`hnsw_rs` does not dump one);
    /// an index unchanged since it was loaded from `dir` keeps its files.
    pub fn dump(&self, dir: &Path, generation: u64) -> Result<DumpMarker, CatalogError> {
        let io = |error| CatalogError::Io { path: dir.into(), error };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut marker = DumpMarker {
            basename: String::new(),
            generation,
            max_image_id: self.max_id(),
            points: self.len(),
            dim: self.dim,
            params: self.params,
            format: DUMP_FORMAT,
            files: BTreeMap::new(),
        };
        match &self.deferred {
            Some(d) if !self.dirty.load(Ordering::Relaxed) && d.dir == dir && !self.is_empty() => {
                marker.basename.clone_from(&d.marker.basename);
                marker.files.clone_from(&d.marker.files);
            }
            _ if self.is_empty() => {}
            _ => self.write_files(dir, &mut marker)?,
        }
        let json = serde_json::to_vec_pretty(&marker).map_err(|e| CatalogError::Dump(e.to_string()))?;
        write_atomic(&dir.join(MARKER), &json)?;
        remove_dumps_except(dir, (!marker.basename.is_empty()).then_some(marker.basename.as_str()));
        Ok(marker)
    }

    /// Writes the four files of a dump under a new base name into `marker`.
    fn write_files(&self, dir: &Path, marker: &mut DumpMarker) -> Result<(), CatalogError> {
        let io = |error| CatalogError::Io { path: dir.into(), error };
        let basename = format!("g{}-{}", marker.generation, u64::from(std::process::id()) * 1000 + (now_nanos() % 1000));
        self.graph().file_dump(dir, &basename).map_err(|e| CatalogError::Dump(e.to_string()))?;
        let snap = match self.snapshot() {
            Some(s) if s.rows_covered == self.rows().len() => Some(s),
            _ => {
                self.freeze();
                self.snapshot()
            }
        };
        let flat = snap.ok_or_else(|| CatalogError::Dump("no flat copy of a non-empty graph".into()))?;
        // Ours are checksummed as they are written; hnsw_rs's are read back once.
        let exact = write_part(&part_path(dir, &basename, "exact"), |w| self.rows().write_to(w)).map_err(io)?;
        let copy = write_part(&part_path(dir, &basename, "flat"), |w| flat.graph.write_to(w)).map_err(io)?;
        marker.files.insert("exact".into(), exact);
        marker.files.insert("flat".into(), copy);
        for part in ["graph", "data"] {
            marker.files.insert(part.into(), checksum_file(&part_path(dir, &basename, part)).map_err(io)?);
        }
        marker.points = flat.graph.len();
        marker.basename = basename;
        Ok(())
    }

    /// Loads the dump in `dir` if its marker and files check out: the exact
    /// rows and the flat copy now, the `hnsw_rs` graph on the first write.
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
        if marker.format != DUMP_FORMAT {
            return Err(CatalogError::Dump(format!("dump layout {} is not this version's ({DUMP_FORMAT})", marker.format)));
        }
        let params = IndexParams { ef_search: params.ef_search, ..marker.params };
        let idx = VectorIndex::new(dim, params, 0);
        idx.max_id.store(marker.max_image_id, Ordering::Relaxed);
        if marker.points == 0 {
            return Ok(Some((idx, marker)));
        }
        if !valid_basename(&marker.basename) {
            return Err(CatalogError::Dump(format!(
                "marker {} names '{}', not a dump of this folder",
                marker_path.display(),
                marker.basename
            )));
        }
        let exact = ExactRows::from_bytes(dim, &read_part(dir, &marker, "exact")?)
            .ok_or_else(|| CatalogError::Dump("the exact rows of the dump do not parse".into()))?;
        let graph = FlatGraph::from_bytes(&read_part(dir, &marker, "flat")?)
            .ok_or_else(|| CatalogError::Dump("the flat graph of the dump does not parse".into()))?;
        if exact.len() != marker.points || graph.len() != marker.points {
            return Err(CatalogError::Dump(format!(
                "dump holds {} exact rows and {} graph points, marker says {}",
                exact.len(),
                graph.len(),
                marker.points
            )));
        }
        let rows_covered = exact.len();
        let idx = VectorIndex {
            hnsw: OnceLock::new(),
            deferred: Some(Deferred { dir: dir.to_path_buf(), marker: marker.clone() }),
            exact: RwLock::new(exact),
            flat: RwLock::new(Some(Arc::new(Snapshot { graph, rows_covered }))),
            points: AtomicUsize::new(marker.points),
            ..idx
        };
        Ok(Some((idx, marker)))
    }
}

/// Writes through to `inner`, counting the bytes and their CRC-32.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Creates `path` with what `fill` writes, fsynced; its size and CRC-32.
fn write_part(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<DumpFile> {
    let mut w = Checksummed { inner: BufWriter::new(File::create(path)?), crc: crc32fast::Hasher::new(), bytes: 0 };
    fill(&mut w)?;
    w.flush()?;
    let Checksummed { inner, crc, bytes } = w;
    inner.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
    Ok(DumpFile { bytes, crc32: crc.finalize() })
}

/// Fsyncs a written file and reads it once for its size and CRC-32.
fn checksum_file(path: &Path) -> std::io::Result<DumpFile> {
    let mut file = File::open(path)?;
    file.sync_all()?;
    let mut w = Checksummed { inner: std::io::sink(), crc: crc32fast::Hasher::new(), bytes: 0 };
    std::io::copy(&mut file, &mut w)?;
    Ok(DumpFile { bytes: w.bytes, crc32: w.crc.finalize() })
}

fn part_path(dir: &Path, basename: &str, part: &str) -> PathBuf {
    dir.join(format!("{basename}.hnsw.{part}"))
}

/// One file of the dump, checked against its size and CRC-32 in the marker.
fn read_part(dir: &Path, marker: &DumpMarker, part: &str) -> Result<Vec<u8>, CatalogError> {
    let path = part_path(dir, &marker.basename, part);
    let want = marker.files.get(part).ok_or_else(|| CatalogError::Dump(format!("marker lists no {part} file")))?;
    let bytes = std::fs::read(&path).map_err(|error| CatalogError::Io { path: path.clone(), error })?;
    if bytes.len() as u64 != want.bytes || crc32fast::hash(&bytes) != want.crc32 {
        return Err(CatalogError::Dump(format!("{} is damaged (size or CRC-32 differs from the marker)", path.display())));
    }
    Ok(bytes)
}

/// The `hnsw_rs` part of a dump, checked first.
fn read_hnsw(dir: &Path, marker: &DumpMarker) -> Result<Hnsw<'static, i8, QuantDot>, CatalogError> {
    for part in ["graph", "data"] {
        read_part(dir, marker, part)?;
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
    Ok(hnsw)
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

fn load_static(reader: &'static mut HnswIo) -> anyhow::Result<Hnsw<'static, i8, QuantDot>> {
    reader.load_hnsw::<i8, QuantDot>()
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

    fn recall(idx: &VectorIndex, items: &[(i64, Vec<f32>)], queries: &[(i64, Vec<f32>)], keep: Option<&dyn Fn(i64) -> bool>) -> f64 {
        let all = |_: i64| true;
        let mut hits = 0;
        for (_, q) in queries {
            let want = exact_top(items, q, 10, keep.unwrap_or(&all));
            let got = idx.search(q, 10, 64, keep);
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
        let idx = VectorIndex::new(64, IndexParams::default(), items.len());
        idx.insert_many(&items[..2500]).unwrap();
        // Added one by one after the flat copy: found by the exact pass, then by a new copy.
        for (id, v) in &items[2500..] {
            idx.insert(*id, v).unwrap();
        }
        let odd: &dyn Fn(i64) -> bool = &|id: i64| id % 2 == 1;
        assert!(recall(&idx, &items, &queries, None) >= 0.95);
        assert!(recall(&idx, &items, &queries, Some(odd)) >= 0.95);
        let (id, v) = &items[2999];
        assert_eq!(idx.search(v, 1, 64, None)[0].0, *id);
        let dir = tempfile::tempdir().unwrap();
        idx.dump(dir.path(), 7).unwrap();
        let (loaded, marker) = VectorIndex::load(dir.path(), 64, IndexParams::default()).unwrap().unwrap();
        assert_eq!((loaded.len(), marker.points, marker.format), (3000, 3000, DUMP_FORMAT));
        for (_, q) in &queries {
            assert_eq!(loaded.search(q, 10, 64, None), idx.search(q, 10, 64, None));
        }
        // A marker of the first layout is not loaded (the caller rebuilds from the store).
        let mut old: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join(MARKER)).unwrap()).unwrap();
        old["format"] = 0.into();
        std::fs::write(dir.path().join(MARKER), old.to_string()).unwrap();
        assert!(VectorIndex::load(dir.path(), 64, IndexParams::default()).is_err());
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
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..1283).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect();
        let b: Vec<f32> = (0..1283).map(|i| ((i * 53) % 97) as f32 / 97.0 - 0.5).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-3);
    }
}
