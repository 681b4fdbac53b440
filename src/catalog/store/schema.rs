//! The record store's tables, as migrations: each engine's own first steps
//! (the schema each had before the two shared one interface), then the
//! common steps, written once with [`Dialect::ddl`]'s type words. The
//! `schema_version` meta entry counts the steps applied; all missing steps
//! run in one transaction when a store is opened.
//!
//! Tables (both engines):
//! - `meta(key, value)`: `schema_version`, `generation` (bumped by every
//!   committed change to the searchable set), model, fingerprint, index settings.
//! - `products(id, product_id UNIQUE, label, brand, name, category, attributes, created_at, updated_at, deleted)`
//! - `images(id, product, source, sha256, width, height, added_at, deleted, deleted_at)`;
//!   a deleted image is a tombstone until it is purged.
//! - `embeddings(image, model, vector)`: little-endian `f32` blobs.
//! - `thumbnails(image, jpeg)`: at most 256 px, for the web page, the API and the copy check.
//! - `copy_features(image, data)`: the image's copy-detection features (`embed::local`, under 6 KB).
//! - `jobs(id, status, created_at, updated_at, format, source, counts, errors, message, crashes, in_flight, quarantined, owner, lease_ms)`:
//!   indexing jobs with their manifest; `crashes` counts resumes after the
//!   runner died, `in_flight` names the item a resumed job works on (an item
//!   that crashes the process is `quarantined`), `owner` and `lease_ms` say
//!   who runs it until when.
//! - `case_photos(sha256, bytes, stored_ms, features, thumbnail)`, `cases(…)`, `case_audit(…)`: review cases, see [`super::cases`].
//! - `case_links(id, a, b, kind, p_copy, image_id)` and `cases.cluster`: seller networks, see [`super::clusters`].
//! - `events(…)`, `webhook_targets(…)`, `webhook_deliveries(…)`: the webhook outbox, see [`super::events`].
//! - `idempotency(caller, key, fingerprint, status, headers, body, created_ms)`: see [`super::idempotency`].
//!
//! PostgreSQL adds what replicas need: `seq` on products and images (the
//! change feed), `images.vectors_at` (the Milvus collection holding the
//! vector), `images.created`, and `files(name, content, version)`; `SQLite`
//! keeps shared files as files in the index folder.

use super::{Dialect, SqlError, Tx};

/// `SQLite`'s own steps (the embedded store's schema versions 1–4, then what
/// the common steps assume that it lacked).
const SQLITE: &[&str] = &[
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
    // v2: thumbnails; persistent indexing jobs.
    "CREATE TABLE thumbnails (image INTEGER PRIMARY KEY REFERENCES images(id), jpeg BLOB NOT NULL);
     CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        format TEXT NOT NULL, source TEXT NOT NULL,
        counts TEXT NOT NULL DEFAULT '{}', errors TEXT NOT NULL DEFAULT '[]', message TEXT);",
    // v3: poison-item quarantine for jobs.
    "ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE jobs ADD COLUMN in_flight TEXT;
     ALTER TABLE jobs ADD COLUMN quarantined TEXT NOT NULL DEFAULT '[]';",
    // v4: copy-detection features per image (images indexed before have none).
    "CREATE TABLE copy_features (image INTEGER PRIMARY KEY REFERENCES images(id), data BLOB NOT NULL);",
    // v5: what PostgreSQL's schema already had: a job's runner, a tombstone's time.
    "ALTER TABLE jobs ADD COLUMN owner TEXT;
     ALTER TABLE images ADD COLUMN deleted_at TEXT;",
];

/// PostgreSQL's own step (the shared backend's schema version 1).
const POSTGRES: &[&str] = &["
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
"];

/// A step both engines take: written once, or in each engine's words
/// where only one of them needs it (the other then does nothing).
enum Step {
    Both(&'static str),
    Each { sqlite: &'static str, postgres: &'static str },
}

/// Steps both engines take, in order (a new record kind's tables go here).
const COMMON: &[Step] = &[
    // Job leases on the engine's clock, the same on both (a lapsed lease lets another runner take the job).
    Step::Both("ALTER TABLE jobs ADD COLUMN lease_ms {bigint};"),
    // Image ids are never reused, not even after compaction purged the newest rows (a retried
    // `DELETE /v1/images/{id}` must not hit a newer image): SQLite needs AUTOINCREMENT for that,
    // PostgreSQL's sequences never go back. Foreign keys are enforced only after migrations.
    Step::Each {
        sqlite: "CREATE TABLE images_v (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            product INTEGER NOT NULL REFERENCES products(id),
            source TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            width INTEGER NOT NULL, height INTEGER NOT NULL,
            added_at TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            deleted_at TEXT);
         INSERT INTO images_v(id, product, source, sha256, width, height, added_at, deleted, deleted_at)
            SELECT id, product, source, sha256, width, height, added_at, deleted, deleted_at FROM images;
         DROP TABLE images;
         ALTER TABLE images_v RENAME TO images;
         CREATE UNIQUE INDEX images_live_sha ON images(product, sha256) WHERE deleted = 0;
         CREATE INDEX images_product ON images(product);",
        postgres: "SELECT 1;",
    },
    // Review cases ([`super::cases`]): photos stored once by content, cases with their answer
    // and versioned decision, and the audit trail of decisions and undos.
    Step::Both(
        "CREATE TABLE case_photos (sha256 TEXT PRIMARY KEY, bytes {blob}, stored_ms {bigint} NOT NULL);
         CREATE TABLE cases (
            id {id},
            created_at TEXT NOT NULL,
            photo TEXT NOT NULL REFERENCES case_photos(sha256),
            embedding {blob} NOT NULL,
            model TEXT NOT NULL,
            context TEXT NOT NULL,
            answer TEXT NOT NULL,
            verdict TEXT NOT NULL,
            p_counterfeit {bigint} NOT NULL,
            priority {bigint} NOT NULL,
            brand TEXT, top_product TEXT, seller_id TEXT,
            catalog_generation {bigint} NOT NULL,
            calibration TEXT,
            status TEXT NOT NULL DEFAULT 'open',
            decision TEXT, decision_product TEXT, decision_note TEXT, decided_by TEXT, decided_at TEXT,
            reference_image {bigint},
            version {bigint} NOT NULL DEFAULT 1);
         CREATE INDEX cases_queue ON cases(status, priority, id);
         CREATE INDEX cases_reference ON cases(reference_image);
         CREATE TABLE case_audit (
            id {id},
            case_id {bigint} NOT NULL REFERENCES cases(id),
            at TEXT NOT NULL, actor TEXT, action TEXT NOT NULL, before TEXT, after TEXT);
         CREATE INDEX case_audit_case ON case_audit(case_id);",
    ),
    // Events and webhook deliveries ([`super::events`]): the outbox, written with the change it reports.
    Step::Both(
        "CREATE TABLE events (
            id {id},
            event_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL, subject TEXT, risk {bigint},
            body TEXT NOT NULL,
            created_ms {bigint} NOT NULL);
         CREATE TABLE webhook_targets (name TEXT PRIMARY KEY, cursor {bigint} NOT NULL, disabled_at TEXT, disabled_reason TEXT);
         CREATE TABLE webhook_deliveries (
            id {id},
            event {bigint} NOT NULL REFERENCES events(id),
            target TEXT NOT NULL,
            subject TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts {bigint} NOT NULL DEFAULT 0,
            next_ms {bigint} NOT NULL,
            lease_ms {bigint},
            last_error TEXT,
            delivered_ms {bigint},
            UNIQUE (target, event));
         CREATE INDEX webhook_due ON webhook_deliveries(target, status, next_ms);
         CREATE INDEX webhook_subject ON webhook_deliveries(target, subject, event);",
    ),
    // Idempotency records ([`super::idempotency`]): a POST's key, request fingerprint and response.
    Step::Both(
        "CREATE TABLE idempotency (
            caller TEXT NOT NULL, key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status {bigint}, headers TEXT, body {blob},
            created_ms {bigint} NOT NULL,
            PRIMARY KEY (caller, key));",
    ),
    // Seller networks ([`super::clusters`]): a case's cluster, the counterfeit image it copies,
    // its photo's kept copy features and thumbnail, and the links that joined cases.
    Step::Both(
        "ALTER TABLE case_photos ADD COLUMN features {blob};
         ALTER TABLE case_photos ADD COLUMN thumbnail {blob};
         ALTER TABLE cases ADD COLUMN cluster {bigint};
         ALTER TABLE cases ADD COLUMN copied_image {bigint};
         ALTER TABLE cases ADD COLUMN regions {blob};
         CREATE INDEX cases_cluster ON cases(cluster);
         CREATE INDEX cases_photo ON cases(photo);
         CREATE INDEX cases_copied ON cases(copied_image);
         CREATE TABLE case_links (
            id {id},
            a {bigint} NOT NULL, b {bigint} NOT NULL,
            kind TEXT NOT NULL, p_copy {bigint}, image_id {bigint},
            UNIQUE (a, b));",
    ),
];

/// Every step for `dialect`, in order.
fn steps(dialect: Dialect) -> Vec<String> {
    let own = match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    };
    let common = COMMON.iter().map(|step| match (step, dialect) {
        (Step::Both(sql), _) => dialect.ddl(sql),
        (Step::Each { sqlite, .. }, Dialect::Sqlite) => (*sqlite).to_string(),
        (Step::Each { postgres, .. }, Dialect::Postgres) => (*postgres).to_string(),
    });
    own.iter().map(|s| (*s).to_string()).chain(common).collect()
}

/// The schema version a store of `dialect` is at once migrated.
pub fn version(dialect: Dialect) -> usize {
    steps(dialect).len()
}

/// Brings the store's tables up to date inside `tx` (a write transaction).
/// A store from a newer knockoff is refused.
pub fn migrate(tx: &mut dyn Tx) -> Result<(), SqlError> {
    let steps = steps(tx.dialect());
    tx.batch("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")?;
    let found = tx.query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[], |r| r.string(0))?;
    let version: usize = match found {
        None => 0,
        Some(v) => v.parse().map_err(|_| SqlError::Data(format!("schema version '{v}' is not a number")))?,
    };
    if version > steps.len() {
        return Err(SqlError::Data(format!("schema version {version} is newer than this knockoff understands ({})", steps.len())));
    }
    for (i, sql) in steps.iter().enumerate().skip(version) {
        tx.batch(sql)?;
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            super::args![&(i + 1).to_string()],
        )?;
    }
    Ok(())
}
