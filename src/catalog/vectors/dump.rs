//! The embedded index's crash-safe persistence.
//!
//! A dump lives in `<index>/vectors/<model>[@<projection>]/`: `<base>.hnsw.graph`
//! and `<base>.hnsw.data` written by `hnsw_rs`, `<base>.hnsw.exact` (the f32
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hnsw_rs::prelude::{AnnT, Hnsw, HnswIo};
use parking_lot::RwLock;

use super::flat::FlatGraph;
use super::hnsw::{Deferred, HnswIndex, Snapshot};
pub use super::marker::{DumpFile, DumpMarker, DUMP_FORMAT, MARKER};
use super::quant::{ExactRows, QuantDot};
use super::IndexParams;
use crate::catalog::CatalogError;

impl HnswIndex {
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
    pub fn load(dir: &Path, dim: usize, params: IndexParams) -> Result<Option<(HnswIndex, DumpMarker)>, CatalogError> {
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
        let idx = HnswIndex::new(dim, params, 0);
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
        let idx = HnswIndex {
            hnsw: OnceLock::new(),
            deferred: Some(Deferred { dir: dir.to_path_buf(), marker: marker.clone(), read: read_hnsw }),
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

    #[test]
    fn an_empty_graph_dumps_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let idx = HnswIndex::new(8, IndexParams::default(), 0);
        let m = idx.dump(dir.path(), 3).unwrap();
        assert_eq!((m.points, m.generation), (0, 3));
        let (loaded, marker) = HnswIndex::load(dir.path(), 8, IndexParams::default()).unwrap().unwrap();
        assert_eq!((loaded.len(), marker.points), (0, 0));
        assert!(loaded.nearest(&[0.5; 8], 3, 16, None).is_empty());
    }
}
