//! Self-calibration: the index fits its own confidence mapping, presence
//! model and counterfeit thresholds from its catalog alone, without labelled
//! queries. `knockoff index`, `knockoff tune` and the service's background
//! refit call [`self_calibrate`].
//!
//! Each sampled catalog photo is looked up (exhaustively, nearest image per
//! product) against the rest of the catalog under two held-out schemes, because
//! a new listing photo may come from the same shoot as the catalog's photos
//! or from a different one, and we cannot know which:
//! - **same shoot** (easy): each product's photos in indexing order, first
//!   half against second half;
//! - **another shoot** (hard): each product's photos split in two by 2-means
//!   on their vectors, one cluster against the other.
//!
//! Each lookup gives a positive case (the photo's product is in the gallery)
//! and, with its product dropped from the ranking, a "none of these" case.
//! The top-product mapping is fitted on the positives, the presence model on
//! positives vs none-cases weighted by an assumed share of out-of-catalog
//! queries, and the counterfeit thresholds on all of them
//! ([`super::fit_risk_thresholds`]). Memory: one ranking at a time (top 11
//! products kept per lookup), at most `max_lookups` lookups per scheme.

use std::collections::HashMap;

use serde::Serialize;

use super::{fit_risk_thresholds, FitError, RankedLookup};
use crate::catalog::{Catalog, CatalogError, FitOptions, Projection};
use crate::search::calibration::{fit_logistic, fit_logistic_weighted, Calibration, CALIBRATION_FILE};
use crate::search::{Presence, VerdictConfig};

/// Settings of [`self_calibrate`].
#[derive(Debug, Clone)]
pub struct SelfCalOptions {
    /// Lookups per held-out scheme (spread evenly over the catalog's photos).
    pub max_lookups: usize,
    /// Share of queries assumed to show a product outside the catalog.
    pub prior_none: f64,
}

impl Default for SelfCalOptions {
    fn default() -> Self {
        SelfCalOptions { max_lookups: 1500, prior_none: 0.1 }
    }
}

/// What [`self_calibrate`] found.
#[derive(Debug, Clone, Serialize)]
pub struct SelfCalReport {
    /// Lookups whose product kept photos in the gallery, per scheme.
    pub n_same_shoot: usize,
    pub n_other_shoot: usize,
    /// Top-1 accuracy of those lookups, per scheme.
    pub top1_same_shoot: f64,
    pub top1_other_shoot: f64,
    /// "None of these" cases (lookups with their product dropped).
    pub n_none: usize,
    pub seconds: f64,
    #[serde(skip)]
    pub calibration: Calibration,
}

/// Why self-calibration did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Skipped {
    /// Fewer than 2 products, or no product with 2 photos: nothing to hold out.
    TooFewPhotos { products: usize, with_two_photos: usize },
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::TooFewPhotos { products, with_two_photos } => write!(
                f,
                "{products} products, {with_two_photos} with two or more photos: self-calibration needs at least 2 products and 10 with several photos (the model's shipped calibration applies)"
            ),
        }
    }
}

/// Fits the index's calibration from its own photos and writes it to
/// `<index>/calibration.json`. `Ok(Err(skipped))` when the catalog cannot
/// calibrate itself (then any earlier calibration file is left as it is).
pub fn self_calibrate(catalog: &Catalog, opts: &SelfCalOptions) -> Result<Result<SelfCalReport, Skipped>, FitError> {
    let t0 = std::time::Instant::now();
    let labelled = catalog.labelled_vectors()?;
    // With a projection applied, each held-out side is looked up in a projection
    // fitted without it (one fitted on all photos has seen the queries).
    let projection = catalog.projection().map(|p| FitOptions { shrinkage: p.info.shrinkage, dims: Some(p.info.out_dim) });
    let mut sizes: HashMap<i64, usize> = HashMap::new();
    for (l, _) in &labelled {
        *sizes.entry(*l).or_default() += 1;
    }
    let with_two = sizes.values().filter(|n| **n >= 2).count();
    if sizes.len() < 2 || with_two < 10 {
        return Ok(Err(Skipped::TooFewPhotos { products: sizes.len(), with_two_photos: with_two }));
    }
    let model = catalog.model();
    let same = held_out_lookups(&labelled, &split_by_order(&labelled), opts.max_lookups, projection, model)?;
    let other = held_out_lookups(&labelled, &split_by_cluster(&labelled), opts.max_lookups, projection, model)?;
    let labels = catalog.product_labels();
    let positives: Vec<&RankedLookup<i64>> = same.iter().chain(&other).collect();
    let nones: Vec<RankedLookup<i64>> = positives.iter().map(|l| without_truth(l)).collect();
    let x = |l: &RankedLookup<i64>| {
        let s1 = l.top.first().map_or(0.0, |t| t.1);
        (s1, s1 - l.top.get(1).map_or(0.0, |t| t.1))
    };
    let correct = |l: &RankedLookup<i64>| l.top.first().is_some_and(|t| t.0 == l.truth);
    let mapping =
        fit_logistic(&positives.iter().map(|l| x(l)).collect::<Vec<_>>(), &positives.iter().map(|l| correct(l)).collect::<Vec<_>>());
    // Presence: positives (weight 1 − prior) against none-cases (weight prior), mean weight 1.
    let (np, nn) = (positives.len() as f64, nones.len() as f64);
    let n = np + nn;
    let mut px: Vec<(f32, f32)> = positives.iter().map(|l| x(l)).collect();
    px.extend(nones.iter().map(x));
    let py: Vec<bool> = (0..positives.len()).map(|_| true).chain(nones.iter().map(|_| false)).collect();
    let pw: Vec<f64> =
        (0..positives.len()).map(|_| (1.0 - opts.prior_none) * n / np).chain(nones.iter().map(|_| opts.prior_none * n / nn)).collect();
    let [w_sim, w_margin, bias] = fit_logistic_weighted(&px, &py, &pw);
    let presence = Presence { w_sim, w_margin, bias, prior_none: opts.prior_none };
    let mut calibration = Calibration {
        mapping,
        model: catalog.model().to_string(),
        fitted_at: crate::util::now_rfc3339(),
        n_queries: positives.len(),
        n_correct: positives.iter().filter(|l| correct(l)).count(),
        heldout_ece: std::collections::BTreeMap::new(),
        queries: vec![format!(
            "self-calibration: {} catalog photos looked up against the rest (same shoot / another shoot), {} with their product removed",
            positives.len(),
            nones.len()
        )],
        projection: catalog.projection().map(|p| p.info.id.clone()),
        verdict: None,
        presence: Some(presence),
    };
    let mut cfg = VerdictConfig::default();
    cfg.apply(&calibration);
    let all: Vec<RankedLookup<i64>> = positives.iter().map(|l| (*l).clone()).chain(nones).collect();
    calibration.verdict = fit_risk_thresholds(&all, &labels, &cfg);
    let path = catalog.dir().join(CALIBRATION_FILE);
    super::save_calibration(&calibration, &path)?;
    let top1 = |v: &[RankedLookup<i64>]| if v.is_empty() { 0.0 } else { v.iter().filter(|l| correct(l)).count() as f64 / v.len() as f64 };
    Ok(Ok(SelfCalReport {
        n_same_shoot: same.len(),
        n_other_shoot: other.len(),
        top1_same_shoot: top1(&same),
        top1_other_shoot: top1(&other),
        n_none: positives.len(),
        seconds: t0.elapsed().as_secs_f64(),
        calibration,
    }))
}

/// The same lookup with its product removed from the ranking: a case whose right answer is "none".
fn without_truth(l: &RankedLookup<i64>) -> RankedLookup<i64> {
    RankedLookup { truth: l.truth, top: l.top.iter().filter(|t| t.0 != l.truth).take(10).copied().collect() }
}

/// Each product's photos in indexing order: first half 0, second half 1.
fn split_by_order(labelled: &[(i64, Vec<f32>)]) -> Vec<u8> {
    let mut members: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, (l, _)) in labelled.iter().enumerate() {
        members.entry(*l).or_default().push(i);
    }
    let mut side = vec![0u8; labelled.len()];
    for idx in members.values() {
        for (rank, i) in idx.iter().enumerate() {
            side[*i] = u8::from(rank * 2 >= idx.len());
        }
    }
    side
}

/// Each product's photos split by 2-means on their (unit) vectors, seeded
/// with its two least similar photos: two "shoots".
fn split_by_cluster(labelled: &[(i64, Vec<f32>)]) -> Vec<u8> {
    let mut members: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, (l, _)) in labelled.iter().enumerate() {
        members.entry(*l).or_default().push(i);
    }
    let mut side = vec![0u8; labelled.len()];
    for idx in members.values().filter(|m| m.len() >= 2) {
        let v = |i: usize| labelled[idx[i]].1.as_slice();
        // Seeds: the photo least like the first, then the photo least like that one.
        let far = |from: &[f32]| (0..idx.len()).min_by(|a, b| dot(from, v(*a)).total_cmp(&dot(from, v(*b)))).unwrap_or(0);
        let a = far(v(0));
        let b = far(v(a));
        let mut centres = [v(a).to_vec(), v(b).to_vec()];
        let mut assign = vec![0u8; idx.len()];
        for _ in 0..10 {
            for (k, slot) in assign.iter_mut().enumerate() {
                *slot = u8::from(dot(v(k), &centres[1]) > dot(v(k), &centres[0]));
            }
            for (c, centre) in centres.iter_mut().enumerate() {
                let mut sum = vec![0f32; centre.len()];
                for k in (0..idx.len()).filter(|k| usize::from(assign[*k]) == c) {
                    sum.iter_mut().zip(v(k)).for_each(|(s, x)| *s += x);
                }
                // Unit centres: an unnormalised sum would pull every photo into the larger cluster.
                let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    *centre = sum.into_iter().map(|x| x / norm).collect();
                }
            }
        }
        for (k, i) in idx.iter().enumerate() {
            side[*i] = assign[k];
        }
    }
    side
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Looks each side's photos (at most `max` in all, evenly spread) up
/// against the other side — in a projection fitted on that other side when
/// `projection` is given: the best 11 products (nearest image each), for
/// photos whose product has photos on the other side.
fn held_out_lookups(
    labelled: &[(i64, Vec<f32>)],
    side: &[u8],
    max: usize,
    projection: Option<FitOptions>,
    model: &str,
) -> Result<Vec<RankedLookup<i64>>, CatalogError> {
    let mut out = Vec::new();
    for f in 0..2u8 {
        let gallery: Vec<usize> = (0..labelled.len()).filter(|i| side[*i] != f).collect();
        let known: std::collections::HashSet<i64> = gallery.iter().map(|i| labelled[*i].0).collect();
        let queries: Vec<usize> = (0..labelled.len()).filter(|i| side[*i] == f && known.contains(&labelled[*i].0)).collect();
        let cap = (max / 2).max(1);
        let queries: Vec<usize> = if queries.len() > cap { (0..cap).map(|k| queries[k * queries.len() / cap]).collect() } else { queries };
        if queries.is_empty() {
            continue;
        }
        let space: Option<Projection> = match projection {
            Some(opts) => {
                let vecs: Vec<&[f32]> = gallery.iter().map(|i| labelled[*i].1.as_slice()).collect();
                let labels: Vec<i64> = gallery.iter().map(|i| labelled[*i].0).collect();
                Some(Projection::fit(&vecs, &labels, model, opts)?)
            }
            None => None,
        };
        let view = |i: usize| -> std::borrow::Cow<'_, [f32]> {
            match &space {
                Some(p) => std::borrow::Cow::Owned(p.apply(&labelled[i].1)),
                None => std::borrow::Cow::Borrowed(labelled[i].1.as_slice()),
            }
        };
        let gallery_vecs: Vec<std::borrow::Cow<'_, [f32]>> = gallery.iter().map(|i| view(*i)).collect();
        let gallery_refs: Vec<&[f32]> = gallery_vecs.iter().map(AsRef::as_ref).collect();
        let gallery_labels: Vec<i64> = gallery.iter().map(|i| labelled[*i].0).collect();
        for q in queries {
            let mut ranked = super::cv::rank_products(&view(q), &gallery_refs, &gallery_labels);
            ranked.truncate(11);
            out.push(RankedLookup { truth: labelled[q].0, top: ranked });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: [f32; 3]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn splits_cut_each_product_in_two_by_order_and_by_shoot() {
        // Product 1: two shoots (near x, near y), interleaved in indexing order; product 2: one shoot.
        let labelled: Vec<(i64, Vec<f32>)> = vec![
            (1, unit([1.0, 0.1, 0.0])),
            (1, unit([0.1, 1.0, 0.0])),
            (1, unit([1.0, 0.0, 0.1])),
            (1, unit([0.0, 1.0, 0.1])),
            (2, unit([0.0, 0.1, 1.0])),
            (2, unit([0.1, 0.0, 1.0])),
        ];
        assert_eq!(split_by_order(&labelled), vec![0, 0, 1, 1, 0, 1]);
        let c = split_by_cluster(&labelled);
        assert_eq!(c[0], c[2], "same shoot, same side: {c:?}");
        assert_eq!(c[1], c[3]);
        assert_ne!(c[0], c[1], "the two shoots end up on opposite sides: {c:?}");
        assert_ne!(c[4], c[5], "two photos of one shoot still split in two: {c:?}");
        // Every photo whose product is on the other side is looked up there; its own product is the truth.
        let looked = held_out_lookups(&labelled, &c, 100, None, "m").unwrap();
        assert_eq!(looked.len(), 6);
        assert!(looked.iter().all(|l| l.top.iter().any(|t| t.0 == l.truth)));
        assert!(looked.iter().all(|l| l.top.windows(2).all(|w| w[0].1 >= w[1].1)));
    }
}
