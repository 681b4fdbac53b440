//! How a replica keeps up: the change feed (products and images changed
//! since the change number it applied), the shared files (a new projection
//! switches the collection searched; a new calibration bumps the state
//! version), and the background thread that does both every
//! [`SYNC_EVERY`] and reconciles every [`RECONCILE_EVERY`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{collections, Collection, Inner};
use crate::catalog::backend::Phase;
use crate::catalog::files::{PROJECTION_FILE, SHARED_FILES};
use crate::catalog::projection::Projection;
use crate::catalog::store::sql::PgTx;
use crate::catalog::store::{args, SqlError, Tx};
use crate::catalog::types::LISTING_SQL as LISTING;
use crate::catalog::vectors::MilvusCollection;
use crate::catalog::{CatalogError, Product};

/// How often a replica applies other replicas' changes (the bound on a change reaching every replica is 1 s).
pub const SYNC_EVERY: Duration = Duration::from_millis(200);
/// How often a replica reconciles PostgreSQL and Milvus.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// Without a successful sync for this long, a replica stops answering
/// lookups (503) rather than serve a catalog it can no longer vouch for.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// Product and image changes since a replica last looked.
/// (image id, product row, deleted, a listing reference, copy features).
type ImageChange = (i64, i64, bool, bool, Option<Vec<u8>>);

struct Changes {
    products: Vec<(i64, Product)>,
    images: Vec<ImageChange>,
    upto: i64,
}

/// Changes after `seq` (the first call, with 0, reads everything), read in one snapshot.
fn changes_since(tx: &mut dyn Tx, seq: i64) -> Result<Changes, SqlError> {
    let products =
        tx.query("SELECT product_id, label, brand, name, category, attributes, id, seq FROM products WHERE seq > $1", args![seq], |r| {
            Ok((r.i64(6)?, crate::catalog::store::product_from_row(r)?, r.i64(7)?))
        })?;
    let images = tx.query(
        &format!(
            "SELECT i.id, i.product, i.deleted, i.seq, c.data, {LISTING} FROM images i LEFT JOIN copy_features c ON c.image = i.id AND NOT i.deleted
             WHERE i.seq > $1"
        ),
        args![seq],
        |r| Ok((r.i64(0)?, r.i64(1)?, r.bool(2)?, r.i64(3)?, r.opt_blob(4)?, r.bool(5)?)),
    )?;
    let upto = products.iter().map(|p| p.2).chain(images.iter().map(|i| i.3)).fold(seq, i64::max);
    Ok(Changes {
        products: products.into_iter().map(|(row, p, _)| (row, p)).collect(),
        images: images.into_iter().map(|(id, row, deleted, _, copy, listing)| (id, row, deleted, listing, copy)).collect(),
        upto,
    })
}

impl Inner {
    /// Applies product and image changes committed since the last call.
    pub(super) fn sync_changes(&self) -> Result<(), CatalogError> {
        let since = self.seq.load(Ordering::SeqCst);
        let ch = self.pg.with(|c| {
            let mut tx = c.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
            let ch = changes_since(&mut PgTx(&mut tx), since)?;
            tx.commit()?;
            Ok(ch)
        })?;
        if ch.upto == since {
            return Ok(());
        }
        {
            let mut table = self.table.write();
            for (row, p) in ch.products {
                table.put_product(row, p);
            }
            for (id, product_row, deleted, listing, copy) in ch.images {
                table.put_image(id, product_row, deleted, listing, copy.as_deref());
            }
        }
        self.seq.fetch_max(ch.upto, Ordering::SeqCst);
        self.hooks.at(Phase::Synced(ch.upto));
        Ok(())
    }

    /// Loads changed shared files; a new projection switches the collection searched.
    pub(super) fn sync_files(&self) -> Result<(), CatalogError> {
        let files = self.pg.files()?;
        let mut changed = false;
        for name in SHARED_FILES {
            let found = files.iter().find(|(n, _, _)| n == name);
            let version = found.map_or(0, |f| f.1);
            if self.file_versions.read().get(name).copied().unwrap_or(0) == version {
                continue;
            }
            if name == PROJECTION_FILE {
                let origin = format!("{PROJECTION_FILE} in {}", self.pg.address());
                let p = found.map(|(_, _, text)| Projection::parse(text, &origin)).transpose()?.map(Arc::new);
                let out_dim = p.as_ref().map_or(self.opts.dim, |p| p.info.out_dim);
                let name = collections::collection_name(&self.uid, p.as_deref());
                let index = Arc::new(MilvusCollection { milvus: self.milvus.clone(), name, dim: out_dim });
                *self.space.write() = Collection { projection: p, index };
            }
            self.file_versions.write().insert(name.to_string(), version);
            changed = true;
        }
        if changed {
            self.state_version.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// `Err` when this replica has not synced for [`STALE_AFTER`] (the store is down).
    pub(super) fn check_fresh(&self) -> Result<(), CatalogError> {
        let synced = self.synced.lock();
        if synced.0.elapsed() <= STALE_AFTER {
            return Ok(());
        }
        Err(match &synced.1 {
            Some(e @ CatalogError::Unavailable { .. }) => clone_error(e),
            other => CatalogError::Unavailable {
                engine: "PostgreSQL",
                setting: "KNOCKOFF_STORE",
                address: self.pg.address().to_string(),
                detail: format!(
                    "no sync for {:.0?} ({})",
                    synced.0.elapsed(),
                    other.as_ref().map_or_else(String::new, ToString::to_string)
                ),
            },
        })
    }

    fn record_sync(&self, result: &Result<(), CatalogError>) {
        let mut synced = self.synced.lock();
        match result {
            Ok(()) => *synced = (Instant::now(), None),
            Err(e) => synced.1 = Some(clone_error(e)),
        }
    }
}

/// The replica's background loop: apply changes every [`SYNC_EVERY`],
/// reconcile every [`RECONCILE_EVERY`]; ends with the catalog. Errors (an
/// engine down) are logged once per outage and retried.
pub(super) fn spawn(inner: Weak<Inner>) {
    let _ = std::thread::Builder::new().name("knockoff-sync".into()).spawn(move || {
        let mut last_reconcile = Instant::now();
        let mut failing = false;
        loop {
            std::thread::sleep(SYNC_EVERY);
            let Some(inner) = inner.upgrade() else { return };
            let mut result = inner.sync_files().and_then(|()| inner.sync_changes());
            inner.record_sync(&result);
            if result.is_ok() && last_reconcile.elapsed() >= RECONCILE_EVERY {
                last_reconcile = Instant::now();
                result = inner.reconcile().map(drop);
            }
            match result {
                Err(e) if !failing => {
                    tracing::warn!("shared catalog: {e}; retrying");
                    failing = true;
                }
                Ok(()) if failing => {
                    tracing::info!("shared catalog: engines answer again");
                    failing = false;
                }
                _ => {}
            }
        }
    });
}

/// A copy of an engine error good enough to report again later.
fn clone_error(e: &CatalogError) -> CatalogError {
    match e {
        CatalogError::Unavailable { engine, setting, address, detail } => {
            CatalogError::Unavailable { engine, setting, address: address.clone(), detail: detail.clone() }
        }
        other => CatalogError::Engine { engine: "shared catalog", detail: other.to_string() },
    }
}
