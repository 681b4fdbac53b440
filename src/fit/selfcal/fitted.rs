//! What self-calibration fits on its lookups (held-out halves or synthetic
//! views): the top-product mapping, the presence model (`p_no_match`, the
//! same lookups with their product removed as the none-cases), and the
//! verdict thresholds; and saving them as the catalog's calibration.

use super::reviewed::Reviewed;
use crate::catalog::Catalog;

/// The shares of uncatalogued products assumed (see [`super::SelfCalOptions`]).
pub(super) struct Shares {
    /// Among all queries (and authentic listings).
    pub(super) none: f64,
    /// Among counterfeit listings.
    pub(super) counterfeit_none: f64,
}
use crate::fit::{
    fit_identity_thresholds, fit_logistic, fit_logistic_weighted, fit_relative_margin, fit_risk_thresholds, save_calibration, FitError,
    RiskSample,
};
use crate::metrics::RankedLookup;
use crate::search::calibration::{Calibration, IdentityThresholds, VerdictThresholds};
use crate::search::{Mapping, Presence, TopOfRanking, VerdictConfig};

pub(super) fn top1(lookups: &[RankedLookup<i64>]) -> f64 {
    if lookups.is_empty() {
        return 0.0;
    }
    lookups.iter().filter(|l| correct(l)).count() as f64 / lookups.len() as f64
}

pub(super) fn correct(l: &RankedLookup<i64>) -> bool {
    l.top.first().is_some_and(|t| t.0 == l.truth)
}

/// (top similarity, margin to the next product).
pub(super) fn features(l: &RankedLookup<i64>) -> (f32, f32) {
    let s1 = l.top.first().map_or(0.0, |t| t.1);
    (s1, s1 - l.top.get(1).map_or(0.0, |t| t.1))
}

/// The top-product mapping fitted on `lookups`: a logistic of [`features`].
pub(super) fn logistic_mapping(lookups: &[RankedLookup<i64>]) -> Mapping {
    fit_logistic(&lookups.iter().map(features).collect::<Vec<_>>(), &lookups.iter().map(correct).collect::<Vec<_>>())
}

/// The top-product mapping fitted on `lookups`: a logistic of the margin in
/// units of the next products' spread ([`Mapping::RelativeMargin`]).
pub(super) fn relative_margin_mapping(lookups: &[RankedLookup<i64>]) -> Mapping {
    let tops: Vec<TopOfRanking> = lookups.iter().map(|l| TopOfRanking::of(&l.top.iter().map(|t| t.1).collect::<Vec<_>>())).collect();
    fit_relative_margin(&tops, &lookups.iter().map(correct).collect::<Vec<_>>())
}

/// A calibration of the index with `mapping`, fitted on `lookups`, described
/// as `fitted_on`; no presence model or thresholds yet.
pub(super) fn mapping_fitted_on(catalog: &Catalog, mapping: Mapping, lookups: &[RankedLookup<i64>], fitted_on: String) -> Calibration {
    Calibration {
        mapping,
        model: catalog.model().to_string(),
        fitted_at: crate::util::now_rfc3339(),
        n_queries: lookups.len(),
        n_correct: lookups.iter().filter(|l| correct(l)).count(),
        heldout_ece: std::collections::BTreeMap::new(),
        queries: vec![fitted_on],
        projection: catalog.projection().map(|p| p.info.id.clone()),
        verdict: None,
        presence: None,
        identity: None,
    }
}

/// Fits mapping, presence and thresholds on held-out `own` lookups and the
/// `reviewed` cases (counted as [`super::reviewed`] says) and saves them.
pub(super) fn calibrate_from(
    catalog: &Catalog,
    own: &[RankedLookup<i64>],
    reviewed: &Reviewed,
    shares: &Shares,
) -> Result<Calibration, FitError> {
    let times = reviewed.weight(own.len());
    let own_nones: Vec<RankedLookup<i64>> = own.iter().map(without_truth).collect();
    let positives = Reviewed::joined(own, &reviewed.positives, times);
    let mut calibration = mapping_fitted_on(
        catalog,
        logistic_mapping(&positives),
        &positives,
        format!(
            "self-calibration: {} catalog photos looked up against the other half of their product's photos, and again with their product removed{}",
            own.len(),
            reviewed.described(own.len())
        ),
    );
    calibration.presence =
        Some(fit_presence(&positives, &Reviewed::joined(&own_nones, &reviewed.nones, times), reviewed.none_share(shares.none)));
    // The bound counts each photo once.
    let (positives, nones) = (Reviewed::joined(own, &reviewed.positives, 1), Reviewed::joined(&own_nones, &reviewed.nones, 1));
    fit_thresholds(catalog, &mut calibration, &positives, &nones, shares, false);
    save_calibration(catalog, &calibration, None)?;
    Ok(calibration)
}

/// Fits the verdict thresholds of `calibration` (mapping and presence
/// fitted) on `positives` and their `nones`, with the assumed shares of
/// uncatalogued listings: the counterfeit and authentic ones unless the
/// catalog has one label, the named-product one always; `on_views` marks
/// them as chosen on synthetic views (only ever raising the defaults).
pub(super) fn fit_thresholds(
    catalog: &Catalog,
    calibration: &mut Calibration,
    positives: &[RankedLookup<i64>],
    nones: &[RankedLookup<i64>],
    shares: &Shares,
    on_views: bool,
) {
    let mut cfg = VerdictConfig::default();
    cfg.apply(calibration);
    let labels = catalog.product_labels();
    let sample = RiskSample { positives, nones, authentic_none_share: shares.none, counterfeit_none_share: shares.counterfeit_none };
    calibration.verdict = fit_risk_thresholds(&sample, &labels, &cfg).map(|t| VerdictThresholds { on_views, ..t });
    calibration.identity = fit_identity_thresholds(positives, nones, &labels, &cfg).map(|t| IdentityThresholds { on_views, ..t });
}

/// The presence model (`p_no_match`): a weighted logistic of [`features`],
/// `positives` (weight 1 − `prior_none`) against `nones` (weight `prior_none`), mean weight 1.
pub(super) fn fit_presence(positives: &[RankedLookup<i64>], nones: &[RankedLookup<i64>], prior_none: f64) -> Presence {
    let (np, nn) = (positives.len().max(1) as f64, nones.len().max(1) as f64);
    let n = np + nn;
    let x: Vec<(f32, f32)> = positives.iter().chain(nones).map(features).collect();
    let y: Vec<bool> = positives.iter().map(|_| true).chain(nones.iter().map(|_| false)).collect();
    let w: Vec<f64> = positives.iter().map(|_| (1.0 - prior_none) * n / np).chain(nones.iter().map(|_| prior_none * n / nn)).collect();
    let [w_sim, w_margin, bias] = fit_logistic_weighted(&x, &y, &w);
    Presence { w_sim, w_margin, bias, prior_none }
}

/// The same lookup with its product removed from the ranking: a case whose right answer is "none".
pub(super) fn without_truth(l: &RankedLookup<i64>) -> RankedLookup<i64> {
    RankedLookup { truth: l.truth, top: l.top.iter().filter(|t| t.0 != l.truth).take(10).copied().collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_without_its_truth_is_the_same_ranking_less_the_right_product() {
        let l = RankedLookup { truth: 1, top: vec![(2, 0.9), (1, 0.8), (3, 0.5)] };
        let none = without_truth(&l);
        assert_eq!(none, RankedLookup { truth: 1, top: vec![(2, 0.9), (3, 0.5)] });
    }
}
