//! Connecting a replica: both engines, the catalog's identity (created or
//! checked), the table from the change feed, the vectors reconciled, and the
//! background sync started.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::{collections, sync, Collection, Inner, SharedCatalog, SharedSpec};
use crate::catalog::backend::Hooks;
use crate::catalog::store::postgres::PgStore;
use crate::catalog::store::RecordStore;
use crate::catalog::vectors::{Milvus, MilvusCollection};
use crate::catalog::{CatalogError, CatalogOptions, OpenReport};

/// How long a replica starting waits for Milvus to load the collection
/// (after an engine restart) before giving up with a message.
const LOAD_WAIT: Duration = Duration::from_secs(600);

impl SharedCatalog {
    /// Connects to both engines, creates or checks the catalog (model,
    /// fingerprint), loads the table and reconciles the vectors.
    pub fn connect(spec: &SharedSpec, opts: CatalogOptions) -> Result<(SharedCatalog, OpenReport), CatalogError> {
        let pg = PgStore::connect(&spec.store)?;
        let milvus = Arc::new(Milvus::connect(&spec.vectors)?);
        let opts = pg.as_dyn().adopt(opts)?;
        let uid = pg
            .as_dyn()
            .meta_or_set("catalog_uid", &crate::util::sha256_hex(format!("{:?}{}", Instant::now(), std::process::id()).as_bytes())[..12])?;
        let index = Arc::new(MilvusCollection { milvus: milvus.clone(), name: collections::collection_name(&uid, None), dim: opts.dim });
        let inner = Inner {
            pg,
            milvus,
            opts,
            table: RwLock::default(),
            seq: AtomicI64::new(0),
            space: RwLock::new(Collection { projection: None, index }),
            file_versions: RwLock::default(),
            state_version: AtomicU64::new(0),
            uid,
            synced: Mutex::new((Instant::now(), None)),
            hooks: Hooks::default(),
        };
        inner.sync_files()?;
        inner.sync_changes()?;
        let coll = inner.collection();
        inner.milvus.ensure_collection(&coll.name, coll.dim)?;
        inner.milvus.wait_loaded(&coll.name, LOAD_WAIT)?;
        let placed = inner.reconcile()?;
        let points = inner.table.read().live_count();
        let inner = Arc::new(inner);
        sync::spawn(Arc::downgrade(&inner));
        Ok((SharedCatalog { inner }, OpenReport::Loaded { points, caught_up: placed }))
    }

    /// The Milvus collection searched now (one per catalog and projection).
    pub fn collection(&self) -> String {
        self.inner.collection().name.clone()
    }
}
