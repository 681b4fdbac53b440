//! Blocked k-fold cross-validation of a projection on the catalog's own
//! labelled photos: how much the projection helps, and the lookups that
//! calibration and the verdict margin are fitted on.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::RankedLookup;
use crate::catalog::{CatalogError, FitOptions, Projection};
use crate::search::calibration::CalibrationSample;

/// What cross-validating a projection on the catalog's own photos found.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionCv {
    pub folds: usize,
    /// Photos looked up (those whose product keeps a photo in the other folds).
    pub n_queries: usize,
    /// Top-1 product accuracy without and with the projection (same folds).
    pub top1_raw: f64,
    pub top1_projected: f64,
    /// Calibration samples in the projected space.
    #[serde(skip)]
    pub samples: Vec<CalibrationSample>,
    /// Per lookup: its product (row id) and the best 5 products in the projected space.
    #[serde(skip)]
    pub ranked: Vec<RankedLookup<i64>>,
}

/// Blocked folds: each product's photos (in indexing order) are cut into
/// `folds` contiguous runs. Photos taken one after another are often near
/// duplicates; interleaved folds would let each query find its twin and make
/// both the accuracy and the calibration far too optimistic.
fn blocked_folds(labelled: &[(i64, Vec<f32>)], folds: usize) -> Vec<usize> {
    let mut fold_of = vec![0usize; labelled.len()];
    let mut members: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, (l, _)) in labelled.iter().enumerate() {
        members.entry(*l).or_default().push(i);
    }
    for idx in members.values() {
        for (rank, i) in idx.iter().enumerate() {
            fold_of[*i] = rank * folds / idx.len();
        }
    }
    fold_of
}

/// K-fold cross-validation of a projection (at most `max_lookups` lookups in
/// all): each fold's photos are looked up (exhaustively, nearest image per
/// product) against the other folds, with a projection fitted on those other
/// folds only, and without one.
pub fn cross_validate_projection(
    labelled: &[(i64, Vec<f32>)],
    model: &str,
    opts: FitOptions,
    folds: usize,
    max_lookups: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<ProjectionCv, CatalogError> {
    let folds = folds.max(2);
    Projection::require_photos(&labelled.iter().map(|(l, _)| *l).collect::<Vec<_>>())?;
    let mut samples = Vec::new();
    let mut ranked = Vec::new();
    let (mut right_raw, mut right_proj, mut n) = (0usize, 0usize, 0usize);
    let fold_of = blocked_folds(labelled, folds);
    for f in 0..folds {
        progress(f, folds);
        let (test, train): (Vec<usize>, Vec<usize>) = (0..labelled.len()).partition(|i| fold_of[*i] == f);
        let train_vecs: Vec<&[f32]> = train.iter().map(|i| labelled[*i].1.as_slice()).collect();
        let train_labels: Vec<i64> = train.iter().map(|i| labelled[*i].0).collect();
        let known: HashSet<i64> = train_labels.iter().copied().collect();
        let queries: Vec<usize> = test.into_iter().filter(|i| known.contains(&labelled[*i].0)).collect();
        // Large catalogs: an evenly spread subset keeps the exhaustive lookups affordable.
        let cap = (max_lookups / folds).max(1);
        let queries: Vec<usize> = if queries.len() > cap { (0..cap).map(|k| queries[k * queries.len() / cap]).collect() } else { queries };
        if queries.is_empty() {
            continue;
        }
        let p = Projection::fit(&train_vecs, &train_labels, model, opts)?;
        let gallery_proj: Vec<Vec<f32>> = train_vecs.iter().map(|v| p.apply(v)).collect();
        let gallery_proj: Vec<&[f32]> = gallery_proj.iter().map(Vec::as_slice).collect();
        for q in queries {
            let (label, v) = (labelled[q].0, &labelled[q].1);
            let raw = rank_products(v, &train_vecs, &train_labels);
            let proj = rank_products(&p.apply(v), &gallery_proj, &train_labels);
            n += 1;
            right_raw += usize::from(raw[0].0 == label);
            right_proj += usize::from(proj[0].0 == label);
            let second = proj.get(1).map_or(0.0, |r| r.1);
            samples.push(CalibrationSample { similarity: proj[0].1, margin: proj[0].1 - second, correct: proj[0].0 == label });
            ranked.push(RankedLookup { truth: label, top: proj.into_iter().take(5).collect() });
        }
    }
    progress(folds, folds);
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Ok(ProjectionCv { folds, n_queries: n, top1_raw: share(right_raw), top1_projected: share(right_proj), samples, ranked })
}

/// Products (label key, similarity of their nearest image), best first; the
/// gallery is never empty here (each query's product has photos in it).
pub(super) fn rank_products(q: &[f32], gallery: &[&[f32]], labels: &[i64]) -> Vec<(i64, f32)> {
    let mut best: HashMap<i64, f32> = HashMap::new();
    for (g, l) in gallery.iter().zip(labels) {
        let s: f32 = q.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
        let e = best.entry(*l).or_insert(f32::MIN);
        *e = e.max(s);
    }
    let mut ranked: Vec<(i64, f32)> = best.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}
