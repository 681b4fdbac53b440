//! The record store: everything a catalog keeps besides its searchable
//! vectors — products, images with their embeddings, thumbnails and copy
//! features, indexing jobs, small shared files (projection, calibration) —
//! behind one interface, [`RecordStore`], with two engines: [`sqlite`] (the
//! embedded default, one folder) and [`postgres`] (the shared backend).
//!
//! An engine supplies transactions and statements ([`Tx`]); every record
//! kind is written once over them, in its own file, as methods on
//! `dyn RecordStore`:
//!
//! | file | records |
//! |---|---|
//! | [`meta`] | the catalog's identity (model, fingerprint, graph settings) and its change counter |
//! | [`products`] | products, and counts over them |
//! | [`images`] | images, embeddings, thumbnails, copy features |
//! | [`jobs`] | the indexing job queue (claims with leases: each job runs once) |
//! | [`cases`] | review cases: a lookup's photo, answer and context, its decision, the audit trail |
//! | [`clusters`] | seller networks: which cases copy one another, and why |
//! | [`events`] | events (a case created or decided, a job finished, a refit) and their webhook deliveries: the outbox |
//! | [`idempotency`] | a POST's `Idempotency-Key` with its request's fingerprint and response, kept a day |
//! | [`export`] | whole rows out and in, for `knockoff migrate` and `backup` |
//!
//! A new record kind is a file here (its statements in the SQL both engines
//! share, see [`sql`]) and a migration in [`schema`]'s common list.

mod cases;
mod clusters;
mod events;
mod export;
mod idempotency;
mod images;
mod jobs;
mod meta;
pub mod postgres;
mod products;
pub mod schema;
pub mod sql;
pub mod sqlite;

pub use cases::{AuditRow, CasePhoto, CaseQuery, CaseRow, CaseSort, DecisionRow, DecisionWrite, NewCase, ReviewedCase, Versioned};
pub use clusters::{CaseLink, ClusterRow, ClusterWrite, KeptColumn, LinkKind, MemberRow, Unclustered};
pub use events::{Delivery, EventKind, NewEvent, Subscription, TargetState};
pub use export::{images_in, products_in, whole_rows_in, ImageRow, ProductRow, TableRows, WHOLE_TABLE_COUNT};
pub use idempotency::{Begun, StoredResponse};
pub use images::{ImageOwner, Products};
pub use jobs::{job_lease, JobRow, JobStatus, JobSummary};
pub use meta::IDENTITY_KEYS;
pub(crate) use products::product_from_row;
pub(crate) use sql::args;
pub use sql::{Arg, Dialect, Row, SqlError, Tx};

use super::CatalogError;

/// What a transaction body returns.
pub type TxResult<T> = Result<T, SqlError>;

/// One engine holding a catalog's records.
pub trait RecordStore: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Where the records live, for people (never a password).
    fn location(&self) -> String;
    /// Runs reads (each statement sees everything committed before it
    /// started; on `SQLite` through a read-only connection that never waits
    /// for the writer).
    fn read_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError>;
    /// Runs reads that all see one consistent state of the store, as of
    /// when the first of them started, while writers go on (a backup). On
    /// `SQLite` a read transaction on a connection of its own; on PostgreSQL
    /// a read-only repeatable-read transaction.
    fn snapshot_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError>;
    /// Runs `f` in one write transaction: all of it commits or none of it.
    /// Writers are serialised (PostgreSQL: one lock, so change numbers commit in order).
    fn write_with(&self, f: &mut dyn FnMut(&mut dyn Tx) -> TxResult<()>) -> Result<(), CatalogError>;
    /// A small file shared with everything that serves this catalog (`None`: absent).
    fn file(&self, name: &str) -> Result<Option<String>, CatalogError>;
    /// Replaces (or, with `None`, removes) a shared file, atomically.
    fn put_file(&self, name: &str, content: Option<&str>) -> Result<(), CatalogError>;
    fn as_dyn(&self) -> &dyn RecordStore;
}

impl dyn RecordStore + '_ {
    /// Reads with `f` (see [`RecordStore::read_with`]).
    pub fn read<T>(&self, mut f: impl FnMut(&mut dyn Tx) -> TxResult<T>) -> Result<T, CatalogError> {
        let mut out = None;
        self.read_with(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| CatalogError::Engine { engine: "record store", detail: "a read returned nothing".into() })
    }

    /// Writes with `f` in one transaction (see [`RecordStore::write_with`]).
    pub fn write<T>(&self, mut f: impl FnMut(&mut dyn Tx) -> TxResult<T>) -> Result<T, CatalogError> {
        let mut out = None;
        self.write_with(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| CatalogError::Engine { engine: "record store", detail: "a write returned nothing".into() })
    }
}

/// A probability in millionths, as cases and events store it (both engines compare integers the same way).
#[must_use]
pub fn ppm(p: f32) -> i64 {
    (f64::from(p.clamp(0.0, 1.0)) * 1e6).round() as i64
}

fn now() -> String {
    crate::util::now_rfc3339()
}
