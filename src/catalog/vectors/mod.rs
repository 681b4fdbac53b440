//! The vector index: what makes a catalog's images searchable by embedding,
//! behind one interface, [`VectorIndex`], with two implementations: the
//! embedded HNSW graph ([`hnsw`], persisted by [`dump`]) and a Milvus
//! collection ([`milvus`]). The catalog keeps which images are live and what
//! their products are; an index holds vectors (in the projected space when
//! the catalog has a projection) and answers nearest-neighbour queries.

pub mod dot;
pub mod dump;
mod flat;
pub mod hnsw;
pub mod marker;
pub mod milvus;
pub mod quant;

pub use dot::dot;
pub use hnsw::HnswIndex;
pub use marker::{DumpMarker, MARKER};
pub use milvus::{Milvus, MilvusCollection};

pub use super::types::IndexParams;
use super::{CatalogError, Filter, Label};

/// One vector to add, with the fields searches filter on.
#[derive(Debug, Clone, Copy)]
pub struct VectorRow<'a> {
    pub id: i64,
    pub vector: &'a [f32],
    pub label: Label,
    pub brand: Option<&'a str>,
    pub category: Option<&'a str>,
}

/// Where a catalog's vectors are searched.
pub trait VectorIndex: Send + Sync {
    /// The dimension of the vectors it holds.
    fn dim(&self) -> usize;

    /// Adds vectors; they are searchable when it returns.
    fn insert(&self, rows: &[VectorRow<'_>]) -> Result<(), CatalogError>;

    /// The `k` nearest vectors, (image id, inner product), best first. What
    /// may be answered is said twice: an index that holds the fields applies
    /// `filter` itself (Milvus), one that can test ids during its walk calls
    /// `keep` (HNSW). The catalog keeps only live hits passing the filter
    /// either way; `ef` is the beam width where the index has one.
    fn search(&self, q: &[f32], k: usize, ef: usize, filter: &Filter, keep: &dyn Fn(i64) -> bool) -> Result<Vec<(i64, f32)>, CatalogError>;
}
