//! Reviewed cases as labelled real lookups: what analysts decided
//! ([`crate::review`]) is the one source of labelled listing photos from the
//! marketplace itself, so self-calibration fits on them beside the catalog's
//! own held-out photos (or synthetic views).
//!
//! Each case decided `authentic` or `counterfeit` on a product is looked up
//! again (its model vector, in the index's space) against the catalog less
//! the references decisions added (a case would find its own photo): a
//! positive lookup when its product keeps other photos, else — like a case
//! decided `not_in_catalog` — a "none of these" lookup.
//!
//! **The weighting rule.** Below [`REVIEWS_TO_LEAD`] reviewed lookups each
//! counts once; from then on each counts `own / reviewed` times (at least
//! once), so that together they weigh as much as all of the catalog's own
//! lookups and calibration follows the marketplace's photos. The verdict
//! thresholds count each reviewed lookup once (a bound must rest on the
//! number of photos really seen).

use std::collections::HashSet;

use crate::catalog::{Catalog, CatalogError};
use crate::fit::cv::rank_products_many;
use crate::metrics::RankedLookup;

/// Reviewed lookups from this many on weigh as much as all of the catalog's own lookups together.
pub const REVIEWS_TO_LEAD: usize = 30;

/// Reviewed cases as lookups: positives (their product in the gallery) and none-cases.
#[derive(Debug, Clone, Default)]
pub(super) struct Reviewed {
    pub(super) positives: Vec<RankedLookup<i64>>,
    pub(super) nones: Vec<RankedLookup<i64>>,
}

impl Reviewed {
    pub(super) fn len(&self) -> usize {
        self.positives.len() + self.nones.len()
    }

    /// How many times each reviewed lookup counts beside `own` lookups of the catalog's own (the rule in the module doc).
    pub(super) fn weight(&self, own: usize) -> usize {
        let n = self.len();
        if n >= REVIEWS_TO_LEAD {
            (own / n).max(1)
        } else {
            1
        }
    }

    /// The out-of-catalog share `p_no_match` is fitted to: `stated`, or, from
    /// [`REVIEWS_TO_LEAD`] reviews on, the share of them that showed no
    /// catalogued product when that is higher (reviewed listings of missing and
    /// of catalogued products look alike to the ranking, so there the share
    /// decides `p_no_match`, and the marketplace's own share beats an assumed one).
    pub(super) fn none_share(&self, stated: f64) -> f64 {
        if self.len() < REVIEWS_TO_LEAD {
            return stated;
        }
        stated.max(self.nones.len() as f64 / self.len() as f64)
    }

    /// `own` followed by `extra`, each of those `times` times.
    pub(super) fn joined(own: &[RankedLookup<i64>], extra: &[RankedLookup<i64>], times: usize) -> Vec<RankedLookup<i64>> {
        let mut all = own.to_vec();
        for _ in 0..times {
            all.extend_from_slice(extra);
        }
        all
    }

    /// How they were counted, for the calibration's `queries` note.
    pub(super) fn described(&self, own: usize) -> String {
        if self.len() == 0 {
            return String::new();
        }
        format!(
            "; with {} reviewed cases ({} of a catalogued product, {} of none), each counted {} times",
            self.len(),
            self.positives.len(),
            self.nones.len(),
            self.weight(own)
        )
    }
}

/// The catalog's reviewed cases as lookups against `images` (the catalog's
/// live images as (id, product key, model vector)) less the decisions' references.
pub(super) fn reviewed_lookups(catalog: &Catalog, images: &[(i64, i64, Vec<f32>)]) -> Result<Reviewed, CatalogError> {
    let mut cases = catalog.records().reviewed_cases(catalog.model())?;
    cases.retain(|c| c.embedding.len() == catalog.dim());
    if cases.is_empty() {
        return Ok(Reviewed::default());
    }
    let references: HashSet<i64> = cases.iter().filter_map(|c| c.reference_image).collect();
    let projection = catalog.projection();
    let space = |v: &[f32]| projection.as_ref().map_or_else(|| v.to_vec(), |p| p.apply(v));
    let gallery: Vec<&(i64, i64, Vec<f32>)> = images.iter().filter(|i| !references.contains(&i.0)).collect();
    let vecs: Vec<Vec<f32>> = gallery.iter().map(|i| space(&i.2)).collect();
    let labels: Vec<i64> = gallery.iter().map(|i| i.1).collect();
    let known: HashSet<i64> = labels.iter().copied().collect();
    let queries: Vec<Vec<f32>> = cases.iter().map(|c| space(&c.embedding)).collect();
    let mut out = Reviewed::default();
    for (c, top) in cases.iter().zip(rank_products_many(&queries, &vecs, &labels, 11)) {
        match c.product.filter(|p| c.decision != "not_in_catalog" && known.contains(p)) {
            Some(truth) => out.positives.push(RankedLookup { truth, top }),
            None => out.nones.push(RankedLookup { truth: -1, top: top.into_iter().take(10).collect() }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_count_once_until_there_are_enough_then_as_much_as_the_catalog() {
        let l = RankedLookup { truth: 1, top: vec![(1, 0.9)] };
        let few = Reviewed { positives: vec![l.clone(); 10], nones: Vec::new() };
        assert_eq!(few.weight(1000), 1);
        let many = Reviewed { positives: vec![l.clone(); 40], nones: vec![l.clone(); 10] };
        assert_eq!(many.weight(1000), 20);
        assert_eq!(many.weight(10), 1);
        assert_eq!(Reviewed::joined(std::slice::from_ref(&l), &[l.clone(), l.clone()], 3).len(), 7);
    }

    #[test]
    fn the_out_of_catalog_share_comes_from_enough_decisions_when_higher_than_stated() {
        let l = RankedLookup { truth: 1, top: vec![(1, 0.9)] };
        let few = Reviewed { positives: vec![l.clone(); 10], nones: vec![l.clone(); 10] };
        assert!((few.none_share(0.05) - 0.05).abs() < 1e-12, "under 30 reviews the stated share stays");
        let many = Reviewed { positives: vec![l.clone(); 30], nones: vec![l.clone(); 10] };
        assert!((many.none_share(0.05) - 0.25).abs() < 1e-12);
        assert!((many.none_share(0.4) - 0.4).abs() < 1e-12, "never below the stated share");
    }
}
