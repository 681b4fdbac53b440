//! PostgreSQL: the shared backend's source of truth for products, images,
//! embeddings, thumbnails, copy features, jobs and shared files (the
//! projection and calibration every replica loads).
//!
//! Every change to products or images takes a number from `change_seq`
//! while holding one advisory lock, so changes commit in number order and a
//! replica that has applied everything up to N only ever needs `seq > N`.
//! `images.vectors_at` names the Milvus collection holding the image's
//! vector (NULL: none yet); reconciliation works from it.

use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, NoTls, Transaction};

use crate::catalog::store::{ImageRecord, JobRow, JobStatus, NewImage, StoreCounts};
use crate::catalog::{CatalogError, Label, Product};

const ENGINE: &str = "PostgreSQL";
const SETTING: &str = "KNOCKOFF_STORE";
/// Serialises writers of `change_seq` (see the module doc).
const WRITE_LOCK: i64 = 0x6b6e_6f63;
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE SEQUENCE IF NOT EXISTS change_seq;
CREATE TABLE IF NOT EXISTS products (
    id BIGSERIAL PRIMARY KEY,
    product_id TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL CHECK (label IN ('authentic', 'counterfeit')),
    brand TEXT, name TEXT, category TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT false,
    seq BIGINT NOT NULL DEFAULT nextval('change_seq'));
CREATE INDEX IF NOT EXISTS products_seq ON products(seq);
CREATE TABLE IF NOT EXISTS images (
    id BIGSERIAL PRIMARY KEY,
    product BIGINT NOT NULL REFERENCES products(id),
    source TEXT NOT NULL, sha256 TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT false,
    deleted_at TIMESTAMPTZ,
    vectors_at TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    seq BIGINT NOT NULL DEFAULT nextval('change_seq'));
CREATE UNIQUE INDEX IF NOT EXISTS images_live_sha ON images(product, sha256) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS images_product ON images(product);
CREATE INDEX IF NOT EXISTS images_seq ON images(seq);
CREATE TABLE IF NOT EXISTS embeddings (
    image BIGINT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    model TEXT NOT NULL, vector BYTEA NOT NULL,
    PRIMARY KEY (image, model));
CREATE TABLE IF NOT EXISTS thumbnails (image BIGINT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, jpeg BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS copy_features (image BIGINT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    format TEXT NOT NULL, source TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}', errors TEXT NOT NULL DEFAULT '[]', message TEXT,
    crashes BIGINT NOT NULL DEFAULT 0, in_flight TEXT, quarantined TEXT NOT NULL DEFAULT '[]',
    owner TEXT, lease_until TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS files (name TEXT PRIMARY KEY, content TEXT NOT NULL, version BIGINT NOT NULL);
";

/// A product or image change since a replica last looked.
pub struct Changes {
    pub products: Vec<(i64, Product, bool)>,
    /// (image id, product row, deleted, copy features).
    pub images: Vec<(i64, i64, bool, Option<Vec<u8>>)>,
    pub upto: i64,
}

/// A PostgreSQL database (`postgres://USER:PASSWORD@HOST:PORT/DB`) and a small pool of connections to it.
pub struct PgStore {
    config: postgres::Config,
    address: String,
    pool: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.address)
    }
}

fn now() -> String {
    crate::util::now_rfc3339()
}

impl PgStore {
    /// Parses the setting, connects, and creates or checks the schema.
    pub fn connect(url: &str) -> Result<PgStore, CatalogError> {
        let mut config: postgres::Config = url.parse().map_err(|e| CatalogError::Invalid {
            field: SETTING,
            detail: format!("not a PostgreSQL URL ({e}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        })?;
        config.connect_timeout(Duration::from_secs(3));
        let address = url::Url::parse(url).ok().map_or_else(
            || "?".into(),
            |u| format!("{}:{}/{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(5432), u.path().trim_start_matches('/')),
        );
        let store = PgStore { config, address, pool: Mutex::new(Vec::new()) };
        store.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            tx.batch_execute(SCHEMA)?;
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO NOTHING",
                &[&SCHEMA_VERSION.to_string()],
            )?;
            tx.commit()
        })?;
        match store.meta("schema_version")?.and_then(|v| v.parse::<i64>().ok()) {
            Some(SCHEMA_VERSION) => Ok(store),
            other => Err(CatalogError::Engine {
                engine: ENGINE,
                detail: format!(
                    "schema version {other:?} in {} is not the one this knockoff understands ({SCHEMA_VERSION})",
                    store.address
                ),
            }),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs `f` on a pooled connection. A connection that failed is dropped;
    /// an engine that does not answer is `Unavailable` (the service's 503).
    pub fn with<T>(&self, f: impl FnMut(&mut Client) -> Result<T, postgres::Error>) -> Result<T, CatalogError> {
        let mut f = f;
        let pooled = self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let mut client = match pooled {
            Some(mut c) if !c.is_closed() => match f(&mut c) {
                // A pooled connection that died (the server restarted, the
                // network dropped it) is replaced once before giving up.
                Err(e) if c.is_closed() || e.is_closed() => {
                    tracing::debug!("PostgreSQL connection lost ({e}); reconnecting");
                    self.config.connect(NoTls).map_err(|e| self.down(&e))?
                }
                other => return self.finish(c, other),
            },
            _ => self.config.connect(NoTls).map_err(|e| self.down(&e))?,
        };
        let result = f(&mut client);
        self.finish(client, result)
    }

    /// Returns a healthy connection to the pool and maps the error.
    fn finish<T>(&self, client: Client, result: Result<T, postgres::Error>) -> Result<T, CatalogError> {
        match result {
            Ok(v) => {
                self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(client);
                Ok(v)
            }
            Err(e) if e.as_db_error().is_some() && !client.is_closed() => {
                self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(client);
                Err(CatalogError::Engine { engine: ENGINE, detail: e.to_string() })
            }
            Err(e) => Err(self.down(&e)),
        }
    }

    /// A connection of its own (not pooled): its session locks end with it.
    pub fn connect_one(&self) -> Result<Client, CatalogError> {
        self.config.connect(NoTls).map_err(|e| self.down(&e))
    }

    /// Runs `f` while holding the session lock `key`, unless another
    /// session holds it (then `None`). The lock ends with the connection.
    pub fn with_session_lock<T>(&self, key: i64, f: impl FnOnce() -> T) -> Result<Option<T>, CatalogError> {
        let mut c = self.connect_one()?;
        let got: bool = c.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).map_err(|e| self.down(&e))?.get(0);
        Ok(got.then(f))
    }

    fn down(&self, e: &postgres::Error) -> CatalogError {
        let detail = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
        CatalogError::Unavailable { engine: ENGINE, setting: SETTING, address: self.address.clone(), detail }
    }

    /// A writing transaction: holds the write lock, so its `change_seq` numbers commit in order.
    fn write<T>(&self, f: impl FnMut(&mut Transaction<'_>) -> Result<T, postgres::Error>) -> Result<T, CatalogError> {
        let mut f = f;
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            let v = f(&mut tx)?;
            tx.commit()?;
            Ok(v)
        })
    }

    /// Is it answering?
    pub fn ping(&self) -> Result<(), CatalogError> {
        self.with(|c| c.simple_query("SELECT 1").map(drop))
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, CatalogError> {
        self.with(|c| Ok(c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?.map(|r| r.get(0))))
    }

    /// Sets `key` unless it is set; returns the value that holds.
    pub fn meta_or_set(&self, key: &str, value: &str) -> Result<String, CatalogError> {
        self.with(|c| {
            c.execute("INSERT INTO meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", &[&key, &value])?;
            Ok(c.query_one("SELECT value FROM meta WHERE key = $1", &[&key])?.get(0))
        })
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .map(drop)
        })
    }

    /// Stores a shared file (a new version); `None` removes it.
    pub fn put_file(&self, name: &str, content: Option<&str>) -> Result<(), CatalogError> {
        self.write(|tx| {
            match content {
                Some(text) => tx.execute(
                    "INSERT INTO files(name, content, version) VALUES ($1, $2, nextval('change_seq'))
                     ON CONFLICT (name) DO UPDATE SET content = excluded.content, version = excluded.version",
                    &[&name, &text],
                )?,
                None => tx.execute("DELETE FROM files WHERE name = $1", &[&name])?,
            };
            Ok(())
        })
    }

    /// Every shared file: (name, version, content).
    pub fn files(&self) -> Result<Vec<(String, i64, String)>, CatalogError> {
        self.with(|c| {
            Ok(c.query("SELECT name, version, content FROM files", &[])?.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
        })
    }

    fn upsert_product_tx(tx: &mut Transaction<'_>, p: &Product, ts: &str) -> Result<i64, postgres::Error> {
        let attrs = serde_json::Value::Object(p.attributes.clone()).to_string();
        let row = tx.query_one(
            "INSERT INTO products(product_id, label, brand, name, category, attributes, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (product_id) DO UPDATE SET label = excluded.label,
                brand = COALESCE(excluded.brand, products.brand), name = COALESCE(excluded.name, products.name),
                category = COALESCE(excluded.category, products.category),
                attributes = CASE WHEN excluded.attributes = '{}' THEN products.attributes ELSE excluded.attributes END,
                updated_at = excluded.updated_at, deleted = false, seq = nextval('change_seq')
             RETURNING id",
            &[&p.product_id, &p.label.as_str(), &p.brand, &p.name, &p.category, &attrs, &ts],
        )?;
        Ok(row.get(0))
    }

    pub fn upsert_product(&self, p: &Product) -> Result<i64, CatalogError> {
        let ts = now();
        self.write(|tx| Self::upsert_product_tx(tx, p, &ts))
    }

    /// Adds images (and their products) in one transaction: per item,
    /// `Some((image id, product row))`, or `None` when the product already
    /// has a live image with the same bytes.
    pub fn add_images(&self, model: &str, items: &[NewImage]) -> Result<Vec<Option<(i64, i64)>>, CatalogError> {
        let ts = now();
        self.write(|tx| {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let prod = Self::upsert_product_tx(tx, &it.product, &ts)?;
                let row = tx.query_opt(
                    "INSERT INTO images(product, source, sha256, width, height, added_at) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (product, sha256) WHERE NOT deleted DO NOTHING RETURNING id",
                    &[&prod, &it.source, &it.sha256, &(it.width as i32), &(it.height as i32), &ts],
                )?;
                let Some(row) = row else {
                    out.push(None);
                    continue;
                };
                let id: i64 = row.get(0);
                let bytes = crate::util::f32s_to_le_bytes(&it.embedding);
                tx.execute("INSERT INTO embeddings(image, model, vector) VALUES ($1, $2, $3)", &[&id, &model, &bytes])?;
                if let Some(t) = &it.thumbnail {
                    tx.execute("INSERT INTO thumbnails(image, jpeg) VALUES ($1, $2)", &[&id, t])?;
                }
                if let Some(f) = &it.copy_features {
                    tx.execute("INSERT INTO copy_features(image, data) VALUES ($1, $2)", &[&id, f])?;
                }
                out.push(Some((id, prod)));
            }
            Ok(out)
        })
    }

    /// Records which collection now holds these images' vectors (`None`: none).
    pub fn set_vectors_at(&self, ids: &[i64], collection: Option<&str>) -> Result<(), CatalogError> {
        self.with(|c| c.execute("UPDATE images SET vectors_at = $2 WHERE id = ANY($1)", &[&ids, &collection]).map(drop))
    }

    /// Changes after `seq` (the first call, with 0, reads everything).
    pub fn changes_since(&self, seq: i64) -> Result<Changes, CatalogError> {
        self.with(|c| {
            let mut tx = c.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
            let products = tx
                .query("SELECT product_id, label, brand, name, category, attributes, id, deleted, seq FROM products WHERE seq > $1", &[&seq])?;
            let images = tx.query(
                "SELECT i.id, i.product, i.deleted, i.seq, c.data FROM images i LEFT JOIN copy_features c ON c.image = i.id AND NOT i.deleted
                 WHERE i.seq > $1",
                &[&seq],
            )?;
            let mut upto = seq;
            let products = products
                .iter()
                .map(|r| {
                    upto = upto.max(r.get(8));
                    (r.get(6), product_from_row(r), r.get(7))
                })
                .collect();
            let images = images
                .iter()
                .map(|r| {
                    upto = upto.max(r.get(3));
                    (r.get(0), r.get(1), r.get(2), r.get(4))
                })
                .collect();
            tx.commit()?;
            Ok(Changes { products, images, upto })
        })
    }

    /// Live vectors of `model`: all (by source then id), or those whose
    /// vector is not in `collection` (by id, at most `limit`) — placed
    /// elsewhere, or not placed by a writer that had a minute to do it.
    pub fn live_vectors(&self, model: &str, missing_from: Option<&str>, limit: i64) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        let rows = self.with(|c| match missing_from {
            Some(coll) => c.query(
                "SELECT e.image, e.vector FROM embeddings e JOIN images i ON i.id = e.image
                 WHERE e.model = $1 AND NOT i.deleted AND i.vectors_at IS DISTINCT FROM $2
                   AND (i.vectors_at IS NOT NULL OR i.created < now() - interval '60 seconds')
                 ORDER BY e.image LIMIT $3",
                &[&model, &coll, &limit],
            ),
            None => c.query(
                "SELECT e.image, e.vector FROM embeddings e JOIN images i ON i.id = e.image
                 WHERE e.model = $1 AND NOT i.deleted ORDER BY i.source, e.image",
                &[&model],
            ),
        })?;
        Ok(rows.iter().map(|r| (r.get(0), crate::util::f32s_from_le_bytes(r.get::<_, &[u8]>(1)))).collect())
    }

    /// The stored vectors of these live images.
    pub fn vectors_of(&self, model: &str, ids: &[i64]) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT e.image, e.vector FROM embeddings e JOIN images i ON i.id = e.image
                 WHERE e.model = $1 AND NOT i.deleted AND e.image = ANY($2) ORDER BY e.image",
                &[&model, &ids],
            )
        })?;
        Ok(rows.iter().map(|r| (r.get(0), crate::util::f32s_from_le_bytes(r.get::<_, &[u8]>(1)))).collect())
    }

    /// Deleted images whose vectors may still be in Milvus.
    pub fn deleted_with_vectors(&self, limit: i64) -> Result<Vec<(i64, String)>, CatalogError> {
        self.with(|c| {
            let rows =
                c.query("SELECT id, vectors_at FROM images WHERE deleted AND vectors_at IS NOT NULL ORDER BY id LIMIT $1", &[&limit])?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Live image ids in `[lo, hi]`, and the highest image id ever (0 when none).
    pub fn live_ids(&self, lo: i64, hi: i64) -> Result<(std::collections::HashSet<i64>, i64), CatalogError> {
        self.with(|c| {
            let ids = c.query("SELECT id FROM images WHERE NOT deleted AND id BETWEEN $1 AND $2", &[&lo, &hi])?;
            let max: i64 = c.query_one("SELECT COALESCE(MAX(id), 0) FROM images", &[])?.get(0);
            Ok((ids.iter().map(|r| r.get(0)).collect(), max))
        })
    }

    fn pairs(&self, sql: &str) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.with(|c| Ok(c.query(sql, &[])?.iter().map(|r| (r.get(0), r.get(1))).collect()))
    }

    pub fn live_hashes(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.pairs("SELECT p.product_id, i.sha256 FROM images i JOIN products p ON p.id = i.product WHERE NOT i.deleted")
    }

    pub fn live_sources(&self) -> Result<std::collections::HashSet<(String, String)>, CatalogError> {
        self.pairs("SELECT p.product_id, i.source FROM images i JOIN products p ON p.id = i.product WHERE NOT i.deleted")
    }

    pub fn image_counts(&self) -> Result<std::collections::HashMap<String, usize>, CatalogError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT p.product_id, COUNT(*) FROM images i JOIN products p ON p.id = i.product WHERE NOT i.deleted GROUP BY p.product_id",
                &[],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as usize)).collect())
        })
    }

    pub fn thumbnail(&self, id: i64) -> Result<Option<Vec<u8>>, CatalogError> {
        self.with(|c| {
            Ok(c.query_opt("SELECT t.jpeg FROM thumbnails t JOIN images i ON i.id = t.image WHERE t.image = $1 AND NOT i.deleted", &[&id])?
                .map(|r| r.get(0)))
        })
    }

    pub fn product(&self, product_id: &str) -> Result<Option<Product>, CatalogError> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT product_id, label, brand, name, category, attributes FROM products WHERE product_id = $1 AND NOT deleted",
                &[&product_id],
            )?
            .map(|r| product_from_row(&r)))
        })
    }

    pub fn images_of(&self, product_id: &str) -> Result<Vec<ImageRecord>, CatalogError> {
        self.query_images("WHERE p.product_id = $1 AND NOT i.deleted ORDER BY i.id", &product_id)
    }

    pub fn image(&self, id: i64) -> Result<Option<ImageRecord>, CatalogError> {
        Ok(self.query_images("WHERE i.id = $1", &id)?.pop())
    }

    fn query_images(&self, clause: &str, arg: &(dyn postgres::types::ToSql + Sync)) -> Result<Vec<ImageRecord>, CatalogError> {
        let sql = format!(
            "SELECT i.id, p.product_id, i.source, i.sha256, i.width, i.height, i.added_at, i.deleted
             FROM images i JOIN products p ON p.id = i.product {clause}"
        );
        self.with(|c| {
            Ok(c.query(&sql, &[arg])?
                .iter()
                .map(|r| ImageRecord {
                    id: r.get(0),
                    product_id: r.get(1),
                    source: r.get(2),
                    sha256: r.get(3),
                    width: r.get::<_, i32>(4) as u32,
                    height: r.get::<_, i32>(5) as u32,
                    added_at: r.get(6),
                    deleted: r.get(7),
                })
                .collect())
        })
    }

    /// Marks the product and its images deleted; returns the image ids.
    pub fn delete_product(&self, product_id: &str) -> Result<Vec<i64>, CatalogError> {
        let found = self.write(|tx| {
            let Some(row) = tx.query_opt("SELECT id FROM products WHERE product_id = $1 AND NOT deleted", &[&product_id])? else {
                return Ok(None);
            };
            let prod: i64 = row.get(0);
            let ids = tx.query(
                "UPDATE images SET deleted = true, deleted_at = now(), seq = nextval('change_seq') WHERE product = $1 AND NOT deleted RETURNING id",
                &[&prod],
            )?;
            tx.execute("UPDATE products SET deleted = true, seq = nextval('change_seq') WHERE id = $1", &[&prod])?;
            Ok(Some(ids.iter().map(|r| r.get(0)).collect()))
        })?;
        found.ok_or_else(|| CatalogError::UnknownProduct(product_id.into()))
    }

    pub fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        let n = self.write(|tx| {
            tx.execute(
                "UPDATE images SET deleted = true, deleted_at = now(), seq = nextval('change_seq') WHERE id = $1 AND NOT deleted",
                &[&id],
            )
        })?;
        if n == 0 {
            return Err(CatalogError::UnknownImage(id));
        }
        Ok(())
    }

    /// Removes tombstones older than `age` whose vectors are gone from Milvus
    /// (every replica has long applied them); returns how many.
    pub fn purge_deleted(&self, age: Duration) -> Result<usize, CatalogError> {
        let secs = age.as_secs_f64();
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM images WHERE deleted AND vectors_at IS NULL AND deleted_at < now() - make_interval(secs => $1)",
                &[&secs],
            )?;
            tx.execute("DELETE FROM products p WHERE deleted AND NOT EXISTS (SELECT 1 FROM images i WHERE i.product = p.id)", &[])?;
            Ok(n as usize)
        })
    }

    pub fn counts(&self) -> Result<StoreCounts, CatalogError> {
        const LIVE: &str = "FROM products p WHERE EXISTS (SELECT 1 FROM images i WHERE i.product = p.id AND NOT i.deleted)";
        self.with(|c| {
            let mut one = |sql: &str| -> Result<i64, postgres::Error> { Ok(c.query_one(sql, &[])?.get(0)) };
            let products = one(&format!("SELECT COUNT(*) {LIVE}"))?;
            let images = one("SELECT COUNT(*) FROM images WHERE NOT deleted")?;
            let tombstones = one("SELECT COUNT(*) FROM images WHERE deleted")?;
            let mut group = |sql: &str| -> Result<Vec<(String, i64)>, postgres::Error> {
                Ok(c.query(sql, &[])?.iter().map(|r| (r.get::<_, Option<String>>(0).unwrap_or_default(), r.get(1))).collect())
            };
            let per_label = group(&format!("SELECT p.label, COUNT(*) {LIVE} GROUP BY p.label ORDER BY p.label"))?;
            let per_brand = group(&format!("SELECT p.brand, COUNT(*) {LIVE} GROUP BY p.brand ORDER BY COUNT(*) DESC, p.brand"))?;
            Ok(StoreCounts { products, images, tombstones, per_label, per_brand })
        })
    }

    // Jobs -------------------------------------------------------------------

    pub fn create_job(&self, id: &str, format: &str, source: &str) -> Result<(), CatalogError> {
        let ts = now();
        self.with(|c| {
            c.execute(
                "INSERT INTO jobs(id, status, created_at, updated_at, format, source) VALUES ($1, 'queued', $2, $2, $3, $4)",
                &[&id, &ts, &format, &source],
            )
            .map(drop)
        })
    }

    /// Records progress; a running job's lease is renewed by it.
    pub fn update_job(
        &self,
        id: &str,
        status: JobStatus,
        counts: &str,
        errors: &str,
        message: Option<&str>,
        lease: Duration,
    ) -> Result<(), CatalogError> {
        let secs = lease.as_secs_f64();
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET status = $2, counts = $3, errors = $4, message = $5, updated_at = $6,
                    lease_until = now() + make_interval(secs => $7) WHERE id = $1",
                &[&id, &status.as_str(), &counts, &errors, &message, &now(), &secs],
            )
            .map(drop)
        })
    }

    /// Renews the lease of a job this replica runs.
    pub fn renew_job(&self, id: &str, owner: &str, lease: Duration) -> Result<(), CatalogError> {
        let secs = lease.as_secs_f64();
        self.with(|c| {
            c.execute("UPDATE jobs SET lease_until = now() + make_interval(secs => $3) WHERE id = $1 AND owner = $2", &[&id, &owner, &secs])
                .map(drop)
        })
    }

    /// Takes the oldest queued job, or a running one whose runner stopped
    /// renewing its lease (that one counts a crash), for `owner`. Replicas
    /// skip rows another is claiming, so each job is claimed once.
    pub fn claim_job(&self, owner: &str, lease: Duration) -> Result<Option<String>, CatalogError> {
        let secs = lease.as_secs_f64();
        self.with(|c| {
            let row = c.query_opt(
                "UPDATE jobs SET crashes = crashes + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
                        status = 'running', owner = $1, lease_until = now() + make_interval(secs => $2)
                 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' OR (status = 'running' AND lease_until < now())
                             ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                &[&owner, &secs],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    pub fn job(&self, id: &str) -> Result<Option<(JobRow, Option<String>)>, CatalogError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT id, status, created_at, updated_at, format, source, counts, errors, message, crashes, in_flight, quarantined, owner
                 FROM jobs WHERE id = $1",
                &[&id],
            )?;
            Ok(row.map(|r| {
                let status: String = r.get(1);
                let job = JobRow {
                    id: r.get(0),
                    status: status.parse().unwrap_or(JobStatus::Failed),
                    created_at: r.get(2),
                    updated_at: r.get(3),
                    format: r.get(4),
                    source: r.get(5),
                    counts: r.get(6),
                    errors: r.get(7),
                    message: r.get(8),
                    crashes: r.get(9),
                    in_flight: r.get(10),
                    quarantined: r.get(11),
                    runner: None,
                };
                (job, r.get(12))
            }))
        })
    }

    pub fn set_job_in_flight(&self, id: &str, item: Option<&str>) -> Result<(), CatalogError> {
        self.with(|c| c.execute("UPDATE jobs SET in_flight = $2 WHERE id = $1", &[&id, &item]).map(drop))
    }

    pub fn quarantine_in_flight(&self, id: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET quarantined = (quarantined::jsonb || to_jsonb(in_flight))::text, in_flight = NULL
                 WHERE id = $1 AND in_flight IS NOT NULL",
                &[&id],
            )
            .map(drop)
        })
    }

    // Migration ---------------------------------------------------------------

    /// Every live product with its row id and timestamps.
    pub fn export_products(&self) -> Result<Vec<super::super::transfer::ProductRow>, CatalogError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT product_id, label, brand, name, category, attributes, id, created_at, updated_at FROM products WHERE NOT deleted ORDER BY id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| super::super::transfer::ProductRow { row: r.get(6), product: product_from_row(r), created_at: r.get(7), updated_at: r.get(8) })
                .collect())
        })
    }

    /// Live images after `after` (by id), at most `limit`, with everything stored for them.
    pub fn export_images(&self, model: &str, after: i64, limit: i64) -> Result<Vec<super::super::transfer::ImageRow>, CatalogError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT i.id, i.product, i.source, i.sha256, i.width, i.height, i.added_at, e.vector, t.jpeg, f.data
                 FROM images i JOIN embeddings e ON e.image = i.id AND e.model = $1
                 LEFT JOIN thumbnails t ON t.image = i.id LEFT JOIN copy_features f ON f.image = i.id
                 WHERE NOT i.deleted AND i.id > $2 ORDER BY i.id LIMIT $3",
                &[&model, &after, &limit],
            )?;
            Ok(rows
                .iter()
                .map(|r| super::super::transfer::ImageRow {
                    id: r.get(0),
                    product_row: r.get(1),
                    source: r.get(2),
                    sha256: r.get(3),
                    width: r.get::<_, i32>(4) as u32,
                    height: r.get::<_, i32>(5) as u32,
                    added_at: r.get(6),
                    vector: r.get(7),
                    thumbnail: r.get(8),
                    copy_features: r.get(9),
                })
                .collect())
        })
    }

    /// Writes products and images with their ids (rows already there are kept: a resumed migration skips them).
    pub fn import(
        &self,
        model: &str,
        products: &[super::super::transfer::ProductRow],
        images: &[super::super::transfer::ImageRow],
    ) -> Result<(), CatalogError> {
        self.write(|tx| {
            for p in products {
                let attrs = serde_json::Value::Object(p.product.attributes.clone()).to_string();
                let pr = &p.product;
                tx.execute(
                    "INSERT INTO products(id, product_id, label, brand, name, category, attributes, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                    &[&p.row, &pr.product_id, &pr.label.as_str(), &pr.brand, &pr.name, &pr.category, &attrs, &p.created_at, &p.updated_at],
                )?;
            }
            for i in images {
                let n = tx.execute(
                    "INSERT INTO images(id, product, source, sha256, width, height, added_at, created)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'epoch') ON CONFLICT DO NOTHING",
                    &[&i.id, &i.product_row, &i.source, &i.sha256, &(i.width as i32), &(i.height as i32), &i.added_at],
                )?;
                if n == 0 {
                    continue;
                }
                tx.execute("INSERT INTO embeddings(image, model, vector) VALUES ($1, $2, $3)", &[&i.id, &model, &i.vector])?;
                if let Some(t) = &i.thumbnail {
                    tx.execute("INSERT INTO thumbnails(image, jpeg) VALUES ($1, $2)", &[&i.id, t])?;
                }
                if let Some(f) = &i.copy_features {
                    tx.execute("INSERT INTO copy_features(image, data) VALUES ($1, $2)", &[&i.id, f])?;
                }
            }
            // Ids given explicitly do not move the sequences: new rows must come after them.
            tx.batch_execute(
                "SELECT setval('products_id_seq', GREATEST((SELECT COALESCE(MAX(id), 0) FROM products), 1));
                 SELECT setval('images_id_seq', GREATEST((SELECT COALESCE(MAX(id), 0) FROM images), 1));",
            )?;
            Ok(())
        })
    }
}

fn product_from_row(r: &postgres::Row) -> Product {
    let label: String = r.get(1);
    let attrs: String = r.get(5);
    Product {
        product_id: r.get(0),
        label: label.parse().unwrap_or(Label::Authentic),
        brand: r.get(2),
        name: r.get(3),
        category: r.get(4),
        attributes: serde_json::from_str(&attrs).unwrap_or_default(),
    }
}
