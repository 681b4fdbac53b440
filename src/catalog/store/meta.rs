//! The catalog's identity (`meta`: model, dimension, fingerprint, graph
//! settings) and its change counter (`generation`).

use super::{args, RecordStore, SqlError, Tx};
use crate::catalog::{CatalogError, CatalogOptions, IndexParams};

/// Keys a catalog's identity is stored under, copied by `knockoff migrate`.
pub const IDENTITY_KEYS: [&str; 4] = ["model", "dim", "model_fingerprint", "index_params"];

pub(super) fn get(tx: &mut dyn Tx, key: &str) -> Result<Option<String>, SqlError> {
    tx.query_opt("SELECT value FROM meta WHERE key = $1", args![key], |r| r.string(0))
}

pub(super) fn set(tx: &mut dyn Tx, key: &str, value: &str) -> Result<(), SqlError> {
    tx.execute("INSERT INTO meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", args![key, value])?;
    Ok(())
}

/// Counts one more committed change to the searchable set (inside the change's transaction).
pub(super) fn bump_generation(tx: &mut dyn Tx) -> Result<(), SqlError> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('generation', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)",
        &[],
    )?;
    Ok(())
}

/// What the stored identity says about the catalog being opened: its own graph settings, or why it is not this one.
enum Adopted {
    Existing(Option<IndexParams>),
    Mismatch(CatalogError),
}

impl dyn RecordStore + '_ {
    pub fn meta(&self, key: &str) -> Result<Option<String>, CatalogError> {
        self.read(|tx| get(tx, key))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), CatalogError> {
        self.write(|tx| set(tx, key, value))
    }

    /// Sets `key` unless it is set; returns the value that holds.
    pub fn meta_or_set(&self, key: &str, value: &str) -> Result<String, CatalogError> {
        self.write(|tx| {
            tx.execute("INSERT INTO meta(key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", args![key, value])?;
            tx.query_one("SELECT value FROM meta WHERE key = $1", args![key], |r| r.string(0))
        })
    }

    /// Counter bumped by every committed change to the searchable set.
    pub fn generation(&self) -> Result<u64, CatalogError> {
        Ok(self.meta("generation")?.and_then(|g| g.parse().ok()).unwrap_or(0))
    }

    /// Opens the catalog these records hold as `opts` describes it: a new
    /// catalog records the model, its fingerprint and the graph settings; an
    /// existing one must hold the same model (and fingerprint) and keeps its
    /// own graph settings (`ef_search` is the caller's). One transaction, so
    /// replicas opening a new catalog together agree.
    pub fn adopt(&self, mut opts: CatalogOptions) -> Result<CatalogOptions, CatalogError> {
        let path = std::path::PathBuf::from(self.location());
        let adopted = self.write(|tx| {
            match get(tx, "model")? {
                Some(found) if found != opts.model => {
                    let wanted = opts.model.clone();
                    Ok(Adopted::Mismatch(CatalogError::ModelMismatch { path: path.clone(), found, wanted }))
                }
                Some(_) => {
                    match (get(tx, "model_fingerprint")?, &opts.fingerprint) {
                        (Some(found), Some(want)) if &found != want => {
                            let (model, want) = (opts.model.clone(), want.clone());
                            return Ok(Adopted::Mismatch(CatalogError::ModelChanged { path: path.clone(), model, found, want }));
                        }
                        (None, Some(want)) => {
                            tracing::warn!(
                                "index {} predates model fingerprints: recorded the installed '{}' ({want}); if the model changed since the index was built, re-index",
                                path.display(),
                                opts.model
                            );
                            set(tx, "model_fingerprint", want)?;
                        }
                        _ => {}
                    }
                    Ok(Adopted::Existing(get(tx, "index_params")?.and_then(|p| serde_json::from_str::<IndexParams>(&p).ok())))
                }
                None => {
                    set(tx, "model", &opts.model)?;
                    set(tx, "dim", &opts.dim.to_string())?;
                    if let Some(f) = &opts.fingerprint {
                        set(tx, "model_fingerprint", f)?;
                    }
                    set(tx, "index_params", &serde_json::to_string(&opts.params).unwrap_or_default())?;
                    Ok(Adopted::Existing(None))
                }
            }
        })?;
        match adopted {
            Adopted::Existing(Some(p)) => opts.params = IndexParams { ef_search: opts.params.ef_search, ..p },
            Adopted::Existing(None) => {}
            Adopted::Mismatch(e) => return Err(e),
        }
        Ok(opts)
    }
}
