//! Query → products: nearest images from the catalog, grouped so that each
//! product appears once with its best-matching image (and optionally the
//! second best).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

pub mod calibration;
mod verdict;

pub use calibration::{Calibration, Mapping};
pub use verdict::{confidences, decide, Verdict, VerdictConfig, VerdictKind};

use crate::catalog::{Catalog, Filter, Product};

#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Number of products to return.
    pub k: usize,
    /// HNSW `ef` for this query (default: the index's `ef_search`).
    pub ef: Option<usize>,
    pub filter: Filter,
    /// Also report each product's second-best image.
    pub second_best: bool,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest { k: 5, ef: None, filter: Filter::default(), second_best: false }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageHit {
    pub image_id: i64,
    pub similarity: f32,
}

/// One product in the answer.
#[derive(Debug, Clone, Serialize)]
pub struct ProductMatch {
    pub product: Arc<Product>,
    pub best: ImageHit,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second: Option<ImageHit>,
}

/// The `k` best products for a query embedding, best first.
pub fn search_products(catalog: &Catalog, query: &[f32], req: &SearchRequest) -> Vec<ProductMatch> {
    if req.k == 0 {
        return Vec::new();
    }
    // Ask for more images than products; widen while too few distinct products come back.
    let mut n = (req.k * 10).max(64);
    loop {
        let ef = req.ef.map(|e| e.max(n));
        let hits = catalog.search_images(query, n, ef.or(Some(n)), &req.filter);
        let exhausted = hits.len() < n;
        let groups = group(hits, req.second_best);
        if groups.len() >= req.k || exhausted || n >= 4096 {
            return groups.into_iter().take(req.k).collect();
        }
        n *= 4;
    }
}

fn group(hits: Vec<(i64, f32, Arc<Product>)>, second_best: bool) -> Vec<ProductMatch> {
    let mut by_product: HashMap<String, ProductMatch> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (id, sim, product) in hits {
        let hit = ImageHit { image_id: id, similarity: sim };
        match by_product.get_mut(&product.product_id) {
            None => {
                order.push(product.product_id.clone());
                by_product.insert(product.product_id.clone(), ProductMatch { product, best: hit, second: None });
            }
            Some(m) => {
                if second_best && m.second.is_none() {
                    m.second = Some(hit);
                }
            }
        }
    }
    // Hits arrive best first, so `order` is already sorted by best similarity;
    // sort anyway so that ties and approximate ordering are deterministic.
    let mut out: Vec<ProductMatch> = order.into_iter().filter_map(|p| by_product.remove(&p)).collect();
    out.sort_by(|a, b| b.best.similarity.total_cmp(&a.best.similarity).then_with(|| a.product.product_id.cmp(&b.product.product_id)));
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
        let g = group(hits, true);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].product.product_id, "a");
        assert_eq!(g[0].best, ImageHit { image_id: 1, similarity: 0.9 });
        assert_eq!(g[0].second, Some(ImageHit { image_id: 3, similarity: 0.7 }));
        assert_eq!(g[1].second, None);
        let g = group(vec![(1, 0.9, a)], false);
        assert_eq!(g[0].second, None);
    }
}
