//! Blocked k-fold cross-validation of a projection on the catalog's own
//! labelled photos: how much the projection helps, and the lookups that
//! calibration and the verdict margin are fitted on.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::catalog::{CatalogError, FitOptions, Projection};
use crate::metrics::RankedLookup;
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
        let raw_queries: Vec<&[f32]> = queries.iter().map(|q| labelled[*q].1.as_slice()).collect();
        let projected: Vec<Vec<f32>> = raw_queries.iter().map(|v| p.apply(v)).collect();
        let raw_ranked = rank_products_many(&raw_queries, &train_vecs, &train_labels, 1);
        let proj_ranked = rank_products_many(&projected, &gallery_proj, &train_labels, 5);
        for ((q, raw), proj) in queries.into_iter().zip(raw_ranked).zip(proj_ranked) {
            let label = labelled[q].0;
            n += 1;
            right_raw += usize::from(raw[0].0 == label);
            right_proj += usize::from(proj[0].0 == label);
            let second = proj.get(1).map_or(0.0, |r| r.1);
            samples.push(CalibrationSample { similarity: proj[0].1, margin: proj[0].1 - second, correct: proj[0].0 == label });
            ranked.push(RankedLookup { truth: label, top: proj });
        }
    }
    progress(folds, folds);
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Ok(ProjectionCv { folds, n_queries: n, top1_raw: share(right_raw), top1_projected: share(right_proj), samples, ranked })
}

/// Queries ranked together (in parallel, [`QUERY_BLOCK`] at a time).
const QUERY_BLOCK: usize = 32;

/// The best `keep` products of each query (label key, similarity of its
/// nearest image in `gallery`), best first, ties by key. Each block of
/// queries reads the gallery once, not each query (a background refit's
/// memory traffic is what slows lookups beside it), with the index's SIMD
/// dot product; blocks run in parallel.
pub(super) fn rank_products_many<Q, G>(queries: &[Q], gallery: &[G], labels: &[i64], keep: usize) -> Vec<Vec<(i64, f32)>>
where
    Q: AsRef<[f32]> + Sync,
    G: AsRef<[f32]> + Sync,
{
    use rayon::prelude::*;
    let mut keys: Vec<i64> = labels.to_vec();
    keys.sort_unstable();
    keys.dedup();
    let column: Vec<usize> = labels.iter().map(|l| keys.binary_search(l).unwrap_or(0)).collect();
    queries
        .par_chunks(QUERY_BLOCK)
        .flat_map_iter(|block| {
            let mut best = vec![f32::MIN; block.len() * keys.len()];
            for (g, c) in gallery.iter().zip(&column) {
                for (i, q) in block.iter().enumerate() {
                    let b = &mut best[i * keys.len() + c];
                    *b = b.max(crate::catalog::vectors::dot(q.as_ref(), g.as_ref()));
                }
            }
            let keys = &keys;
            (0..block.len()).map(move |i| top_products(&best[i * keys.len()..(i + 1) * keys.len()], keys, keep)).collect::<Vec<_>>()
        })
        .collect()
}

/// The `keep` best of `sims` (one per key), best first, ties by key.
fn top_products(sims: &[f32], keys: &[i64], keep: usize) -> Vec<(i64, f32)> {
    let order = |a: &(i64, f32), b: &(i64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut ranked: Vec<(i64, f32)> = keys.iter().copied().zip(sims.iter().copied()).collect();
    if ranked.len() > keep && keep > 0 {
        ranked.select_nth_unstable_by(keep - 1, order);
        ranked.truncate(keep);
    }
    ranked.sort_by(order);
    ranked.truncate(keep);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every product's best similarity, sorted as documented: the plain way.
    fn reference(q: &[f32], gallery: &[Vec<f32>], labels: &[i64]) -> Vec<(i64, f32)> {
        let mut best: HashMap<i64, f32> = HashMap::new();
        for (g, l) in gallery.iter().zip(labels) {
            let s = crate::catalog::vectors::dot(q, g);
            best.entry(*l).and_modify(|b| *b = b.max(s)).or_insert(s);
        }
        let mut ranked: Vec<(i64, f32)> = best.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
    }

    #[test]
    fn many_queries_rank_as_one_at_a_time_with_ties_by_key() {
        let mut rng = crate::util::Rng::new(3);
        let vec = |rng: &mut crate::util::Rng| (0..37).map(|_| rng.range(-1.0, 1.0)).collect::<Vec<f32>>();
        let mut gallery: Vec<Vec<f32>> = (0..90).map(|_| vec(&mut rng)).collect();
        // Two products with the same best image: a tie, broken by key.
        gallery[7] = gallery[3].clone();
        let labels: Vec<i64> = (0..90).map(|i| [12, -4, 7, 30, 5][i % 5] + i64::from(i == 7)).collect();
        let queries: Vec<Vec<f32>> = (0..70).map(|i| if i == 0 { gallery[3].clone() } else { vec(&mut rng) }).collect();
        for keep in [1, 3, 6, 50] {
            let many = rank_products_many(&queries, &gallery, &labels, keep);
            assert_eq!(many.len(), queries.len());
            for (one, got) in queries.iter().zip(&many) {
                let want: Vec<(i64, f32)> = reference(one, &gallery, &labels).into_iter().take(keep).collect();
                assert_eq!(got, &want, "keep {keep}");
            }
        }
        let first = &rank_products_many(&queries[..1], &gallery, &labels, 2)[0];
        assert_eq!((first[0].0, first[1].0), (8, 30), "the tie of image 3 (product 30) and its copy (product 8) goes to the lower key");
        assert_eq!(first[0].1, first[1].1);
    }
}
