//! `SQLite` store (WAL): the source of truth for products, images, embeddings
//! and indexing jobs.
//!
//! Schema (version 4; the example below is a doctest, so this list cannot drift):
//! - `meta(key, value)`: `schema_version`, `generation` (bumped by every
//!   committed change to the searchable set), model, fingerprint, index settings.
//! - `products(id, product_id UNIQUE, label, brand, name, category, attributes, created_at, updated_at, deleted)`
//! - `images(id, product, source, sha256, width, height, added_at, deleted)`;
//!   a deleted image is a tombstone until compaction purges it.
//! - `embeddings(image, model, vector)`: little-endian `f32` blobs.
//! - `thumbnails(image, jpeg)`: at most 256 px, for the web page and API (v2).
//! - `jobs(id, status, created_at, updated_at, format, source, counts, errors, message, crashes, in_flight, quarantined)`:
//!   indexing jobs submitted over HTTP, with their manifest (v2); `crashes` counts
//!   resumes after the process died mid-job, `in_flight` names the item a resumed
//!   job is working on, so an item that crashes the process is quarantined
//!   (`quarantined`: a JSON list of those items, never retried) (v3).
//! - `copy_features(image, data)`: the image's copy-detection features
//!   (`embed::local`, under 6 KB), model-independent (v4).
//!
//! ```
//! use knockoff::catalog::store::{Store, SCHEMA_VERSION};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//! assert_eq!(SCHEMA_VERSION, 4);
//! assert_eq!(store.meta("schema_version").unwrap().as_deref(), Some("4"));
//! assert_eq!(
//!     store.tables().unwrap(),
//!     ["copy_features", "embeddings", "images", "jobs", "meta", "products", "thumbnails"]
//! );
//! assert_eq!(
//!     store.columns("jobs").unwrap(),
//!     ["id", "status", "created_at", "updated_at", "format", "source", "counts", "errors", "message", "crashes", "in_flight",
//!      "quarantined"]
//! );
//! ```

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{CatalogError, Label, Product};

pub const SCHEMA_VERSION: i64 = 4;
pub const STORE_FILE: &str = "catalog.sqlite3";

const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        product_id TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL CHECK (label IN ('authentic', 'counterfeit')),
        brand TEXT, name TEXT, category TEXT,
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0);
     CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        product INTEGER NOT NULL REFERENCES products(id),
        source TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL,
        added_at TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0);
     CREATE UNIQUE INDEX images_live_sha ON images(product, sha256) WHERE deleted = 0;
     CREATE INDEX images_product ON images(product);
     CREATE TABLE embeddings (
        image INTEGER NOT NULL REFERENCES images(id),
        model TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (image, model));",
    // v2: thumbnails for the web page and API; persistent indexing jobs.
    "CREATE TABLE thumbnails (image INTEGER PRIMARY KEY REFERENCES images(id), jpeg BLOB NOT NULL);
     CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        format TEXT NOT NULL, source TEXT NOT NULL,
        counts TEXT NOT NULL DEFAULT '{}', errors TEXT NOT NULL DEFAULT '[]', message TEXT);",
    // v3: poison-item quarantine for jobs: how often a job was resumed after a
    // crash, and the item in flight (recorded while a resumed job runs carefully).
    "ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE jobs ADD COLUMN in_flight TEXT;
     ALTER TABLE jobs ADD COLUMN quarantined TEXT NOT NULL DEFAULT '[]';",
    // v4: copy-detection features per image (images indexed before have none).
    "CREATE TABLE copy_features (image INTEGER PRIMARY KEY REFERENCES images(id), data BLOB NOT NULL);",
];

/// An image to add, with its embedding for the index's model.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub product: Product,
    pub source: String,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub embedding: Vec<f32>,
    /// A small JPEG for display.
    pub thumbnail: Option<Vec<u8>>,
    /// Copy-detection features (`embed::local::LocalFeatures::to_bytes`).
    pub copy_features: Option<Vec<u8>>,
}

/// A stored image record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageRecord {
    pub id: i64,
    pub product_id: String,
    pub source: String,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub added_at: String,
    pub deleted: bool,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Whether `dir` holds index files other than the store (a vector dump, a projection, a calibration).
fn index_content_beside(dir: &Path) -> bool {
    ["vectors", "projection.json", "calibration.json"].iter().any(|n| dir.join(n).exists())
}

fn now() -> String {
    crate::util::now_rfc3339()
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, checks its integrity and migrates it.
    pub fn open(dir: &Path) -> Result<Store, CatalogError> {
        std::fs::create_dir_all(dir).map_err(|error| CatalogError::Io { path: dir.into(), error })?;
        let path = dir.join(STORE_FILE);
        let corrupt = |e: &dyn std::fmt::Display| CatalogError::Corrupt { path: path.clone(), detail: e.to_string() };
        let existing = std::fs::metadata(&path).map(|m| m.len()).ok();
        let wal_bytes = std::fs::metadata(dir.join(format!("{STORE_FILE}-wal"))).map_or(0, |m| m.len());
        if existing == Some(0) && wal_bytes == 0 && index_content_beside(dir) {
            return Err(corrupt(&"the file is empty although the folder holds an index (vectors, projection or calibration)"));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)
            .map_err(|e| CatalogError::store(&path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|e| CatalogError::store(&path, e))?;
        // Before anything writes to it (switching to WAL rewrites the header):
        // an existing file must already be a knockoff store.
        let version: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).ok();
        if existing.is_some_and(|n| n > 0) && version.is_none() {
            return Err(corrupt(&"not a knockoff catalog store (no schema version); refusing to turn it into one"));
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| corrupt(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CatalogError::store(&path, format!("could not enable WAL (journal_mode={mode})")));
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;").map_err(|e| corrupt(&e))?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| corrupt(&e))?;
        if check != "ok" {
            return Err(corrupt(&check));
        }
        let mut store = Store { conn, path };
        store.migrate()?;
        Ok(store)
    }

    /// A second, read-only connection to the store [`Store::open`] opened in
    /// `dir`: under WAL its reads never wait for the writer (a long write
    /// transaction, or a writer holding the catalog's store lock), and see
    /// everything committed before each query starts.
    pub fn open_read_only(dir: &Path) -> Result<Store, CatalogError> {
        let path = dir.join(STORE_FILE);
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| CatalogError::store(&path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(|e| CatalogError::store(&path, e))?;
        Ok(Store { conn, path })
    }

    /// Highest image id ever kept (deleted images included; 0 when none).
    pub fn max_image_id(&self) -> Result<i64, CatalogError> {
        self.conn.query_row("SELECT COALESCE(MAX(id), 0) FROM images", [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// Stored vectors of `model` with image id up to `max_id` (deleted images
    /// included: their points stay in the graph until compaction purges both).
    pub fn count_vectors_upto(&self, model: &str, max_id: i64) -> Result<usize, CatalogError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM embeddings WHERE model = ?1 AND image <= ?2", params![model, max_id], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's tables, sorted by name.
    pub fn tables(&self) -> Result<Vec<String>, CatalogError> {
        let mut st = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// A table's columns, in order.
    pub fn columns(&self, table: &str) -> Result<Vec<String>, CatalogError> {
        let mut st = self.conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid").map_err(|e| self.err(e))?;
        let rows = st.query_map([table], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> CatalogError {
        CatalogError::store(&self.path, e)
    }

    fn migrate(&mut self) -> Result<(), CatalogError> {
        self.conn.execute_batch("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);").map_err(|e| self.err(e))?;
        let version: i64 = self.meta("schema_version")?.map_or(0, |v| v.parse().unwrap_or(-1));
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(self.err(format!("schema version {version} is newer than this knockoff understands ({SCHEMA_VERSION})")));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(|e| CatalogError::store(&self.path, e))?;
            tx.execute_batch(sql).map_err(|e| CatalogError::store(&self.path, e))?;
            tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?1)", [(i + 1).to_string()])
                .map_err(|e| CatalogError::store(&self.path, e))?;
            tx.commit().map_err(|e| CatalogError::store(&self.path, e))?;
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, CatalogError> {
        self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(|e| self.err(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), CatalogError> {
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)", [key, value]).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Counter bumped by every committed change to the searchable set.
    pub fn generation(&self) -> Result<u64, CatalogError> {
        Ok(self.meta("generation")?.and_then(|g| g.parse().ok()).unwrap_or(0))
    }

    fn bump_generation(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('generation', '1')
             ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            [],
        )?;
        Ok(())
    }

    fn upsert_product_tx(tx: &rusqlite::Transaction<'_>, p: &Product, ts: &str) -> rusqlite::Result<i64> {
        let attrs = serde_json::Value::Object(p.attributes.clone()).to_string();
        tx.execute(
            "INSERT INTO products(product_id, label, brand, name, category, attributes, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT(product_id) DO UPDATE SET label = excluded.label,
                brand = COALESCE(excluded.brand, brand), name = COALESCE(excluded.name, name),
                category = COALESCE(excluded.category, category),
                attributes = CASE WHEN excluded.attributes = '{}' THEN attributes ELSE excluded.attributes END,
                updated_at = excluded.updated_at, deleted = 0",
            params![p.product_id, p.label.as_str(), p.brand, p.name, p.category, attrs, ts],
        )?;
        tx.query_row("SELECT id FROM products WHERE product_id = ?1", [&p.product_id], |r| r.get(0))
    }

    /// Creates or updates a product's metadata (empty fields keep their old value).
    pub fn upsert_product(&mut self, p: &Product) -> Result<(), CatalogError> {
        let ts = now();
        let tx = self.conn.transaction().map_err(|e| CatalogError::store(&self.path, e))?;
        Self::upsert_product_tx(&tx, p, &ts).map_err(|e| CatalogError::store(&self.path, e))?;
        Self::bump_generation(&tx).map_err(|e| CatalogError::store(&self.path, e))?;
        tx.commit().map_err(|e| CatalogError::store(&self.path, e))
    }

    /// Adds images (and their products) in one transaction. Returns, per input,
    /// `Some((image id, product row id))` or `None` when that product already
    /// has a live image with the same bytes (a re-run skips it).
    pub fn add_images(&mut self, model: &str, items: &[NewImage]) -> Result<Vec<Option<(i64, i64)>>, CatalogError> {
        let ts = now();
        let path = self.path.clone();
        let e = |e: rusqlite::Error| CatalogError::store(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            let prod = Self::upsert_product_tx(&tx, &it.product, &ts).map_err(e)?;
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO images(product, source, sha256, width, height, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![prod, it.source, it.sha256, it.width, it.height, ts],
                )
                .map_err(e)?;
            if inserted == 0 {
                out.push(None);
                continue;
            }
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO embeddings(image, model, vector) VALUES (?1, ?2, ?3)",
                params![id, model, crate::util::f32s_to_le_bytes(&it.embedding)],
            )
            .map_err(e)?;
            if let Some(t) = &it.thumbnail {
                tx.execute("INSERT INTO thumbnails(image, jpeg) VALUES (?1, ?2)", params![id, t]).map_err(e)?;
            }
            if let Some(f) = &it.copy_features {
                tx.execute("INSERT INTO copy_features(image, data) VALUES (?1, ?2)", params![id, f]).map_err(e)?;
            }
            out.push(Some((id, prod)));
        }
        Self::bump_generation(&tx).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(out)
    }

    /// All live (`product_id`, sha256) pairs, to skip what is already indexed.
    pub fn live_hashes(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        let mut st = self
            .conn
            .prepare("SELECT p.product_id, i.sha256 FROM images i JOIN products p ON p.id = i.product WHERE i.deleted = 0")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Live (`product_id`, source) pairs: lets a resumed run skip items without fetching them.
    pub fn live_sources(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        let mut st = self
            .conn
            .prepare("SELECT p.product_id, i.source FROM images i JOIN products p ON p.id = i.product WHERE i.deleted = 0")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Live images per product.
    pub fn image_counts(&self) -> Result<std::collections::HashMap<String, usize>, CatalogError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.product_id, COUNT(*) FROM images i JOIN products p ON p.id = i.product WHERE i.deleted = 0 GROUP BY p.product_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize))).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The copy-detection features of every live image that has them.
    pub fn copy_features(&self) -> Result<Vec<(i64, Vec<u8>)>, CatalogError> {
        let mut st = self
            .conn
            .prepare("SELECT c.image, c.data FROM copy_features c JOIN images i ON i.id = c.image WHERE i.deleted = 0")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Stores (or replaces) the copy-detection features of images, in one transaction.
    pub fn put_copy_features(&mut self, features: &[(i64, Vec<u8>)]) -> Result<(), CatalogError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| CatalogError::store(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        for (id, data) in features {
            tx.execute("INSERT OR REPLACE INTO copy_features(image, data) VALUES (?1, ?2)", params![id, data]).map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    /// The thumbnail of a live image.
    pub fn thumbnail(&self, id: i64) -> Result<Option<Vec<u8>>, CatalogError> {
        self.conn
            .query_row("SELECT t.jpeg FROM thumbnails t JOIN images i ON i.id = t.image WHERE t.image = ?1 AND i.deleted = 0", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn create_job(&self, id: &str, format: &str, source: &str) -> Result<(), CatalogError> {
        let queued = JobStatus::Queued.as_str();
        let ts = now();
        self.conn
            .execute(
                "INSERT INTO jobs(id, status, created_at, updated_at, format, source) VALUES (?1, ?5, ?2, ?2, ?3, ?4)",
                params![id, ts, format, source, queued],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn update_job(&self, id: &str, status: JobStatus, counts: &str, errors: &str, message: Option<&str>) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "UPDATE jobs SET status = ?2, counts = ?3, errors = ?4, message = ?5, updated_at = ?6 WHERE id = ?1",
                params![id, status.as_str(), counts, errors, message, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRow>, CatalogError> {
        self.conn
            .query_row(
                "SELECT id, status, created_at, updated_at, format, source, counts, errors, message, crashes, in_flight, quarantined FROM jobs WHERE id = ?1",
                [id],
                |r| {
                    let status: String = r.get(1)?;
                    Ok(JobRow {
                        id: r.get(0)?,
                        status: status
                            .parse()
                            .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into()))?,
                        created_at: r.get(2)?,
                        updated_at: r.get(3)?,
                        format: r.get(4)?,
                        source: r.get(5)?,
                        counts: r.get(6)?,
                        errors: r.get(7)?,
                        message: r.get(8)?,
                        crashes: r.get(9)?,
                        in_flight: r.get(10)?,
                        quarantined: r.get(11)?,
                        runner: None,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records the item a job is about to work on (`None`: between items).
    pub fn set_job_in_flight(&self, id: &str, item: Option<&str>) -> Result<(), CatalogError> {
        self.conn.execute("UPDATE jobs SET in_flight = ?2 WHERE id = ?1", params![id, item]).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Moves the job's in-flight item to its quarantine list.
    pub fn quarantine_in_flight(&self, id: &str) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "UPDATE jobs SET quarantined = json_insert(quarantined, '$[#]', in_flight), in_flight = NULL
                 WHERE id = ?1 AND in_flight IS NOT NULL",
                [id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Counts one more crash for every job that was running when the process
    /// died and queues it again (called once at start-up, before jobs are resumed).
    pub fn count_job_crashes(&self) -> Result<usize, CatalogError> {
        self.conn
            .execute("UPDATE jobs SET crashes = crashes + 1, status = 'queued' WHERE status = ?1", [JobStatus::Running.as_str()])
            .map_err(|e| self.err(e))
    }

    /// Marks the oldest queued job running and returns its id.
    pub fn claim_job(&self) -> Result<Option<String>, CatalogError> {
        self.conn
            .query_row(
                "UPDATE jobs SET status = 'running' WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1)
                 RETURNING id",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Jobs that were queued or running when the service stopped.
    pub fn unfinished_jobs(&self) -> Result<Vec<String>, CatalogError> {
        let mut st =
            self.conn.prepare("SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at").map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    fn product_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
        let label: String = r.get(1)?;
        let attrs: String = r.get(5)?;
        Ok(Product {
            product_id: r.get(0)?,
            label: label.parse().unwrap_or(Label::Authentic),
            brand: r.get(2)?,
            name: r.get(3)?,
            category: r.get(4)?,
            attributes: serde_json::from_str(&attrs).unwrap_or_default(),
        })
    }

    pub fn product(&self, product_id: &str) -> Result<Option<Product>, CatalogError> {
        self.conn
            .query_row(
                "SELECT product_id, label, brand, name, category, attributes FROM products WHERE product_id = ?1 AND deleted = 0",
                [product_id],
                Self::product_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// One live product with its row id.
    pub fn product_row(&self, product_id: &str) -> Result<Option<(i64, Product)>, CatalogError> {
        self.conn
            .query_row(
                "SELECT product_id, label, brand, name, category, attributes, id FROM products WHERE product_id = ?1 AND deleted = 0",
                [product_id],
                |r| Ok((r.get(6)?, Self::product_from_row(r)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every product, keyed by its row id.
    pub fn products(&self) -> Result<Vec<(i64, Product)>, CatalogError> {
        let mut st =
            self.conn.prepare("SELECT product_id, label, brand, name, category, attributes, id FROM products").map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok((r.get(6)?, Self::product_from_row(r)?))).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// (image id, product row id, deleted) for every image.
    pub fn image_owners(&self) -> Result<Vec<(i64, i64, bool)>, CatalogError> {
        let mut st = self.conn.prepare("SELECT id, product, deleted FROM images").map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn images_of(&self, product_id: &str) -> Result<Vec<ImageRecord>, CatalogError> {
        self.query_images("WHERE p.product_id = ?1 AND i.deleted = 0 ORDER BY i.id", params![product_id])
    }

    pub fn image(&self, id: i64) -> Result<Option<ImageRecord>, CatalogError> {
        Ok(self.query_images("WHERE i.id = ?1", params![id])?.pop())
    }

    fn query_images(&self, clause: &str, p: impl rusqlite::Params) -> Result<Vec<ImageRecord>, CatalogError> {
        let sql = format!(
            "SELECT i.id, p.product_id, i.source, i.sha256, i.width, i.height, i.added_at, i.deleted
             FROM images i JOIN products p ON p.id = i.product {clause}"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(p, |r| {
                Ok(ImageRecord {
                    id: r.get(0)?,
                    product_id: r.get(1)?,
                    source: r.get(2)?,
                    sha256: r.get(3)?,
                    width: r.get(4)?,
                    height: r.get(5)?,
                    added_at: r.get(6)?,
                    deleted: r.get::<_, i64>(7)? != 0,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Live embeddings of `model` with image id greater than `after`, in id order.
    pub fn live_vectors_after(&self, model: &str, after: i64) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        self.live_vectors("e.image > ?2 ORDER BY e.image", params![model, after])
    }

    /// Live vectors of `model` ordered by their images' source (file name or
    /// URL), then id: an order that does not depend on how indexing was
    /// scheduled or resumed.
    pub fn live_vectors_by_source(&self, model: &str) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        self.live_vectors("1 ORDER BY i.source, e.image", params![model])
    }

    /// Live `(image, vector)` rows of model `?1` where `rest` (a condition and its order) holds.
    fn live_vectors(&self, rest: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        let sql = format!(
            "SELECT e.image, e.vector FROM embeddings e JOIN images i ON i.id = e.image WHERE e.model = ?1 AND i.deleted = 0 AND {rest}"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows =
            st.query_map(args, |r| Ok((r.get(0)?, crate::util::f32s_from_le_bytes(&r.get::<_, Vec<u8>>(1)?)))).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Marks the product and all its images deleted. Returns the image ids tombstoned.
    pub fn delete_product(&mut self, product_id: &str) -> Result<Vec<i64>, CatalogError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| CatalogError::store(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        let prod: Option<i64> = tx
            .query_row("SELECT id FROM products WHERE product_id = ?1 AND deleted = 0", [product_id], |r| r.get(0))
            .optional()
            .map_err(e)?;
        let Some(prod) = prod else { return Err(CatalogError::UnknownProduct(product_id.into())) };
        let ids: Vec<i64> = {
            let mut st = tx.prepare("SELECT id FROM images WHERE product = ?1 AND deleted = 0").map_err(e)?;
            let ids = st.query_map([prod], |r| r.get(0)).map_err(e)?.collect::<Result<_, _>>().map_err(e)?;
            ids
        };
        tx.execute("UPDATE images SET deleted = 1 WHERE product = ?1", [prod]).map_err(e)?;
        tx.execute("UPDATE products SET deleted = 1 WHERE id = ?1", [prod]).map_err(e)?;
        Self::bump_generation(&tx).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(ids)
    }

    pub fn delete_image(&mut self, id: i64) -> Result<(), CatalogError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| CatalogError::store(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        let n = tx.execute("UPDATE images SET deleted = 1 WHERE id = ?1 AND deleted = 0", [id]).map_err(e)?;
        if n == 0 {
            return Err(CatalogError::UnknownImage(id));
        }
        Self::bump_generation(&tx).map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Removes tombstoned images (and products left without images) for good.
    pub fn purge_deleted(&mut self) -> Result<usize, CatalogError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| CatalogError::store(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute("DELETE FROM embeddings WHERE image IN (SELECT id FROM images WHERE deleted = 1)", []).map_err(e)?;
        tx.execute("DELETE FROM thumbnails WHERE image IN (SELECT id FROM images WHERE deleted = 1)", []).map_err(e)?;
        tx.execute("DELETE FROM copy_features WHERE image IN (SELECT id FROM images WHERE deleted = 1)", []).map_err(e)?;
        let n = tx.execute("DELETE FROM images WHERE deleted = 1", []).map_err(e)?;
        tx.execute(
            "DELETE FROM products WHERE deleted = 1
             AND NOT EXISTS (SELECT 1 FROM images WHERE images.product = products.id)",
            [],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(n)
    }

    /// Every live product with its row id and timestamps (for `migrate`).
    pub fn export_products(&self) -> Result<Vec<super::transfer::ProductRow>, CatalogError> {
        let mut st = self
            .conn
            .prepare("SELECT product_id, label, brand, name, category, attributes, id, created_at, updated_at FROM products WHERE deleted = 0 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(super::transfer::ProductRow {
                    row: r.get(6)?,
                    product: Self::product_from_row(r)?,
                    created_at: r.get(7)?,
                    updated_at: r.get(8)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Live images after `after` (by id), at most `limit`, with everything stored for them (for `migrate`).
    pub fn export_images(&self, model: &str, after: i64, limit: i64) -> Result<Vec<super::transfer::ImageRow>, CatalogError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT i.id, i.product, i.source, i.sha256, i.width, i.height, i.added_at, e.vector, t.jpeg, f.data
                 FROM images i JOIN embeddings e ON e.image = i.id AND e.model = ?1
                 LEFT JOIN thumbnails t ON t.image = i.id LEFT JOIN copy_features f ON f.image = i.id
                 WHERE i.deleted = 0 AND i.id > ?2 ORDER BY i.id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![model, after, limit], |r| {
                Ok(super::transfer::ImageRow {
                    id: r.get(0)?,
                    product_row: r.get(1)?,
                    source: r.get(2)?,
                    sha256: r.get(3)?,
                    width: r.get(4)?,
                    height: r.get(5)?,
                    added_at: r.get(6)?,
                    vector: r.get(7)?,
                    thumbnail: r.get(8)?,
                    copy_features: r.get(9)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Writes products and images with their ids in one transaction; rows
    /// already there are kept (a resumed migration skips them).
    pub fn import(
        &mut self,
        model: &str,
        products: &[super::transfer::ProductRow],
        images: &[super::transfer::ImageRow],
    ) -> Result<(), CatalogError> {
        let path = self.path.clone();
        let e = |e: rusqlite::Error| CatalogError::store(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        for p in products {
            let attrs = serde_json::Value::Object(p.product.attributes.clone()).to_string();
            let pr = &p.product;
            tx.execute(
                "INSERT OR IGNORE INTO products(id, product_id, label, brand, name, category, attributes, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![p.row, pr.product_id, pr.label.as_str(), pr.brand, pr.name, pr.category, attrs, p.created_at, p.updated_at],
            )
            .map_err(e)?;
        }
        for i in images {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO images(id, product, source, sha256, width, height, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![i.id, i.product_row, i.source, i.sha256, i.width, i.height, i.added_at],
                )
                .map_err(e)?;
            if n == 0 {
                continue;
            }
            tx.execute("INSERT INTO embeddings(image, model, vector) VALUES (?1, ?2, ?3)", params![i.id, model, i.vector]).map_err(e)?;
            if let Some(t) = &i.thumbnail {
                tx.execute("INSERT INTO thumbnails(image, jpeg) VALUES (?1, ?2)", params![i.id, t]).map_err(e)?;
            }
            if let Some(f) = &i.copy_features {
                tx.execute("INSERT INTO copy_features(image, data) VALUES (?1, ?2)", params![i.id, f]).map_err(e)?;
            }
        }
        Self::bump_generation(&tx).map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Counts: (products, live images, tombstones, per label, per brand).
    pub fn counts(&self) -> Result<StoreCounts, CatalogError> {
        const LIVE: &str = "FROM products p WHERE EXISTS (SELECT 1 FROM images i WHERE i.product = p.id AND i.deleted = 0)";
        let one = |sql: &str| -> Result<i64, CatalogError> { self.conn.query_row(sql, [], |r| r.get(0)).map_err(|e| self.err(e)) };
        let group = |sql: &str| -> Result<Vec<(String, i64)>, CatalogError> {
            let mut st = self.conn.prepare(sql).map_err(|e| self.err(e))?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get(1)?))).map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
        };
        Ok(StoreCounts {
            products: one(&format!("SELECT COUNT(*) {LIVE}"))?,
            images: one("SELECT COUNT(*) FROM images WHERE deleted = 0")?,
            tombstones: one("SELECT COUNT(*) FROM images WHERE deleted = 1")?,
            per_label: group(&format!("SELECT p.label, COUNT(*) {LIVE} GROUP BY p.label ORDER BY p.label"))?,
            per_brand: group(&format!("SELECT p.brand, COUNT(*) {LIVE} GROUP BY p.brand ORDER BY COUNT(*) DESC, p.brand"))?,
        })
    }
}

/// Where an indexing job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [JobStatus::Queued, JobStatus::Running, JobStatus::Done, JobStatus::Failed]
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| format!("unknown job status '{s}'"))
    }
}

/// A stored indexing job (counts and errors as JSON text).
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub status: JobStatus,
    pub created_at: String,
    pub updated_at: String,
    pub format: String,
    pub source: String,
    pub counts: String,
    pub errors: String,
    pub message: Option<String>,
    /// Times the job was resumed after the process died while it ran.
    pub crashes: i64,
    /// The item a resumed job was working on (set only while it runs carefully).
    pub in_flight: Option<String>,
    /// Items that crashed the process (a JSON list of image sources).
    pub quarantined: String,
    /// The replica running or last running it (shared backend only).
    pub runner: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreCounts {
    pub products: i64,
    pub images: i64,
    pub tombstones: i64,
    pub per_label: Vec<(String, i64)>,
    pub per_brand: Vec<(String, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_status_round_trips_through_its_name() {
        for j in [JobStatus::Queued, JobStatus::Running, JobStatus::Done, JobStatus::Failed] {
            assert_eq!(j.as_str().parse::<JobStatus>(), Ok(j));
            assert_eq!(serde_json::to_value(j).unwrap(), j.as_str());
        }
        assert!("paused".parse::<JobStatus>().is_err());
    }
}
