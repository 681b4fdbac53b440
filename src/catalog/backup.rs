//! `knockoff backup` and `knockoff restore`: a consistent copy of a catalog
//! on either backend, taken while lookups and indexing go on, and put back
//! into an empty folder or database.
//!
//! A backup is a folder in the embedded layout, whatever the source:
//!
//! ```text
//! DEST/catalog.sqlite3    products, images with their vectors, thumbnails, copy features
//! DEST/projection.json    the learned projection, if any
//! DEST/calibration.json   the fitted calibration, if any
//! DEST/backup.json        what it is: format, source, model, counts, sha256 of each file above
//! ```
//!
//! The rows are read in one snapshot of the source's store (a read
//! transaction on `SQLite`, repeatable read on PostgreSQL), so a backup taken
//! during an indexing job holds each image with its product, as of one
//! moment. Vectors are not copied as a graph or a Milvus collection: restore
//! builds them from the stored embeddings, as `knockoff migrate` does. Jobs
//! and deleted rows are not part of a backup. The backup is written beside
//! `DEST` and renamed into place only when complete, with `backup.json`
//! last, so a folder without a valid `backup.json` is refused by restore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::files::{SHARED_FILES, STORE_FILE};
use super::store::sqlite::SqliteStore;
use super::{CatalogError, Location};

/// The file that says a folder is a complete backup.
pub const BACKUP_FILE: &str = "backup.json";
/// The format this version writes and reads.
pub const FORMAT: &str = "knockoff-backup/1";

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSum {
    pub bytes: u64,
    pub sha256: String,
}

/// `backup.json`: what a backup holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackupManifest {
    pub format: String,
    pub created_at: String,
    /// Where it was taken from (no password).
    pub source: String,
    pub model: String,
    pub products: usize,
    pub images: usize,
    pub files: BTreeMap<String, FileSum>,
}

fn bad(path: &Path, detail: impl Into<String>) -> CatalogError {
    CatalogError::Backup { path: path.to_path_buf(), detail: detail.into() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError + '_ {
    move |error| CatalogError::Io { path: path.to_path_buf(), error }
}

/// Takes a backup of the catalog at `from` into the new folder `dest` (see
/// the module doc); `progress` hears the images copied so far.
pub fn backup(from: &Location, dest: &Path, progress: &mut dyn FnMut(usize)) -> Result<BackupManifest, CatalogError> {
    if dest.exists() && std::fs::read_dir(dest).map_err(io(dest))?.next().is_some() {
        return Err(bad(dest, "already exists and is not empty: back up into a new folder"));
    }
    let Some(src) = from.records()? else {
        return Err(bad(dest, format!("{from} holds no catalog to back up")));
    };
    let src = src.as_dyn();
    let model = src.meta("model")?.ok_or_else(|| bad(dest, format!("{from} holds no catalog to back up")))?;
    let name = dest.file_name().ok_or_else(|| bad(dest, "names no folder"))?.to_string_lossy();
    let partial = dest.with_file_name(format!(".{name}.partial"));
    if partial.exists() {
        // What an interrupted backup left.
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    // A backup holds every record: readable by its owner only.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&partial).map_err(io(&partial))?;
    let dst = SqliteStore::open(&partial)?;
    let copied = super::transfer::copy_records(src, dst.as_dyn(), &model, progress)?;
    // The store file alone holds everything (no write-ahead log left beside it).
    dst.checkpoint()?;
    drop(dst);
    let (products, images) = (copied.products, copied.images);
    let mut files = BTreeMap::new();
    for name in std::iter::once(STORE_FILE).chain(SHARED_FILES) {
        let path = partial.join(name);
        if path.exists() {
            let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
            files.insert(name.to_string(), FileSum { bytes, sha256: crate::util::sha256_file(&path).map_err(io(&path))? });
        }
    }
    let manifest = BackupManifest {
        format: FORMAT.into(),
        created_at: crate::util::now_rfc3339(),
        source: from.to_string(),
        model,
        products,
        images,
        files,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| bad(dest, e.to_string()))?;
    crate::util::write_atomic(&partial.join(BACKUP_FILE), text.as_bytes()).map_err(io(&partial))?;
    if dest.exists() {
        std::fs::remove_dir(dest).map_err(io(dest))?;
    }
    std::fs::rename(&partial, dest).map_err(io(dest))?;
    Ok(manifest)
}

/// Reads `src/backup.json` and checks every file it lists against its
/// size and sha256; `Err` says why `src` is not a complete knockoff backup.
pub fn verify(src: &Path) -> Result<BackupManifest, CatalogError> {
    let path = src.join(BACKUP_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(src, format!("not a complete knockoff backup: no {BACKUP_FILE} (an interrupted backup, or another folder)")))
        }
        Err(error) => return Err(CatalogError::Io { path, error }),
    };
    let manifest: BackupManifest =
        serde_json::from_str(&text).map_err(|e| bad(src, format!("{BACKUP_FILE} is not a knockoff backup manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(src, format!("format '{}' is not one this version reads ({FORMAT})", manifest.format)));
    }
    if !manifest.files.contains_key(STORE_FILE) {
        return Err(bad(src, format!("{BACKUP_FILE} lists no {STORE_FILE}")));
    }
    for (name, want) in &manifest.files {
        if !(name == STORE_FILE || SHARED_FILES.contains(&name.as_str())) {
            return Err(bad(src, format!("{BACKUP_FILE} lists '{name}', which is not a catalog file")));
        }
        let file = src.join(name);
        let bytes = std::fs::metadata(&file).map(|m| m.len()).map_err(|_| bad(src, format!("{name} is missing")))?;
        if bytes != want.bytes || crate::util::sha256_file(&file).map_err(io(&file))? != want.sha256 {
            return Err(bad(src, format!("{name} differs from what {BACKUP_FILE} recorded (damaged or changed since the backup)")));
        }
    }
    Ok(manifest)
}

/// Copies a verified backup's files into a new folder in `parent` (restore
/// reads that copy, so the backup itself is never written to, not even by
/// a schema upgrade).
pub fn stage(src: &Path, manifest: &BackupManifest, parent: &Path) -> Result<tempfile::TempDir, CatalogError> {
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staged = tempfile::Builder::new().prefix(".knockoff-restore").tempdir_in(parent).map_err(io(parent))?;
    for name in manifest.files.keys() {
        std::fs::copy(src.join(name), staged.path().join(name)).map_err(io(staged.path()))?;
    }
    Ok(staged)
}

/// Where restore stages a backup for `to`: beside an index folder (same
/// disk), else the system's temporary folder.
#[must_use]
pub fn staging_parent(to: &Location) -> PathBuf {
    match to {
        Location::Folder(dir) => dir.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        Location::Shared(_) => std::env::temp_dir(),
    }
}
