//! The lookup use case: a query vector in, ranked products with their
//! confidences and the verdict out.

use serde::Serialize;

use super::copy::{decides, gate, rank_copies, CopyMatch, Gate, COPY_CANDIDATES};
use super::summary::{Evidence, Reference};
use super::{assess, search_ranked, Candidate, ImageHit, SearchRequest, VerdictConfig, VerdictKind};
use crate::catalog::{Catalog, CatalogError, Label};
use crate::embed::Described;

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

/// The answer to one lookup: the matches (each `confidence` the probability
/// that the photo shows that product) and the rest of the distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lookup {
    pub matches: Vec<Match>,
    /// Probability mass on counterfeit-labelled products (over the top
    /// [`PROBABILITY_CANDIDATES`] products, whatever `k` is).
    pub p_counterfeit: f32,
    /// Probability mass on authentic-labelled products.
    pub p_authentic: f32,
    /// Probability that the photo shows none of the catalog's products.
    pub p_no_match: f32,
    pub verdict: VerdictKind,
    /// One plain sentence an analyst can act on ([`super::summary`]).
    pub summary: String,
    /// The facts the verdict rests on.
    pub evidence: Evidence,
    /// Deprecated alias of `summary`, kept one release (it was the engineer's account of the verdict).
    pub reason: String,
    /// Catalog images the photo is a copy of (`p_copy` at least the model's
    /// `report_at`), best first; empty when the photo had no copy features or
    /// the copy check's gate found no candidate worth verifying.
    pub copies: Vec<CopyMatch>,
    /// Every candidate image the copy check verified, best first (for eval).
    #[serde(skip)]
    pub copy_ranking: Vec<CopyMatch>,
    /// What the copy check's gate saw (`None` without copy features).
    #[serde(skip)]
    pub copy_gate: Option<Gate>,
}

/// The probability model always weighs at least this many products, so that
/// `p_*` do not depend on how many matches were asked for.
pub const PROBABILITY_CANDIDATES: usize = 10;

/// The images the copy check verifies: the nearest to the whole photo, then
/// the nearest few to each content region, without repeats.
fn copy_candidates(
    catalog: &Catalog,
    query: &Described,
    mut nearest: Vec<(i64, f32)>,
    req: &SearchRequest,
) -> Result<Vec<(i64, f32)>, CatalogError> {
    for region in &query.regions {
        for (id, sim, _) in catalog.search_images(region, REGION_CANDIDATES, None, &req.filter)? {
            if !nearest.iter().any(|(n, _)| *n == id) {
                nearest.push((id, sim));
            }
        }
    }
    Ok(nearest)
}

/// Catalog images verified per content region of the photo.
const REGION_CANDIDATES: usize = 3;

/// Searches the catalog for `query` (its model vector; its copy features, when
/// it has them, are checked against the nearest images), then scores and decides.
pub fn lookup(catalog: &Catalog, query: &Described, req: &SearchRequest, cfg: &VerdictConfig) -> Result<Lookup, CatalogError> {
    let wide = SearchRequest { k: req.k.max(PROBABILITY_CANDIDATES), ..req.clone() };
    let (ranked, nearest) = search_ranked(catalog, &query.vector, if req.k == 0 { req } else { &wide }, COPY_CANDIDATES)?;
    let (copy_ranking, copy_gate) = match &query.copy {
        Some(q) => {
            let candidates = copy_candidates(catalog, query, nearest, req)?;
            let seen = gate(catalog, q, &candidates, cfg.copy.gate_inliers);
            let ranking = if seen.passed() { rank_copies(catalog, q.full(), &candidates, &cfg.copy) } else { Vec::new() };
            (ranking, Some(seen))
        }
        None => (Vec::new(), None),
    };
    let copies: Vec<CopyMatch> = copy_ranking.iter().filter(|c| c.p_copy >= cfg.copy.report_at).cloned().collect();
    let candidates: Vec<Candidate<'_>> = ranked
        .iter()
        .map(|m| Candidate { product_id: &m.product.product_id, label: m.product.label, similarity: m.best.similarity })
        .collect();
    let assessment = assess(&candidates, cfg);
    let p = assessment.probabilities;
    // A copy of a known fake that accuses decides alone; otherwise the probabilities do.
    let copy_decided = decides(&copies, cfg, p.p_counterfeit);
    let verdict = if copy_decided { VerdictKind::LikelyCounterfeit } else { assessment.verdict };
    let references: Vec<Reference> = ranked
        .iter()
        .zip(&p.confidences)
        .map(|(m, c)| Reference {
            product_id: m.product.product_id.clone(),
            name: m.product.name.clone(),
            label: m.product.label,
            image_id: m.best.image_id,
            similarity: m.best.similarity,
            confidence: *c,
        })
        .collect();
    let evidence = Evidence::of(&references, [p.p_counterfeit, p.p_authentic, p.p_no_match], cfg, copies.first(), copy_decided);
    let summary = super::summary(verdict, &evidence);
    let matches = ranked
        .iter()
        .zip(p.confidences)
        .take(req.k)
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
    Ok(Lookup {
        matches,
        p_counterfeit: p.p_counterfeit,
        p_authentic: p.p_authentic,
        p_no_match: p.p_no_match,
        verdict,
        reason: summary.clone(),
        summary,
        evidence,
        copies,
        copy_ranking,
        copy_gate,
    })
}
