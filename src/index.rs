//! An index folder opened with its model: the first step every command and
//! the service share. The model is the one the index was built with (an
//! explicit choice must agree), or the chosen / default model for a new
//! index; the catalog records the model's fingerprint and refuses a changed one.

use std::path::{Path, PathBuf};

use crate::catalog::backup::{self, BackupManifest};
use crate::catalog::transfer::MigrateReport;
use crate::catalog::{Catalog, CatalogError, CatalogOptions, IndexParams, Location, OpenReport, SharedSpec};
use crate::embed::{EmbedError, EmbedOptions, Embedder, ModelManifest, ModelRegistry};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0} holds no catalog: index one into it with `knockoff index MANIFEST` (same --index, or the same KNOCKOFF_STORE / KNOCKOFF_VECTORS), or pass --create to start with an empty one")]
    NoCatalog(String),
}

/// Which index folder, with which model and graph settings.
#[derive(Debug, Clone)]
pub struct IndexSpec {
    pub dir: PathBuf,
    /// The model for a new index; an existing index keeps its own (and must agree).
    pub model: Option<String>,
    /// HNSW parameters for a new index (`ef_search` applies to every open).
    pub params: IndexParams,
    /// Compact by itself when deleted images pass this share of the graph.
    pub auto_compact: f64,
    /// The shared backend's PostgreSQL (`KNOCKOFF_STORE`); with `vectors`, used instead of `dir`.
    pub store: Option<String>,
    /// The shared backend's Milvus (`KNOCKOFF_VECTORS`).
    pub vectors: Option<String>,
    /// Whether a place that holds no catalog gets a new, empty one (`knockoff
    /// index`, `serve --create`); otherwise it is refused, so a mistyped
    /// folder never serves an empty catalog.
    pub create: bool,
}

impl IndexSpec {
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IndexSpec {
            dir: dir.into(),
            model: None,
            params: IndexParams::default(),
            auto_compact: 0.2,
            store: None,
            vectors: None,
            create: false,
        }
    }

    /// The shared backend's settings, if given (both or neither).
    pub fn shared(&self) -> Result<Option<SharedSpec>, CatalogError> {
        match (&self.store, &self.vectors) {
            (Some(store), Some(vectors)) => Ok(Some(SharedSpec { store: store.clone(), vectors: vectors.clone() })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(CatalogError::Invalid {
                field: "KNOCKOFF_VECTORS",
                detail: "KNOCKOFF_STORE (--store) is set but not KNOCKOFF_VECTORS (--vectors): the shared backend needs both".into(),
            }),
            (None, Some(_)) => Err(CatalogError::Invalid {
                field: "KNOCKOFF_STORE",
                detail: "KNOCKOFF_VECTORS (--vectors) is set but not KNOCKOFF_STORE (--store): the shared backend needs both".into(),
            }),
        }
    }
}

/// An open index: the catalog, its model's manifest, and what opening it found.
pub struct OpenIndex {
    pub catalog: Catalog,
    pub manifest: ModelManifest,
    pub report: OpenReport,
}

impl OpenIndex {
    /// Loads the index's model for bulk work: one single-threaded session per
    /// core unless `opts` says otherwise.
    pub fn embedder(&self, opts: &EmbedOptions) -> Result<Embedder, EmbedError> {
        Embedder::load(&self.manifest, opts)
    }
}

/// Opens the models folder `dir`, or the project's `models/` found from the
/// current or executable's folder.
pub fn open_registry(dir: Option<&Path>) -> Result<ModelRegistry, EmbedError> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => crate::util::find_project_dir("models").ok_or_else(|| EmbedError::Manifest {
            path: PathBuf::from("models"),
            detail: "no models/ folder found; pass --models DIR or run from the project folder".into(),
        })?,
    };
    ModelRegistry::open(&dir)
}

/// Opens (or creates) the index in `spec.dir`, or on the shared backend
/// when `spec` names it, with its model from `registry`.
pub fn open(registry: &ModelRegistry, spec: &IndexSpec) -> Result<OpenIndex, OpenError> {
    let shared = spec.shared()?;
    if shared.is_some() && spec.dir != Path::new("index") {
        tracing::warn!("KNOCKOFF_STORE / KNOCKOFF_VECTORS select the shared catalog: the index folder {} is not used", spec.dir.display());
    }
    let location = match &shared {
        Some(s) => Location::Shared(s.clone()),
        None => Location::Folder(spec.dir.clone()),
    };
    let existing = match location.records()? {
        Some(records) => records.meta("model")?,
        None => None,
    };
    if existing.is_none() && !spec.create {
        return Err(OpenError::NoCatalog(location.to_string()));
    }
    let model = match (&existing, &spec.model) {
        (Some(found), Some(wanted)) if found != wanted => {
            return Err(CatalogError::ModelMismatch { path: spec.dir.clone(), found: found.clone(), wanted: wanted.clone() }.into());
        }
        (Some(found), _) => Some(found.clone()),
        (None, m) => m.clone(),
    };
    let manifest = registry.get(model.as_deref())?.clone();
    let opts = CatalogOptions {
        fingerprint: Some(manifest.fingerprint()),
        model: manifest.name.clone(),
        dim: manifest.output.dim,
        params: spec.params,
        auto_compact_share: spec.auto_compact,
    };
    let (catalog, report) = Catalog::open_at(&location, opts)?;
    Ok(OpenIndex { catalog, manifest, report })
}

/// The index spec that opens a migration endpoint.
fn endpoint_spec(e: &Location) -> IndexSpec {
    match e {
        Location::Folder(dir) => IndexSpec { create: true, ..IndexSpec::new(dir) },
        Location::Shared(s) => {
            IndexSpec { store: Some(s.store.clone()), vectors: Some(s.vectors.clone()), create: true, ..IndexSpec::new("index") }
        }
    }
}

/// `knockoff migrate`: copies the catalog at `from` to `to` (rows, then the
/// files that define scoring), opens the target (which builds its vectors
/// from the copied rows) and checks that both sides count the same products,
/// images and searchable vectors. Resumable: run it again after a failure.
pub fn migrate(
    registry: &ModelRegistry,
    from: &Location,
    to: &Location,
    progress: &mut dyn FnMut(String),
) -> Result<MigrateReport, OpenError> {
    let report = crate::catalog::transfer::copy_rows(from, to, &mut |n| {
        if n % 5000 < 500 {
            progress(format!("{n} images copied"));
        }
    })?;
    progress(format!(
        "copied {} products, {} images, files {:?}; building the target's vectors",
        report.products, report.images, report.files
    ));
    let source = open(registry, &endpoint_spec(from))?;
    let target = open(registry, &endpoint_spec(to))?;
    crate::catalog::transfer::check_counts(&source.catalog, &target.catalog)?;
    progress(format!("counts agree: {} products, {} images, all searchable", report.products, target.catalog.searchable_count()?));
    Ok(report)
}

/// What `knockoff restore` put back, and where.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub target: String,
    pub backup: BackupManifest,
    /// Images the restored catalog searches (its vectors were built from the backup).
    pub searchable: usize,
}

/// `knockoff restore`: checks the backup in `src` (see
/// [`crate::catalog::backup`]), refuses a target that already holds another
/// catalog, copies the backup's rows and files there, builds its vectors and
/// checks the counts against the backup's. An interrupted restore of the
/// same backup resumes when run again.
pub fn restore(registry: &ModelRegistry, src: &Path, to: &Location, progress: &mut dyn FnMut(String)) -> Result<RestoreReport, OpenError> {
    let manifest = backup::verify(src)?;
    progress(format!(
        "{} is a complete backup of {} ({} products, {} images, taken {})",
        src.display(),
        manifest.source,
        manifest.products,
        manifest.images,
        manifest.created_at
    ));
    let id = manifest.files.get(crate::catalog::files::STORE_FILE).map(|f| f.sha256.clone()).unwrap_or_default();
    let target = to.records_or_create()?;
    match (target.meta("model")?, target.meta(RESTORED_FROM)?) {
        (None, _) => target.set_meta(RESTORED_FROM, &id)?,
        (Some(_), Some(from)) if from == id => progress("resuming the restore of this backup".into()),
        (Some(_), _) => {
            let detail = format!("{to} already holds a catalog: restore into an empty folder or database");
            return Err(CatalogError::Backup { path: src.into(), detail }.into());
        }
    }
    drop(target);
    let staged = backup::stage(src, &manifest, &backup::staging_parent(to))?;
    crate::catalog::transfer::copy_rows(&Location::Folder(staged.path().into()), to, &mut |n| {
        if n % 5000 < 500 {
            progress(format!("{n} images restored"));
        }
    })?;
    drop(staged);
    progress("rows restored; building the vectors".into());
    let target = open(registry, &endpoint_spec(to))?;
    let counts = target.catalog.stats()?.counts;
    let restored = (usize::try_from(counts.products).ok(), usize::try_from(counts.images).ok());
    if restored != (Some(manifest.products), Some(manifest.images)) {
        let detail = format!(
            "restored {} products and {} images, the backup holds {} and {}",
            counts.products, counts.images, manifest.products, manifest.images
        );
        return Err(CatalogError::Backup { path: src.into(), detail }.into());
    }
    Ok(RestoreReport { target: to.to_string(), searchable: target.catalog.searchable_count()?, backup: manifest })
}

/// The meta key a restore marks its target with (the backup's store sha256), so that it can resume.
const RESTORED_FROM: &str = "restored_from";
