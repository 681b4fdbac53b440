use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog store {path}: {detail}")]
    Store { path: PathBuf, detail: String },
    #[error("catalog store {path} is corrupt ({detail}); restore it from a backup, or move it away and re-index")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the index in {path} was built with model '{found}', not '{wanted}'; use another --index folder")]
    ModelMismatch { path: PathBuf, found: String, wanted: String },
    #[error("the index in {path} holds vectors of an earlier version of model '{model}' (fingerprint {found}; the installed one is {want}: its weights or preprocessing changed); re-index into a new --index folder")]
    ModelChanged { path: PathBuf, model: String, found: String, want: String },
    #[error("vector dimension {got} does not match the index dimension {want}")]
    Dimension { got: usize, want: usize },
    #[error("unknown product '{0}'")]
    UnknownProduct(String),
    /// A product deleted before (a retried delete): nothing more to do.
    #[error("product '{0}' is deleted already")]
    ProductDeleted(String),
    #[error("unknown image {0}")]
    UnknownImage(i64),
    #[error("invalid {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    /// A backup that cannot be written or restored (not empty, incomplete, damaged, foreign).
    #[error("backup {path}: {detail}")]
    Backup { path: PathBuf, detail: String },
    #[error("index folder {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("vector index dump: {0}")]
    Dump(String),
    #[error("projection: {0}")]
    Projection(String),
    /// A shared-backend engine (PostgreSQL, Milvus) did not answer; the
    /// service answers 503 and retries until it does.
    #[error("cannot reach {engine} at {address} ({setting}): {detail}")]
    Unavailable { engine: &'static str, setting: &'static str, address: String, detail: String },
    /// A shared-backend engine answered with an error (a bug or a schema mismatch, not an outage).
    #[error("{engine}: {detail}")]
    Engine { engine: &'static str, detail: String },
}

impl CatalogError {
    pub(crate) fn store(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        CatalogError::Store { path: path.to_path_buf(), detail: e.to_string() }
    }
}
