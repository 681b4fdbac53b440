//! Copy detection: is the query photo a (possibly edited) copy of a catalog
//! image, and where in the query does that image appear?
//!
//! Two different photos of one product share the product, not the pixels. A
//! copy keeps the catalog image's exact geometry: its local features
//! (`embed::local`) land, after one affine map (crop, rescale, aspect change,
//! small tilt, placement on a card or in a collage; mirrored copies through
//! the mirrored descriptors), within a few pixels of where the map sends
//! them. [`verify`] matches descriptors (nearest neighbour with a ratio test),
//! fits that map by RANSAC and counts the points it explains; [`CopyModel`]
//! turns the count into `p_copy`, a probability that the photo is a copy of
//! that image rather than another photo of the same thing. [`gate`] comes
//! first: most listing photos copy nothing, and only those whose quick glance
//! lines up with a candidate are described and verified in full.

mod gate;
mod verify;

use serde::Serialize;

use std::sync::Arc;

use crate::catalog::{Catalog, Label, Product};
use crate::embed::local::LocalFeatures;
pub use gate::{gate, Gate};
pub use verify::{photometric, verify, CopyEvidence, CopyModel, GATE_INLIERS};

/// Verified matches needed before the pixels are compared.
const MIN_INLIERS_FOR_PIXELS: usize = 8;
/// Catalog images whose pixels a lookup compares (those with the most matches).
const PIXEL_CHECKS: usize = 2;

/// Catalog images (the nearest by the model's vector) verified per lookup.
pub const COPY_CANDIDATES: usize = 6;

/// Where a copied catalog image appears in the query photo (0–1, from the top left).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Region {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
}

/// A catalog image the query photo copies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyMatch {
    pub image_id: i64,
    pub product_id: String,
    pub label: Label,
    /// Probability that the photo is a copy of this image (not just another photo of the product).
    pub p_copy: f32,
    /// Where the image appears in the photo.
    pub region: Region,
    /// Matched points the geometric check explains.
    pub inliers: usize,
    /// Share of the catalog image's points the check explains.
    #[serde(skip)]
    pub coverage: f32,
    /// Pixel correlation between the photo and the catalog image warped onto it (see [`photometric`]).
    pub correlation: Option<f32>,
    /// The copy model's log-odds (ranks the candidates; `p_copy` is clamped).
    #[serde(skip)]
    pub score: f32,
    pub mirrored: bool,
    /// The image's similarity to the photo under the model.
    pub similarity: f32,
    /// The explained point pairs (photo, catalog image), 0–1 coordinates, for drawing.
    #[serde(skip)]
    pub pairs: Vec<([f32; 2], [f32; 2])>,
}

/// Where the references a photo is checked against come from: the catalog's
/// images ([`rank_copies`]) or earlier review cases (`review::clusters`).
pub trait References: Sync {
    /// What a reference is besides its features (the catalog's product; nothing for a case).
    type About: Send;
    /// A reference's stored copy features (`None`: it has none).
    fn features(&self, id: i64) -> Option<(Arc<LocalFeatures>, Self::About)>;
    /// A reference's pixels, grey, for the photometric check (`None`: not kept).
    fn grey(&self, id: i64) -> Option<image::GrayImage>;
}

/// One candidate reference, checked: the geometric evidence, the pixel
/// correlation where it was compared, and the copy model's verdict on both.
pub struct Checked<T> {
    pub id: i64,
    /// The reference's similarity to the photo under the model.
    pub similarity: f32,
    pub features: Arc<LocalFeatures>,
    pub about: T,
    pub evidence: Option<CopyEvidence>,
    pub correlation: Option<f32>,
    pub p_copy: f32,
    /// The copy model's log-odds (ranks the candidates; `p_copy` is clamped).
    pub score: f32,
}

/// The copy check: verifies the photo's features against each candidate
/// reference (id, similarity), compares pixels for the `pixel_checks` with
/// the most matches, and returns them best first (`p_copy`, then inliers,
/// then similarity). Without its pixel check a candidate's `p_copy` stays low.
pub fn check_candidates<R: References>(
    refs: &R,
    query: &LocalFeatures,
    candidates: &[(i64, f32)],
    model: &CopyModel,
    pixel_checks: usize,
) -> Vec<Checked<R::About>> {
    type Verified<T> = (i64, f32, Arc<LocalFeatures>, T, Option<CopyEvidence>);
    let check = |part: &[(i64, f32)]| -> Vec<Verified<R::About>> {
        part.iter()
            .filter_map(|&(id, sim)| {
                let (features, about) = refs.features(id)?;
                let ev = verify(query, &features);
                Some((id, sim, features, about, ev))
            })
            .collect()
    };
    // Two halves side by side: a lookup's latency, not its CPU time, is what the copy check must not add to.
    let (first, second) = candidates.split_at(candidates.len() / 2);
    let verified: Vec<Verified<R::About>> = std::thread::scope(|s| {
        let other = s.spawn(|| check(second));
        let mut v = check(first);
        v.extend(other.join().unwrap_or_default());
        v
    });
    // The pixels are compared for the few candidates with the most matches only (each needs its thumbnail decoded).
    let mut by_inliers: Vec<(usize, usize)> = verified
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.4.as_ref().map(|e| (e.inliers, i)))
        .filter(|(n, _)| *n >= MIN_INLIERS_FOR_PIXELS)
        .collect();
    by_inliers.sort_by(|a, b| b.cmp(a));
    let compared: Vec<usize> = by_inliers.iter().take(pixel_checks).map(|(_, i)| *i).collect();
    let mut out: Vec<Checked<R::About>> = verified
        .into_iter()
        .enumerate()
        .map(|(i, (id, similarity, features, about, evidence))| {
            let correlation =
                evidence.as_ref().filter(|_| compared.contains(&i)).and_then(|e| photometric(query, &features, &refs.grey(id)?, e));
            let p_copy = model.p_copy(evidence.as_ref(), correlation);
            let score = model.logit(evidence.as_ref(), correlation);
            Checked { id, similarity, features, about, evidence, correlation, p_copy, score }
        })
        .collect();
    let inliers = |c: &Checked<R::About>| c.evidence.as_ref().map_or(0, |e| e.inliers);
    out.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then(inliers(b).cmp(&inliers(a))).then(b.similarity.total_cmp(&a.similarity)).then(a.id.cmp(&b.id))
    });
    out
}

/// The catalog's images as references.
struct CatalogImages<'a>(&'a Catalog);

impl References for CatalogImages<'_> {
    type About = Arc<Product>;
    fn features(&self, id: i64) -> Option<(Arc<LocalFeatures>, Arc<Product>)> {
        self.0.copy_features(id)
    }
    fn grey(&self, id: i64) -> Option<image::GrayImage> {
        let jpeg = self.0.records().thumbnail(id).ok()??;
        Some(image::load_from_memory(&jpeg).ok()?.to_luma8())
    }
}

/// Verifies the query against each candidate catalog image (id, similarity)
/// and returns them best first ([`check_candidates`]).
pub fn rank_copies(catalog: &Catalog, query: &LocalFeatures, candidates: &[(i64, f32)], model: &CopyModel) -> Vec<CopyMatch> {
    check_candidates(&CatalogImages(catalog), query, candidates, model, PIXEL_CHECKS)
        .into_iter()
        .map(|c| {
            let ev = c.evidence.as_ref();
            let region = ev.map_or([0.0; 4], |e| e.region);
            CopyMatch {
                image_id: c.id,
                product_id: c.about.product_id.clone(),
                label: c.about.label,
                p_copy: c.p_copy,
                score: c.score,
                region: Region { left: region[0], top: region[1], right: region[2], bottom: region[3] },
                inliers: ev.map_or(0, |e| e.inliers),
                coverage: ev.map_or(0.0, |e| e.inliers as f32 / e.catalog_points.max(1) as f32),
                correlation: c.correlation,
                mirrored: ev.is_some_and(|e| e.mirrored),
                similarity: c.similarity,
                pairs: c.evidence.map(|e| e.pairs).unwrap_or_default(),
            }
        })
        .collect()
}

/// Whether the copies alone decide the verdict: the best is of a
/// counterfeit reference, at a `p_copy` that accuses given the photo's
/// `p_counterfeit` ([`super::VerdictConfig::accuses_copy`]); the verdict is then
/// `likely_counterfeit`. Any other copy leaves the verdict to the probabilities
/// (the evidence names it).
pub fn decides(copies: &[CopyMatch], cfg: &super::VerdictConfig, p_counterfeit: f32) -> bool {
    copies.first().is_some_and(|c| c.label == Label::Counterfeit && cfg.accuses_copy(c.p_copy, p_counterfeit))
}
