//! An index folder opened with its model: the first step every command and
//! the service share. The model is the one the index was built with (an
//! explicit choice must agree), or the chosen / default model for a new
//! index; the catalog records the model's fingerprint and refuses a changed one.

use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, CatalogError, CatalogOptions, IndexParams, OpenReport, Store};
use crate::embed::{EmbedError, EmbedOptions, Embedder, ModelManifest, ModelRegistry};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
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
}

impl IndexSpec {
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IndexSpec { dir: dir.into(), model: None, params: IndexParams::default(), auto_compact: 0.2 }
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

/// Opens (or creates) the index in `spec.dir` with its model from `registry`.
pub fn open(registry: &ModelRegistry, spec: &IndexSpec) -> Result<OpenIndex, OpenError> {
    let existing = if spec.dir.join(crate::catalog::store::STORE_FILE).exists() { Store::open(&spec.dir)?.meta("model")? } else { None };
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
    let (catalog, report) = Catalog::open(&spec.dir, opts)?;
    Ok(OpenIndex { catalog, manifest, report })
}
