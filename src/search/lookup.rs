//! The lookup use case: a query vector in, ranked products with their
//! confidences and the verdict out.

use serde::Serialize;

use super::{assess, search_products, Candidate, ImageHit, SearchRequest, VerdictConfig, VerdictKind};
use crate::catalog::{Catalog, Label};

/// One matched product, in the shape every front-end prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub product_id: String,
    pub label: Label,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    /// The product's best-matching catalog image.
    pub image_id: i64,
    pub similarity: f32,
    /// Probability that the photo shows this product.
    pub confidence: f32,
    /// The product's second-best image, when asked for (`SearchRequest::second_best`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second: Option<ImageHit>,
    /// The ranking score (equal to `similarity` unless another product score was asked for).
    #[serde(skip)]
    pub score: f32,
}

/// The answer to one lookup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lookup {
    pub matches: Vec<Match>,
    pub verdict: VerdictKind,
    pub reason: String,
}

/// Searches the catalog for `query` (a model vector), then scores and decides.
#[must_use]
pub fn lookup(catalog: &Catalog, query: &[f32], req: &SearchRequest, cfg: &VerdictConfig) -> Lookup {
    let ranked = search_products(catalog, query, req);
    let candidates: Vec<Candidate<'_>> = ranked
        .iter()
        .map(|m| Candidate { product_id: &m.product.product_id, label: m.product.label, similarity: m.best.similarity })
        .collect();
    let assessment = assess(&candidates, cfg);
    let matches = ranked
        .iter()
        .zip(assessment.confidences)
        .map(|(m, confidence)| Match {
            product_id: m.product.product_id.clone(),
            label: m.product.label,
            brand: m.product.brand.clone(),
            name: m.product.name.clone(),
            category: m.product.category.clone(),
            image_id: m.best.image_id,
            similarity: m.best.similarity,
            confidence,
            second: m.second,
            score: m.score,
        })
        .collect();
    Lookup { matches, verdict: assessment.verdict.verdict, reason: assessment.verdict.reason }
}
