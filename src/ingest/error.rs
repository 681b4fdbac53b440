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
    /// The image an error names, where it names one.
    #[must_use]
    pub fn item(&self) -> Option<&str> {
        match self {
            IngestError::Fetch { source_name, .. } | IngestError::Crashed { source_name } => Some(source_name),
            _ => None,
        }
    }

    /// The error without the item it is about, for a per-item record that
    /// names the item itself (each cause said once).
    #[must_use]
    pub fn cause(&self) -> String {
        match self {
            IngestError::Source { detail, .. } | IngestError::Fetch { detail, .. } => detail.clone(),
            IngestError::Row { line, detail, .. } => format!("line {line}: {detail}"),
            IngestError::Crashed { .. } => "the process stopped while indexing this image; quarantined and not retried".into(),
            IngestError::Embed(e) => e.to_string(),
            IngestError::Catalog(e) => e.to_string(),
        }
    }

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
