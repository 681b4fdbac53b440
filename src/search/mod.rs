//! Query → products → answer. [`search_products`] finds the nearest images
//! and groups them so that each product appears once with its best-matching
//! image (and optionally the second best); [`lookup`] is the one use case
//! every front-end calls: matches with their confidences and the verdict,
//! computed once (HTTP, `knockoff search`, `knockoff eval` and the benchmarks
//! all go through it).
//!
//! A match has one JSON shape everywhere (`POST /v1/lookup`, `knockoff search
//! --json`, eval's per-query records): [`Match`].

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

pub mod batch;
pub mod calibration;
pub mod copy;
pub mod explain;
mod lookup;
pub mod mapping;
pub mod summary;
mod verdict;

pub use calibration::{Calibration, VerdictThresholds};
pub use copy::{CopyMatch, CopyModel, Region};
pub use lookup::{lookup, Lookup, Match, PROBABILITY_CANDIDATES};
pub use mapping::{Mapping, TopOfRanking};
pub use summary::{summary, Evidence};
pub use verdict::{assess, probabilities, Assessment, Candidate, Presence, Probabilities, ThresholdBasis, VerdictConfig, VerdictKind};

use crate::catalog::{Catalog, CatalogError, Filter, Product};

#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Number of products to return.
    pub k: usize,
    /// HNSW `ef` for this query (default: the index's `ef_search`).
    pub ef: Option<usize>,
    pub filter: Filter,
    /// Also report each product's second-best image.
    pub second_best: bool,
    /// How a product's images combine into its ranking score.
    pub product_score: ProductScore,
}

/// How a product's matching images combine into the score that ranks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductScore {
    /// Its best image's similarity.
    #[default]
    Best,
    /// The mean similarity of its best `n` images among the hits (fewer if it has fewer).
    MeanTop(usize),
}

impl std::str::FromStr for ProductScore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "best" => Ok(ProductScore::Best),
            _ => s
                .strip_prefix("top")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 1)
                .map(ProductScore::MeanTop)
                .ok_or_else(|| format!("product score must be 'best' or 'topN', not '{s}'")),
        }
    }
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest { k: 5, ef: None, filter: Filter::default(), second_best: false, product_score: ProductScore::Best }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ImageHit {
    pub image_id: i64,
    pub similarity: f32,
}

/// One product in the ranking (before confidence and verdict).
#[derive(Debug, Clone)]
pub struct ProductMatch {
    pub product: Arc<Product>,
    /// The ranking score (the best image's similarity unless another product score was asked for).
    pub score: f32,
    pub best: ImageHit,
    pub second: Option<ImageHit>,
}

/// Products ranked, and the nearest images (id, similarity) the search saw.
pub type Ranked = (Vec<ProductMatch>, Vec<(i64, f32)>);

/// The `k` best products for a query embedding, best first.
pub fn search_products(catalog: &Catalog, query: &[f32], req: &SearchRequest) -> Result<Vec<ProductMatch>, CatalogError> {
    Ok(search_ranked(catalog, query, req, 0)?.0)
}

/// [`search_products`], and the `images` nearest images (id, similarity) that the search saw.
pub fn search_ranked(catalog: &Catalog, query: &[f32], req: &SearchRequest, images: usize) -> Result<Ranked, CatalogError> {
    if req.k == 0 && images == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    // Ask for more images than products; widen while too few distinct products come back.
    let mut n = (req.k * 10).max(64).max(images);
    loop {
        let ef = req.ef.map(|e| e.max(n));
        let hits = catalog.search_images(query, n, ef.or(Some(n)), &req.filter)?;
        let exhausted = hits.len() < n;
        let nearest: Vec<(i64, f32)> = hits.iter().take(images).map(|(id, sim, _)| (*id, *sim)).collect();
        // A listing photo made a reference ranks its product only for the same photo or a copy of it.
        let mut hits = hits;
        catalog.drop_weak_listing_hits(&mut hits);
        let groups = group(hits, req.second_best, req.product_score);
        if groups.len() >= req.k || exhausted || n >= 4096 {
            return Ok((groups.into_iter().take(req.k).collect(), nearest));
        }
        n *= 4;
    }
}

fn group(hits: Vec<(i64, f32, Arc<Product>)>, second_best: bool, score: ProductScore) -> Vec<ProductMatch> {
    let mut by_product: HashMap<String, (ProductMatch, Vec<f32>)> = HashMap::new();
    for (id, sim, product) in hits {
        let hit = ImageHit { image_id: id, similarity: sim };
        match by_product.get_mut(&product.product_id) {
            None => {
                let key = product.product_id.clone();
                by_product.insert(key, (ProductMatch { product, score: sim, best: hit, second: None }, vec![sim]));
            }
            Some((m, sims)) => {
                if second_best && m.second.is_none() {
                    m.second = Some(hit);
                }
                sims.push(sim);
            }
        }
    }
    let mut out: Vec<ProductMatch> = by_product
        .into_values()
        .map(|(mut m, mut sims)| {
            if let ProductScore::MeanTop(n) = score {
                sims.sort_by(|a, b| b.total_cmp(a));
                let top = &sims[..n.min(sims.len())];
                m.score = top.iter().sum::<f32>() / top.len() as f32;
            }
            m
        })
        .collect();
    // Deterministic order: score, then best similarity, then id.
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.best.similarity.total_cmp(&a.best.similarity))
            .then_with(|| a.product.product_id.cmp(&b.product.product_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Label;

    #[test]
    fn grouping_keeps_best_and_second_per_product() {
        let a = Arc::new(Product::new("a", Label::Authentic));
        let b = Arc::new(Product::new("b", Label::Counterfeit));
        let hits = vec![(1, 0.9, a.clone()), (2, 0.8, b.clone()), (3, 0.7, a.clone()), (4, 0.6, a.clone())];
        let g = group(hits.clone(), true, ProductScore::Best);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].product.product_id, "a");
        assert_eq!(g[0].best, ImageHit { image_id: 1, similarity: 0.9 });
        assert_eq!(g[0].second, Some(ImageHit { image_id: 3, similarity: 0.7 }));
        assert_eq!(g[1].second, None);
        // Mean of the best two: a = (0.75 + 0.25) / 2 = 0.5 ties b's 0.5 exactly; a's best image wins the tie.
        let h2 = vec![(1, 0.75, a.clone()), (2, 0.5, b.clone()), (3, 0.25, a.clone()), (4, 0.125, a.clone())];
        let g2 = group(h2.clone(), false, ProductScore::MeanTop(2));
        assert_eq!((g2[0].score, g2[1].score), (0.5, 0.5));
        assert_eq!(g2[0].product.product_id, "a", "ties break on best similarity");
        let g3 = group(h2, false, ProductScore::MeanTop(3));
        assert_eq!(g3[0].product.product_id, "b", "a's third image pulls it below b");
        assert_eq!(g3[1].score, (0.75 + 0.25 + 0.125) / 3.0);
        assert_eq!(g3[1].best.similarity, 0.75, "similarity stays the best image's");
        let g = group(vec![(1, 0.9, a)], false, ProductScore::Best);
        assert_eq!(g[0].second, None);
        assert_eq!("top3".parse::<ProductScore>(), Ok(ProductScore::MeanTop(3)));
        assert!("top0".parse::<ProductScore>().is_err());
    }
}
