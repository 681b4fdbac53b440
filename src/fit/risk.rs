//! Verdict thresholds bounded by risk: for each rate of false accusations
//! (and of counterfeits passed) an operator may state, the lowest threshold
//! whose 95 % upper confidence bound (Clopper–Pearson) on held-out lookups
//! stays under it, the uncatalogued cases weighted by their assumed share.

use std::collections::HashMap;
use std::hash::Hash;

use crate::catalog::Label;
use crate::metrics::RankedLookup;
use crate::search::calibration::{IdentityThresholds, RiskThreshold, NEVER};
use crate::search::{assess, Candidate, VerdictConfig, VerdictThresholds};

/// The false-accusation rates a counterfeit threshold is fitted for (an
/// operator's `max_false_accusation` picks the largest one not above it).
pub const RISK_LEVELS: [f64; 6] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2];

/// Held-out lookups the verdict thresholds are chosen on: `positives`
/// (the truth's product is in the gallery) and, optionally, `nones` (the
/// same kind of lookups with the truth's product removed: a photo of a
/// product the catalog does not hold), with the share of uncatalogued
/// products assumed among authentic listings (`authentic_none_share`: a
/// brand catalogs its own products, so small) and among counterfeit ones
/// (`counterfeit_none_share`: most fakes a marketplace meets are not in the
/// brand's catalog, so large).
pub struct RiskSample<'a, K> {
    pub positives: &'a [RankedLookup<K>],
    pub nones: &'a [RankedLookup<K>],
    pub authentic_none_share: f64,
    pub counterfeit_none_share: f64,
}

impl<'a, K> RiskSample<'a, K> {
    /// Lookups of catalogued products only (labelled outside photos).
    #[must_use]
    pub fn positives(positives: &'a [RankedLookup<K>]) -> Self {
        RiskSample { positives, nones: &[], authentic_none_share: 0.0, counterfeit_none_share: 0.0 }
    }
}

/// Chooses the verdict thresholds for each rate in [`RISK_LEVELS`] (see
/// [`VerdictThresholds`]) on held-out lookups (truth product and ranked
/// candidates), scoring each by [`assess`], the lookup path's own function:
/// risk control in the sense of conformal / "learn then test" calibration.
/// The bounded rate is the mixture the queries are assumed to be, e.g. for
/// false accusations `(1 − share) · rate on positives + share · rate on
/// nones` with the authentic share, each part bounded at 97.5 % (so the sum
/// holds with 95 %). A threshold above 1
/// means no threshold is safe at that rate (too few lookups to show it).
/// `None` unless the products carry both labels.
#[must_use]
pub fn fit_risk_thresholds<K: Eq + Hash, S: std::hash::BuildHasher>(
    sample: &RiskSample<'_, K>,
    label_of: &HashMap<K, Label, S>,
    cfg: &VerdictConfig,
) -> Option<VerdictThresholds> {
    let has = |l: Label| label_of.values().any(|x| *x == l);
    if !(has(Label::Authentic) && has(Label::Counterfeit)) || sample.positives.is_empty() {
        return None;
    }
    let pos = scored_by_label(sample.positives, label_of, cfg);
    let none = scored_by_label(sample.nones, label_of, cfg);
    let share = |s: f64| if sample.nones.is_empty() { 0.0 } else { s.clamp(0.0, 1.0) };
    let (sa, sc) = (share(sample.authentic_none_share), share(sample.counterfeit_none_share));
    let fake = |s: &Scored| s.iter().map(|p| p.0).collect::<Vec<f32>>();
    let auth = |s: &Scored| s.iter().map(|p| p.1).collect::<Vec<f32>>();
    Some(VerdictThresholds {
        counterfeit: risk_table([(fake(&pos.0), 1.0 - sa), (fake(&none.0), sa)], &fake(&pos.1)),
        authentic: risk_table([(auth(&pos.1), 1.0 - sc), (auth(&none.1), sc)], &auth(&pos.0)),
        n_authentic: pos.0.len() + none.0.len(),
        n_counterfeit: pos.1.len() + none.1.len(),
        on_views: false,
    })
}

/// The named-product thresholds (see [`IdentityThresholds`]) on held-out
/// lookups: each rate bounds the share of `nones` (photos of products the
/// catalog does not hold) whose top product is authentic with its own
/// confidence at or above the threshold — a rate of those photos, not of all
/// traffic, as a marketplace reads "authentic" on any one listing. `None`
/// without nones.
#[must_use]
pub fn fit_identity_thresholds<K: Eq + Hash, S: std::hash::BuildHasher>(
    positives: &[RankedLookup<K>],
    nones: &[RankedLookup<K>],
    label_of: &HashMap<K, Label, S>,
    cfg: &VerdictConfig,
) -> Option<IdentityThresholds> {
    if nones.is_empty() {
        return None;
    }
    // The top product's own confidence where it is authentic (else no `likely_authentic` to bound).
    let named = |l: &RankedLookup<K>| -> Option<f32> {
        let cands: Vec<Candidate<'_>> = l
            .top
            .iter()
            .filter_map(|(key, sim)| Some(Candidate { product_id: "", label: *label_of.get(key)?, similarity: *sim }))
            .collect();
        let first = cands.first()?;
        (first.label == Label::Authentic).then(|| assess(&cands, cfg).probabilities.confidences[0])
    };
    let wrong: Vec<f32> = nones.iter().map(|l| named(l).unwrap_or(0.0)).collect();
    let right: Vec<f32> = positives.iter().filter(|l| l.top.first().is_some_and(|t| t.0 == l.truth)).filter_map(named).collect();
    Some(IdentityThresholds { levels: risk_table([(wrong, 1.0)], &right), n_nones: nones.len(), on_views: false })
}

/// (`p_counterfeit`, `p_authentic`) per lookup.
type Scored = Vec<(f32, f32)>;

/// Each lookup's (`p_counterfeit`, `p_authentic`) by [`assess`], split by its truth's label: (authentic, counterfeit).
fn scored_by_label<K: Eq + Hash, S: std::hash::BuildHasher>(
    lookups: &[RankedLookup<K>],
    label_of: &HashMap<K, Label, S>,
    cfg: &VerdictConfig,
) -> (Scored, Scored) {
    let (mut authentic, mut counterfeit) = (Vec::new(), Vec::new());
    for l in lookups {
        let Some(truth) = label_of.get(&l.truth) else { continue };
        let cands: Vec<Candidate<'_>> = l
            .top
            .iter()
            .filter_map(|(key, sim)| Some(Candidate { product_id: "", label: *label_of.get(key)?, similarity: *sim }))
            .collect();
        let p = assess(&cands, cfg).probabilities;
        match truth {
            Label::Authentic => authentic.push((p.p_counterfeit, p.p_authentic)),
            Label::Counterfeit => counterfeit.push((p.p_counterfeit, p.p_authentic)),
        }
    }
    (authentic, counterfeit)
}

/// For each rate in [`RISK_LEVELS`]: the lowest threshold on a score whose
/// rate of `wrong` lookups at or above it — a mixture of groups, each
/// `(scores, weight)` — stays under the rate with 95 % confidence, and how
/// many `right` ones reach it.
fn risk_table<const G: usize>(wrong: [(Vec<f32>, f64); G], right: &[f32]) -> Vec<RiskThreshold> {
    let groups: Vec<(Vec<f32>, f64)> = wrong.into_iter().filter(|(v, w)| *w > 0.0 && !v.is_empty()).collect();
    let delta = 0.05 / groups.len().max(1) as f64;
    let at_or_above = |v: &[f32], t: f64| v.iter().filter(|p| f64::from(**p) >= t).count();
    let bound = |t: f64| groups.iter().map(|(v, w)| w * clopper_pearson_upper(at_or_above(v, t), v.len(), delta)).sum::<f64>();
    // Candidate thresholds, strictest first: never, then just above each wrong score (f32 compared in f64), then 0.
    let mut cands: Vec<f64> = groups.iter().flat_map(|(v, _)| v.iter().map(|p| f64::from(*p) + 1e-7)).collect();
    cands.sort_by(|a, b| b.total_cmp(a));
    cands.dedup();
    let cands: Vec<f64> = std::iter::once(NEVER).chain(cands).chain(std::iter::once(0.0)).collect();
    // Bounds grow as the threshold falls: computed until past the loosest rate.
    let loosest = RISK_LEVELS.iter().copied().fold(0.0, f64::max);
    let mut bounds = Vec::new();
    for t in &cands {
        bounds.push(bound(*t));
        if bounds.last().is_some_and(|b| *b > loosest) {
            break;
        }
    }
    RISK_LEVELS
        .iter()
        .map(|alpha| {
            // The lowest candidate before the first one whose bound exceeds alpha.
            let ok = bounds.iter().take_while(|b| **b <= *alpha).count();
            let threshold = if ok == 0 { NEVER } else { cands[ok - 1] };
            RiskThreshold {
                max_rate: *alpha,
                threshold,
                errors: groups.iter().map(|(v, _)| at_or_above(v, threshold)).sum(),
                error_ucb: bound(threshold),
                hits: right.iter().filter(|p| f64::from(**p) >= threshold).count(),
            }
        })
        .collect()
}

/// One-sided upper `1 − delta` confidence bound on a rate with `k` events in
/// `n` trials (Clopper–Pearson, by bisection on the binomial CDF); 1 when `n = 0`.
#[must_use]
pub fn clopper_pearson_upper(k: usize, n: usize, delta: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    // P(X <= k | n, p), in log space.
    let cdf = |p: f64| -> f64 {
        let (lp, lq) = (p.ln(), (1.0 - p).ln());
        let mut log_binom = 0.0f64; // ln C(n, 0)
        let mut total = 0.0f64;
        for i in 0..=k {
            if i > 0 {
                log_binom += ((n - i + 1) as f64).ln() - (i as f64).ln();
            }
            total += (log_binom + i as f64 * lp + (n - i) as f64 * lq).exp();
        }
        total
    };
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::calibration::for_risk;

    /// What the lookup path makes of one held-out lookup.
    fn probabilities_of(l: &RankedLookup<i64>, labels: &HashMap<i64, Label>, cfg: &VerdictConfig) -> crate::search::Probabilities {
        let c: Vec<Candidate<'_>> = l.top.iter().map(|(k, s)| Candidate { product_id: "", label: labels[k], similarity: *s }).collect();
        assess(&c, cfg).probabilities
    }

    /// Authentic lookups (truth 1) where the counterfeit look-alike (2) often
    /// ranks close or first: a naive `p_counterfeit >= 0.5` rule accuses
    /// about a tenth of them.
    fn lookalike_lookups(n: usize, seed: u64) -> Vec<RankedLookup<i64>> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f32 / 10_000.0
        };
        (0..n)
            .map(|_| {
                let (a, f) = (0.7 + 0.25 * next(), 0.6 + 0.3 * next());
                let mut top = vec![(1, a), (2, f), (3, 0.5 * next())];
                top.sort_by(|x, y| y.1.total_cmp(&x.1));
                RankedLookup { truth: 1, top }
            })
            .collect()
    }

    #[test]
    fn the_counterfeit_threshold_bounds_false_accusations_where_a_naive_one_does_not() {
        let labels: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Counterfeit), (3, Label::Authentic)].into();
        let cfg = VerdictConfig::default();
        let rate = |lookups: &[RankedLookup<i64>], threshold: f64| {
            let accused = lookups.iter().filter(|l| f64::from(probabilities_of(l, &labels, &cfg).p_counterfeit) >= threshold).count();
            accused as f64 / lookups.len() as f64
        };
        let fit_on = lookalike_lookups(3000, 7);
        let fresh = lookalike_lookups(3000, 99);
        assert!(rate(&fresh, 0.5) > 0.05, "the case must defeat the naive threshold: {}", rate(&fresh, 0.5));
        let t = fit_risk_thresholds(&RiskSample::positives(&fit_on), &labels, &cfg).unwrap();
        assert_eq!(t.n_authentic, 3000);
        let at = for_risk(&t.counterfeit, 0.02).unwrap();
        assert!((at.max_rate - 0.02).abs() < 1e-12);
        // The configured rate is an f32 (0.02 is 0.0199999995 as f64): it must still pick the 2 % level.
        assert_eq!(for_risk(&t.counterfeit, f64::from(0.02f32)), Some(at));
        assert!(at.error_ucb <= 0.02 && at.threshold > 0.5, "{at:?}");
        assert!(rate(&fresh, at.threshold) <= 0.02, "held out: {}", rate(&fresh, at.threshold));
        // Stricter rates need higher thresholds.
        assert!(t.counterfeit.windows(2).all(|w| w[0].threshold >= w[1].threshold), "{t:?}");
        // Too few authentic lookups to show a 0.5% rate: never accuse.
        let few = fit_risk_thresholds(&RiskSample::positives(&fit_on[..100]), &labels, &cfg).unwrap();
        assert!(for_risk(&few.counterfeit, 0.005).unwrap().threshold > 1.0);
        // A catalog with one label has no verdict to fit.
        let one: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Authentic), (3, Label::Authentic)].into();
        assert!(fit_risk_thresholds(&RiskSample::positives(&fit_on), &one, &cfg).is_none());
    }

    #[test]
    fn uncatalogued_cases_count_by_their_assumed_share_and_the_mixed_bound_holds() {
        let labels: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Counterfeit), (3, Label::Authentic)].into();
        let cfg = VerdictConfig::default();
        let positives = lookalike_lookups(3000, 7);
        // The same photos with their own product missing: the counterfeit look-alike now ranks first.
        let nones: Vec<RankedLookup<i64>> =
            positives.iter().map(|l| RankedLookup { truth: 1, top: l.top.iter().filter(|t| t.0 != 1).copied().collect() }).collect();
        let at = |share: f64| {
            let sample = RiskSample { positives: &positives, nones: &nones, authentic_none_share: share, counterfeit_none_share: share };
            for_risk(&fit_risk_thresholds(&sample, &labels, &cfg).unwrap().counterfeit, 0.02).unwrap().clone()
        };
        let (rare, even) = (at(0.05), at(0.5));
        // Rare uncatalogued listings weigh less: a lower threshold (more counterfeits caught) at the same bound.
        assert!(rare.threshold < even.threshold, "{rare:?} {even:?}");
        for t in [&rare, &even] {
            assert!(t.error_ucb <= 0.02, "{t:?}");
        }
        // The bound is the weighted sum of the parts' bounds at 97.5 %.
        let count = |v: &[RankedLookup<i64>]| {
            v.iter().filter(|l| f64::from(probabilities_of(l, &labels, &cfg).p_counterfeit) >= rare.threshold).count()
        };
        let want = 0.95 * clopper_pearson_upper(count(&positives), 3000, 0.025) + 0.05 * clopper_pearson_upper(count(&nones), 3000, 0.025);
        assert!((rare.error_ucb - want).abs() < 1e-9, "{} vs {want}", rare.error_ucb);
    }

    /// #29: a one-label catalog has no counterfeit rate to fit, but photos of
    /// products it does not hold (here: the same lookups with their product
    /// removed, so a sibling ranks first) must still rarely be named.
    #[test]
    fn the_named_product_threshold_bounds_uncatalogued_photos_called_authentic() {
        let labels: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Authentic), (3, Label::Authentic)].into();
        let cfg = VerdictConfig::default();
        let nones_of = |v: &[RankedLookup<i64>]| -> Vec<RankedLookup<i64>> {
            v.iter().map(|l| RankedLookup { truth: 1, top: l.top.iter().filter(|t| t.0 != 1).copied().collect() }).collect()
        };
        let (fit_on, fresh) = (lookalike_lookups(3000, 7), lookalike_lookups(3000, 99));
        let named_rate = |v: &[RankedLookup<i64>], t: f64| {
            let named = v.iter().filter(|l| f64::from(probabilities_of(l, &labels, &cfg).confidences[0]) >= t).count();
            named as f64 / v.len() as f64
        };
        assert!(named_rate(&nones_of(&fresh), 0.5) > 0.1, "the case must defeat the naive threshold");
        let t = fit_identity_thresholds(&fit_on, &nones_of(&fit_on), &labels, &cfg).unwrap();
        assert_eq!(t.n_nones, 3000);
        let at = for_risk(&t.levels, 0.01).unwrap();
        assert!(at.error_ucb <= 0.01 && at.threshold > 0.5 && at.hits > 0, "{at:?}");
        assert!(named_rate(&nones_of(&fresh), at.threshold) <= 0.01, "held out: {}", named_rate(&nones_of(&fresh), at.threshold));
        assert!(t.levels.windows(2).all(|w| w[0].threshold >= w[1].threshold), "{t:?}");
        // Nothing to fit without photos of uncatalogued products.
        assert!(fit_identity_thresholds(&fit_on, &[], &labels, &cfg).is_none());
    }

    #[test]
    fn clopper_pearson_matches_known_values() {
        // k = 0: 1 - delta^(1/n).
        for n in [10usize, 149, 1000] {
            let exact = 1.0 - 0.05f64.powf(1.0 / n as f64);
            assert!((clopper_pearson_upper(0, n, 0.05) - exact).abs() < 1e-9, "{n}");
        }
        // k = 5 of 100: 0.1023 (one-sided 95 %).
        assert!((clopper_pearson_upper(5, 100, 0.05) - 0.1023).abs() < 5e-4, "{}", clopper_pearson_upper(5, 100, 0.05));
        assert_eq!(clopper_pearson_upper(3, 0, 0.05), 1.0);
    }
}
