//! What can go wrong in the review loop.

use crate::catalog::CatalogError;

/// What can go wrong in the review loop.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("unknown case {0}")]
    UnknownCase(i64),
    #[error("no seller network has id {0}")]
    UnknownCluster(i64),
    #[error("unknown product '{0}'")]
    UnknownProduct(String),
    #[error("{field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    #[error("case {case} changed since it was read: it is at version {current}; read it again and decide on what it says now")]
    Stale { case: i64, current: i64 },
    #[error("case {0} has no decision to undo")]
    NotDecided(i64),
    #[error("the case photo: {0}")]
    Photo(#[from] crate::embed::EmbedError),
    #[error("the copy's explanation: {0}")]
    Explain(#[from] crate::search::explain::ExplainError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}
