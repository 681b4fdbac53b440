use std::path::PathBuf;

use crate::catalog::CatalogError;
use crate::embed::EmbedError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {detail}")]
    Source { path: PathBuf, detail: String },
    #[error("{path} line {line}: {detail}")]
    Row { path: PathBuf, line: usize, detail: String },
    #[error("{source_name}: {detail}")]
    Fetch { source_name: String, detail: String },
    #[error("{source_name}: the process stopped while indexing this image; quarantined and not retried")]
    Crashed { source_name: String },
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl IngestError {
    /// Short machine-readable kind for error files.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Source { .. } => "source",
            IngestError::Row { .. } => "manifest-row",
            IngestError::Fetch { .. } => "fetch",
            IngestError::Crashed { .. } => "crashed",
            IngestError::Embed(e) => e.kind(),
            IngestError::Catalog(_) => "catalog",
        }
    }
}
