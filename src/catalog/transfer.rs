//! `knockoff migrate`: copies a catalog between the embedded backend (an
//! index folder) and the shared one (PostgreSQL + Milvus), either way,
//! without re-embedding: products, images with their stored vectors,
//! thumbnails and copy features keep their ids; review cases (with their
//! photos, decisions and audit trail), the projection and the calibration
//! go along. Rows are copied in id order, a batch per
//! transaction, and rows already at the target are kept, so an interrupted
//! migration resumes where it stopped. The target's vectors are then built
//! (graph or Milvus collection) from what was copied, and the counts of
//! both sides are compared. The rows are read in one snapshot of the source,
//! so a migration (or a backup) taken while the source is written is the
//! catalog as of one moment.

use std::path::PathBuf;

use super::files::{SHARED_FILES, STORE_FILE};
use super::store::{images_in, products_in, whole_rows_in, ImageRow, ProductRow, RecordStore, SqlError, IDENTITY_KEYS, WHOLE_TABLE_COUNT};
use super::{CatalogError, Location};

/// Images copied per transaction.
const BATCH: i64 = 500;

/// What a migration copied.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrateReport {
    pub model: String,
    pub products: usize,
    pub images: usize,
    /// Review records copied: cases, their photos, audit records.
    pub review_rows: usize,
    pub files: Vec<String>,
}

/// Copies the catalog's rows and files from `from` to `to` (see the module
/// doc); `progress` hears how far it got. The caller then opens the target
/// (which builds its vectors) and compares counts with [`check_counts`].
pub fn copy_rows(from: &Location, to: &Location, progress: &mut dyn FnMut(usize)) -> Result<MigrateReport, CatalogError> {
    let Some(src) = from.records()? else {
        return Err(CatalogError::Invalid { field: "--from", detail: format!("{from} holds no index ({STORE_FILE})") });
    };
    let dst = to.records_or_create()?;
    let (src, dst) = (src.as_dyn(), dst.as_dyn());
    let model = src.meta("model")?.ok_or_else(|| CatalogError::Invalid { field: "--from", detail: format!("{from} holds no catalog") })?;
    if let Some(found) = dst.meta("model")? {
        if found != model {
            return Err(CatalogError::ModelMismatch { path: PathBuf::from(to.to_string()), found, wanted: model });
        }
    }
    copy_records(src, dst, &model, progress)
}

/// Copies the identity, the live rows — read in one snapshot of `src`, so
/// that each image comes with its product even while `src` is written —
/// and the shared files from `src` to `dst`, keeping ids (rows already at
/// `dst` are kept). Used by `migrate` and `backup`.
pub fn copy_records(
    src: &dyn RecordStore,
    dst: &dyn RecordStore,
    model: &str,
    progress: &mut dyn FnMut(usize),
) -> Result<MigrateReport, CatalogError> {
    for key in IDENTITY_KEYS {
        if let Some(v) = src.meta(key)? {
            dst.set_meta(key, &v)?;
        }
    }
    let mut report = MigrateReport { model: model.to_string(), ..Default::default() };
    let mut failed = None;
    let read = src.snapshot_with(&mut |tx| {
        let products = products_in(tx)?;
        report.products = products.len();
        let mut write = |products: &[ProductRow], images: &[ImageRow]| {
            dst.import(model, products, images).map_err(|e| {
                failed = Some(e);
                SqlError::Data("writing the copy failed".into())
            })
        };
        write(&products, &[])?;
        let mut after = 0;
        loop {
            let batch = images_in(tx, model, after, BATCH)?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            write(&[], &batch)?;
            report.images += batch.len();
            progress(report.images);
        }
        for t in 0..WHOLE_TABLE_COUNT {
            let mut previous = None;
            loop {
                let rows = whole_rows_in(tx, t, previous.as_ref(), BATCH)?;
                if rows.is_empty() {
                    break;
                }
                dst.import_whole(&rows).map_err(|e| {
                    failed = Some(e);
                    SqlError::Data("writing the copy failed".into())
                })?;
                report.review_rows += rows.len();
                previous = Some(rows);
            }
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    read?;
    for name in SHARED_FILES {
        if let Some(content) = src.file(name)? {
            dst.put_file(name, Some(&content))?;
            report.files.push(name.to_string());
        }
    }
    Ok(report)
}

/// Compares the live products and images of two opened catalogs and the
/// vectors the target searches; `Err` names what differs.
pub fn check_counts(from: &super::Catalog, to: &super::Catalog) -> Result<(), CatalogError> {
    let (a, b) = (from.stats()?, to.stats()?);
    let mismatch = if a.counts.products != b.counts.products {
        Some(format!("products: {} at the source, {} at the target", a.counts.products, b.counts.products))
    } else if a.counts.images != b.counts.images {
        Some(format!("images: {} at the source, {} at the target", a.counts.images, b.counts.images))
    } else {
        // Counted once (on the shared backend this reads every id Milvus holds).
        let searched = to.searchable_count()?;
        (searched as i64 != b.counts.images).then(|| format!("the target searches {searched} images of its {}", b.counts.images))
    };
    match mismatch {
        Some(detail) => Err(CatalogError::Invalid {
            field: "migration",
            detail: format!("counts differ after copying ({detail}); run migrate again to resume"),
        }),
        None => Ok(()),
    }
}
