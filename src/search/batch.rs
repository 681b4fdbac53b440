//! Many query photos looked up through the service's own path — fetch,
//! decode and embed one photo, then [`lookup`] — on several threads, each
//! timed; untimed, the full product ranking and the nearest images beside
//! each answer. `knockoff eval` measures these, `knockoff calibrate` fits on
//! them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::calibration::CalibrationSample;
use super::{lookup, search_products, Lookup, ProductMatch, ProductScore, SearchRequest, VerdictConfig, PROBABILITY_CANDIDATES};
use crate::catalog::{Catalog, CatalogError, Filter, Label};
use crate::embed::Embedder;
use crate::ingest::{fetch, FetchOptions};
use crate::metrics::RankedLookup;

/// How a batch is looked up.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub k: usize,
    pub verdict: VerdictConfig,
    pub concurrency: usize,
    pub product_score: ProductScore,
}

/// One photo looked up.
#[derive(Debug, Clone)]
pub struct Looked {
    /// The service's answer (`k` matches, confidences, verdict).
    pub answer: Lookup,
    /// Every product, best first.
    pub products: Vec<ProductMatch>,
    /// The product of each nearest image (up to 2,000), best first.
    pub image_products: Vec<String>,
    pub embed_ms: f64,
    pub search_ms: f64,
    /// The photo's model vector.
    pub vector: Vec<f32>,
}

impl Looked {
    /// The top product's best image and its similarity.
    pub fn top_image(&self) -> Option<(i64, f32)> {
        self.products.first().map(|m| (m.best.image_id, m.best.similarity))
    }

    /// The top product's best similarity minus the next product's.
    pub fn top_margin(&self) -> f32 {
        match (self.products.first(), self.products.get(1)) {
            (Some(a), Some(b)) => a.best.similarity - b.best.similarity,
            (Some(a), None) => a.best.similarity,
            _ => 0.0,
        }
    }

    /// The label of product `id`, if it is in the catalog.
    pub fn label_of(&self, id: &str) -> Option<Label> {
        self.products.iter().find(|m| m.product.product_id == id).map(|m| m.product.label)
    }

    /// What calibration learns from this lookup, given its right product (`None`: a distractor).
    pub fn sample(&self, truth: Option<&str>) -> CalibrationSample {
        let top = self.products.first().map(|m| m.product.product_id.as_str());
        CalibrationSample {
            similarity: self.top_image().map_or(0.0, |t| t.1),
            margin: self.top_margin(),
            correct: truth.is_some() && top == truth,
        }
    }

    /// This lookup's best products against its right one, for fitting the verdict.
    pub fn ranked_lookup(&self, truth: &str) -> RankedLookup<String> {
        let top = self.products.iter().take(PROBABILITY_CANDIDATES).map(|m| (m.product.product_id.clone(), m.score)).collect();
        RankedLookup { truth: truth.to_string(), top }
    }
}

/// Looks every photo (a path or URL) up on `opts.concurrency` threads; per
/// photo, in order, its lookup or why it failed.
pub fn look_up_all(
    catalog: &Catalog,
    embedder: &Embedder,
    photos: &[&str],
    opts: &BatchOptions,
) -> Result<Vec<Result<Looked, String>>, CatalogError> {
    let stats = catalog.stats()?;
    let n_products = usize::try_from(stats.counts.products.max(1)).unwrap_or(1);
    let n_images = usize::try_from(stats.counts.images.max(1)).unwrap_or(1);
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Result<Looked, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..opts.concurrency.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(photo) = photos.get(i) else { break };
                let looked = look_up(catalog, embedder, photo, opts, n_products, n_images);
                done.lock().push((i, looked));
            });
        }
    });
    let mut done = done.into_inner();
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, r)| r).collect())
}

/// One photo: the service's answer (timed) and, untimed, the full product
/// ranking and the nearest images.
fn look_up(
    catalog: &Catalog,
    embedder: &Embedder,
    photo: &str,
    opts: &BatchOptions,
    n_products: usize,
    n_images: usize,
) -> Result<Looked, String> {
    let fetch_opts = FetchOptions { allow_private: true, ..Default::default() };
    let t0 = Instant::now();
    let bytes = fetch(photo, &fetch_opts).map_err(|e| e.to_string())?;
    let described = embedder.describe_bytes(&bytes, photo).map_err(|e| e.to_string())?;
    let embed_ms = t0.elapsed().as_secs_f64() * 1e3;
    let score = opts.product_score;
    let t1 = Instant::now();
    let answer = lookup(catalog, &described, &SearchRequest { k: opts.k, product_score: score, ..Default::default() }, &opts.verdict)
        .map_err(|e| e.to_string())?;
    let search_ms = t1.elapsed().as_secs_f64() * 1e3;
    let v = &described.vector;
    let products = search_products(catalog, v, &SearchRequest { k: n_products, product_score: score, ..Default::default() })
        .map_err(|e| e.to_string())?;
    let n = n_images.min(2000);
    let images = catalog.search_images(v, n, Some(n.max(64)), &Filter::default()).map_err(|e| e.to_string())?;
    let image_products = images.into_iter().map(|(_, _, p)| p.product_id.clone()).collect();
    Ok(Looked { answer, products, image_products, embed_ms, search_ms, vector: described.vector })
}
