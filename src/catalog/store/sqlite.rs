//! The embedded record store: one `SQLite` file (WAL) in the index folder,
//! one writer connection and one read-only connection whose reads never wait
//! for the writer. Shared files (projection, calibration) are files in the
//! same folder, replaced atomically.
//!
//! ```
//! use knockoff::catalog::store::{schema, sqlite::SqliteStore, Dialect};
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path()).unwrap();
//! assert_eq!(schema::version(Dialect::Sqlite), 11);
//! assert_eq!(store.as_dyn().meta("schema_version").unwrap().as_deref(), Some("11"));
//! assert_eq!(
//!     store.tables().unwrap(),
//!     ["case_audit", "case_links", "case_photos", "cases", "copy_features", "embeddings", "events", "idempotency", "images", "jobs", "meta", "products", "thumbnails",
//!      "webhook_deliveries", "webhook_targets"]
//! );
//! assert_eq!(
//!     store.columns("jobs").unwrap(),
//!     ["id", "status", "created_at", "updated_at", "format", "source", "counts", "errors", "message", "crashes", "in_flight",
//!      "quarantined", "owner", "lease_ms"]
//! );
//! ```

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::sql::SqliteTx;
use super::{Dialect, RecordStore, SqlError, Tx, TxResult};
use crate::catalog::files::{INDEX_FILES, STORE_FILE};
use crate::catalog::CatalogError;

pub struct SqliteStore {
    dir: PathBuf,
    path: PathBuf,
    // The reader is closed first: the last connection to close folds the WAL
    // into the store file, and a read-only one cannot (see `Drop`).
    reader: Mutex<Connection>,
    writer: Mutex<Connection>,
}

/// Whether `dir` holds index files other than the store (a vector dump, a projection, a calibration).
fn index_content_beside(dir: &Path) -> bool {
    INDEX_FILES.iter().any(|n| dir.join(n).exists())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, checks its integrity and migrates it.
    pub fn open(dir: &Path) -> Result<SqliteStore, CatalogError> {
        std::fs::create_dir_all(dir).map_err(|error| CatalogError::Io { path: dir.into(), error })?;
        let path = dir.join(STORE_FILE);
        let mut writer = open_writer(dir, &path)?;
        in_transaction(&mut writer, &mut |tx| super::schema::migrate(tx)).map_err(|e| CatalogError::store(&path, e))?;
        // After the migrations: a step may rebuild a table others refer to.
        writer.execute_batch("PRAGMA foreign_keys=ON;").map_err(|e| CatalogError::store(&path, e))?;
        let reader = open_reader(&path)?;
        Ok(SqliteStore { dir: dir.into(), path, writer: Mutex::new(writer), reader: Mutex::new(reader) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Folds the write-ahead log into the store file and empties it, so that
    /// the store file alone holds everything committed (a plain copy of it
    /// is then complete). Readers may go on meanwhile.
    pub fn checkpoint(&self) -> Result<(), CatalogError> {
        let conn = self.writer.lock();
        let (busy, _, _): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(|e| self.err(e))?;
        if busy != 0 {
            tracing::debug!("checkpoint of {} blocked by a reader; the WAL is folded in later", self.path.display());
        }
        Ok(())
    }

    /// The store's tables, sorted by name.
    pub fn tables(&self) -> Result<Vec<String>, CatalogError> {
        self.as_dyn().read(|tx| {
            tx.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name", &[], |r| r.string(0))
        })
    }

    /// A table's columns, in order.
    pub fn columns(&self, table: &str) -> Result<Vec<String>, CatalogError> {
        self.as_dyn().read(|tx| tx.query("SELECT name FROM pragma_table_info($1) ORDER BY cid", super::args![table], |r| r.string(0)))
    }

    fn err(&self, e: impl std::fmt::Display) -> CatalogError {
        CatalogError::store(&self.path, e)
    }
}

/// The writer connection, after checking that an existing file is a
/// knockoff store (before anything writes to it: switching to WAL rewrites
/// the header) and that it is intact.
fn open_writer(dir: &Path, path: &Path) -> Result<Connection, CatalogError> {
    let corrupt = |e: &dyn std::fmt::Display| CatalogError::Corrupt { path: path.into(), detail: e.to_string() };
    let existing = std::fs::metadata(path).map(|m| m.len()).ok();
    let wal_bytes = std::fs::metadata(dir.join(format!("{STORE_FILE}-wal"))).map_or(0, |m| m.len());
    if existing == Some(0) && wal_bytes == 0 && index_content_beside(dir) {
        return Err(corrupt(&"the file is empty although the folder holds an index (vectors, projection or calibration)"));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)
        .map_err(|e| CatalogError::store(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|e| CatalogError::store(path, e))?;
    let version: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).ok();
    if existing.is_some_and(|n| n > 0) && version.is_none() {
        return Err(corrupt(&"not a knockoff catalog store (no schema version); refusing to turn it into one"));
    }
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| corrupt(&e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(CatalogError::store(path, format!("could not enable WAL (journal_mode={mode})")));
    }
    // Foreign keys go on after the migrations (see `SqliteStore::open`).
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;").map_err(|e| corrupt(&e))?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| corrupt(&e))?;
    if check != "ok" {
        return Err(corrupt(&check));
    }
    Ok(conn)
}

/// Runs `f` in one immediate (writing) transaction on `conn`.
fn in_transaction(conn: &mut Connection, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), SqlError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    f(&mut SqliteTx(&tx))?;
    Ok(tx.commit()?)
}

/// A read-only connection: under WAL its reads see everything committed
/// before each statement and never wait for the writer.
fn open_reader(path: &Path) -> Result<Connection, CatalogError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| CatalogError::store(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|e| CatalogError::store(path, e))?;
    Ok(conn)
}

impl RecordStore for SqliteStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn read_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError> {
        let conn = self.reader.lock();
        f(&mut SqliteTx(&conn)).map_err(|e| self.err(e))
    }

    fn snapshot_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError> {
        // A connection of its own, so that lookups' reads do not wait for it.
        let mut conn = open_reader(&self.path)?;
        let mut run = |conn: &mut Connection| -> Result<(), SqlError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            f(&mut SqliteTx(&tx))?;
            Ok(tx.commit()?)
        };
        run(&mut conn).map_err(|e| self.err(e))
    }

    fn write_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError> {
        in_transaction(&mut self.writer.lock(), f).map_err(|e| self.err(e))
    }

    fn file(&self, name: &str) -> Result<Option<String>, CatalogError> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(CatalogError::Io { path, error }),
        }
    }

    fn put_file(&self, name: &str, content: Option<&str>) -> Result<(), CatalogError> {
        let path = self.dir.join(name);
        let done = match content {
            Some(text) => crate::util::write_atomic(&path, text.as_bytes()),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        done.map_err(|error| CatalogError::Io { path, error })
    }

    fn as_dyn(&self) -> &dyn RecordStore {
        self
    }
}

/// The record operations (`meta`, `counts`, `add_images`, …) are written once on `dyn RecordStore`.
impl std::ops::Deref for SqliteStore {
    type Target = dyn RecordStore;
    fn deref(&self) -> &(dyn RecordStore + 'static) {
        self
    }
}

/// Closing the store leaves it whole in its file: a process that exits
/// after a command (or `serve` after SIGTERM) leaves no data only in the WAL.
impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!("closing the store: {e}");
        }
    }
}
