//! The held-out lookups self-calibration fits on: each product's photos,
//! in source order, cut in two halves, each half looked up against the
//! other — raw, and in a projection fitted on that other half only.

use std::collections::BTreeMap;

use crate::catalog::{CatalogError, FitOptions, Projection};
use crate::metrics::RankedLookup;

/// Held-out lookups in the model's space and, when a projection was tried, in it.
pub(super) struct HeldOut {
    pub(super) raw: Vec<RankedLookup<i64>>,
    pub(super) projected: Option<Vec<RankedLookup<i64>>>,
}

/// Each product's positions in `products`, in the order given.
pub(super) fn members(products: impl Iterator<Item = i64>) -> BTreeMap<i64, Vec<usize>> {
    let mut members: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, p) in products.enumerate() {
        members.entry(p).or_default().push(i);
    }
    members
}

/// Each product's photos in the order given (source order): first half 0, second half 1.
fn split_by_order(products: impl ExactSizeIterator<Item = i64>) -> Vec<u8> {
    let mut side = vec![0u8; products.len()];
    for idx in members(products).values() {
        for (rank, i) in idx.iter().enumerate() {
            side[*i] = u8::from(rank * 2 >= idx.len());
        }
    }
    side
}

/// One side of the split: its gallery (the other half's photos) and the
/// photos looked up against it (those whose product is in the gallery, at
/// most `cap`, spread evenly).
struct Half<'a> {
    queries: Vec<usize>,
    vecs: Vec<&'a [f32]>,
    labels: Vec<i64>,
}

impl<'a> Half<'a> {
    fn of(labelled: &'a [(i64, Vec<f32>)], side: &[u8], f: u8, cap: usize) -> Option<Half<'a>> {
        let gallery: Vec<usize> = (0..labelled.len()).filter(|i| side[*i] != f).collect();
        let known: std::collections::HashSet<i64> = gallery.iter().map(|i| labelled[*i].0).collect();
        let queries: Vec<usize> = (0..labelled.len()).filter(|i| side[*i] == f && known.contains(&labelled[*i].0)).collect();
        let queries: Vec<usize> = if queries.len() > cap { (0..cap).map(|k| queries[k * queries.len() / cap]).collect() } else { queries };
        (!queries.is_empty()).then(|| Half {
            queries,
            vecs: gallery.iter().map(|i| labelled[*i].1.as_slice()).collect(),
            labels: gallery.iter().map(|i| labelled[*i].0).collect(),
        })
    }

    /// Its photos looked up against its gallery (in `projection`, fitted on
    /// the gallery, when given): the best 11 products each.
    fn lookups(&self, labelled: &[(i64, Vec<f32>)], projection: Option<&Projection>) -> Vec<RankedLookup<i64>> {
        let queries: Vec<&[f32]> = self.queries.iter().map(|q| labelled[*q].1.as_slice()).collect();
        let ranked = match projection {
            None => crate::fit::cv::rank_products_many(&queries, &self.vecs, &self.labels, 11),
            Some(p) => {
                let apply = |vs: &[&[f32]]| vs.iter().map(|v| p.apply(v)).collect::<Vec<_>>();
                crate::fit::cv::rank_products_many(&apply(&queries), &apply(&self.vecs), &self.labels, 11)
            }
        };
        self.queries.iter().zip(ranked).map(|(q, top)| RankedLookup { truth: labelled[*q].0, top }).collect()
    }
}

/// Looks each half's photos (at most `max` in all) up against the other
/// half: raw and, with `projection`, in a projection fitted on that other
/// half. The best 11 products (nearest image each) per lookup, for photos
/// whose product has photos in the other half.
pub(super) fn held_out_lookups(
    labelled: &[(i64, Vec<f32>)],
    max: usize,
    projection: Option<FitOptions>,
    model: &str,
) -> Result<HeldOut, CatalogError> {
    let side = split_by_order(labelled.iter().map(|l| l.0));
    let halves: Vec<Half> = (0..2u8).filter_map(|f| Half::of(labelled, &side, f, (max / 2).max(1))).collect();
    // Every raw lookup first, then the projections: ranking right after a
    // projection fit ran at less than half the speed here.
    let raw = halves.iter().flat_map(|h| h.lookups(labelled, None)).collect();
    let mut projected = projection.map(|_| Vec::new());
    for h in &halves {
        let (Some(opts), Some(out)) = (projection, projected.as_mut()) else { break };
        match Projection::fit(&h.vecs, &h.labels, model, opts) {
            Ok(p) => out.extend(h.lookups(labelled, Some(&p))),
            // Too few photos per product in this half to learn one: no projection is tried.
            Err(CatalogError::Projection(_)) => projected = None,
            Err(e) => return Err(e),
        }
    }
    Ok(HeldOut { raw, projected })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: [f32; 3]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn halves_by_order_and_every_photo_is_looked_up_against_the_other_half() {
        let labelled: Vec<(i64, Vec<f32>)> = vec![
            (1, unit([1.0, 0.1, 0.0])),
            (1, unit([0.1, 1.0, 0.0])),
            (1, unit([1.0, 0.0, 0.1])),
            (1, unit([0.0, 1.0, 0.1])),
            (2, unit([0.0, 0.1, 1.0])),
            (2, unit([0.1, 0.0, 1.0])),
            (3, unit([0.5, 0.5, 0.5])),
        ];
        assert_eq!(split_by_order(labelled.iter().map(|l| l.0)), vec![0, 0, 1, 1, 0, 1, 0]);
        let held = held_out_lookups(&labelled, 100, None, "m").unwrap();
        assert!(held.projected.is_none());
        // Product 3 has one photo: nothing of it in the other half, so it is not looked up.
        assert_eq!(held.raw.len(), 6);
        assert!(held.raw.iter().all(|l| l.top.iter().any(|t| t.0 == l.truth) && l.top.windows(2).all(|w| w[0].1 >= w[1].1)));
        // At most `max` lookups, spread over both halves.
        assert_eq!(held_out_lookups(&labelled, 2, None, "m").unwrap().raw.len(), 2);
    }
}
