//! `knockoff migrate`: copies a catalog between the embedded backend (an
//! index folder) and the shared one (PostgreSQL + Milvus), either way,
//! without re-embedding: products, images with their stored vectors,
//! thumbnails and copy features keep their ids; the projection and the
//! calibration go along. Rows are copied in id order, a batch per
//! transaction, and rows already at the target are kept, so an interrupted
//! migration resumes where it stopped. The target's vectors are then built
//! (graph or Milvus collection) from what was copied, and the counts of
//! both sides are compared.

use std::path::PathBuf;

use super::shared::pg::PgStore;
use super::shared::SharedSpec;
use super::store::Store;
use super::{CatalogError, Product};

/// Images copied per transaction.
const BATCH: i64 = 500;
/// What a catalog says about itself, copied first (a different model at the target is refused).
const META_KEYS: [&str; 4] = ["model", "dim", "model_fingerprint", "index_params"];
/// The files that define how lookups score (they belong with the vectors).
const FILES: [&str; 2] = [super::projection::PROJECTION_FILE, crate::search::calibration::CALIBRATION_FILE];

/// A product as stored, with its row id.
#[derive(Debug, Clone)]
pub struct ProductRow {
    pub row: i64,
    pub product: Product,
    pub created_at: String,
    pub updated_at: String,
}

/// An image as stored, with its vector (little-endian f32 bytes).
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: i64,
    pub product_row: i64,
    pub source: String,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub added_at: String,
    pub vector: Vec<u8>,
    pub thumbnail: Option<Vec<u8>>,
    pub copy_features: Option<Vec<u8>>,
}

/// One side of a migration.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Folder(PathBuf),
    Shared(SharedSpec),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Folder(p) => write!(f, "{}", p.display()),
            Endpoint::Shared(s) => write!(f, "{} + {}", crate::util::address_only(&s.store), crate::util::address_only(&s.vectors)),
        }
    }
}

/// A store on either backend, as migration sees it.
enum Rows {
    Sqlite(Box<Store>, PathBuf),
    Pg(Box<PgStore>),
}

impl Rows {
    fn open(e: &Endpoint) -> Result<Rows, CatalogError> {
        Ok(match e {
            Endpoint::Folder(dir) => Rows::Sqlite(Box::new(Store::open(dir)?), dir.clone()),
            Endpoint::Shared(s) => Rows::Pg(Box::new(PgStore::connect(&s.store)?)),
        })
    }
    fn meta(&self, key: &str) -> Result<Option<String>, CatalogError> {
        match self {
            Rows::Sqlite(s, _) => s.meta(key),
            Rows::Pg(p) => p.meta(key),
        }
    }
    fn set_meta(&self, key: &str, value: &str) -> Result<(), CatalogError> {
        match self {
            Rows::Sqlite(s, _) => s.set_meta(key, value),
            Rows::Pg(p) => p.set_meta(key, value),
        }
    }
    fn products(&self) -> Result<Vec<ProductRow>, CatalogError> {
        match self {
            Rows::Sqlite(s, _) => s.export_products(),
            Rows::Pg(p) => p.export_products(),
        }
    }
    fn images(&self, model: &str, after: i64) -> Result<Vec<ImageRow>, CatalogError> {
        match self {
            Rows::Sqlite(s, _) => s.export_images(model, after, BATCH),
            Rows::Pg(p) => p.export_images(model, after, BATCH),
        }
    }
    fn import(&mut self, model: &str, products: &[ProductRow], images: &[ImageRow]) -> Result<(), CatalogError> {
        match self {
            Rows::Sqlite(s, _) => s.import(model, products, images),
            Rows::Pg(p) => p.import(model, products, images),
        }
    }
    fn file(&self, name: &str) -> Result<Option<String>, CatalogError> {
        match self {
            Rows::Sqlite(_, dir) => match std::fs::read_to_string(dir.join(name)) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(CatalogError::Io { path: dir.join(name), error }),
            },
            Rows::Pg(p) => Ok(p.files()?.into_iter().find(|(n, _, _)| n == name).map(|(_, _, c)| c)),
        }
    }
    fn put_file(&self, name: &str, content: &str) -> Result<(), CatalogError> {
        match self {
            Rows::Sqlite(_, dir) => crate::util::write_atomic(&dir.join(name), content.as_bytes())
                .map_err(|error| CatalogError::Io { path: dir.join(name), error }),
            Rows::Pg(p) => p.put_file(name, Some(content)),
        }
    }
}

/// What a migration copied.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrateReport {
    pub model: String,
    pub products: usize,
    pub images: usize,
    pub files: Vec<String>,
}

/// Copies the catalog's rows and files from `from` to `to` (see the module
/// doc); `progress` hears how far it got. The caller then opens the target
/// (which builds its vectors) and compares counts with [`check_counts`].
pub fn copy_rows(from: &Endpoint, to: &Endpoint, progress: &mut dyn FnMut(usize)) -> Result<MigrateReport, CatalogError> {
    if let Endpoint::Folder(dir) = from {
        if !dir.join(super::store::STORE_FILE).exists() {
            return Err(CatalogError::Invalid { field: "--from", detail: format!("{} holds no index", dir.display()) });
        }
    }
    let src = Rows::open(from)?;
    let mut dst = Rows::open(to)?;
    let model = src.meta("model")?.ok_or_else(|| CatalogError::Invalid { field: "--from", detail: format!("{from} holds no catalog") })?;
    if let Some(found) = dst.meta("model")? {
        if found != model {
            return Err(CatalogError::ModelMismatch { path: PathBuf::from(to.to_string()), found, wanted: model });
        }
    }
    for key in META_KEYS {
        if let Some(v) = src.meta(key)? {
            dst.set_meta(key, &v)?;
        }
    }
    let products = src.products()?;
    dst.import(&model, &products, &[])?;
    let mut report = MigrateReport { model: model.clone(), products: products.len(), ..Default::default() };
    let mut after = 0;
    loop {
        let batch = src.images(&model, after)?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        dst.import(&model, &[], &batch)?;
        report.images += batch.len();
        progress(report.images);
    }
    for name in FILES {
        if let Some(content) = src.file(name)? {
            dst.put_file(name, &content)?;
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
