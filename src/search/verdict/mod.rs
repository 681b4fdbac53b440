//! From raw similarities to what a marketplace acts on: a probability
//! distribution over the ranked products plus "none of these", and a verdict
//! (`likely_authentic`, `likely_counterfeit`, `uncertain`, `no_match`) with
//! its reason in words.
//!
//! [`assess`] is the only implementation of "candidates → probabilities →
//! verdict": the lookup path ([`super::lookup`]) and the verdict fit
//! ([`crate::fit`]) both call it.
//!
//! **The probability model.** For ranked candidates with similarities
//! `s1 ≥ s2 ≥ …`:
//! - `p_in`, the probability that the photo shows one of the catalog's
//!   products at all, is the fitted [`Presence`] model of `(s1, s1 − s2)`
//!   (without one, `1 − floor`);
//! - given that, the top product is right with the calibrated probability
//!   `c1 = mapping(s1, s1 − s2)` ([`super::Mapping`], or the logistic default
//!   below; a catalog calibrated on synthetic views maps the margin in units of
//!   the spread of `s2 … s10` instead) — unless that mapping weighs the
//!   margin, capped by its softmax share
//!   `exp(tie_slope · s1) / Σ exp(tie_slope · s_i)` (a near-tie is a coin toss
//!   whatever the similarity); the rest, `1 − c1`, is spread over the other candidates in
//!   proportion to `exp(slope · (s_i − s2))` (with a single candidate it goes
//!   to "none"), none of them more than the top product itself (ranked order
//!   is kept; the excess is "none"). Without a presence model no other product takes more than
//!   the mapping gives a top match of its own similarity: what they cannot
//!   take goes to "none" (a photo unlike every product is `no_match` even in a
//!   catalog too small to fit one);
//! - each `confidence` is `p_in ×` its share, `p_no_match` the remainder, and
//!   `p_counterfeit` / `p_authentic` the mass on products with that label.
//!   They sum to 1, and every probability stays within `[floor, 1 − floor]`
//!   (`floor` is `1 / (n + 2)` for a calibration fitted on `n` lookups): the
//!   model never claims certainty it has not seen.
//!
//! **The verdict.** `likely_counterfeit` when `p_counterfeit` reaches the
//! counterfeit threshold (fitted so that the false-accusation rate stays
//! under `max_false_accusation` with 95 % confidence; see
//! [`crate::fit::risk_threshold`]); `no_match` when `p_no_match ≥ 0.5`;
//! `likely_authentic` when `p_authentic` reaches the authentic threshold and
//! beats `p_counterfeit` (on a catalog with both labels that threshold is
//! fitted so that counterfeits called `likely_authentic` stay under
//! `max_missed_counterfeit`) *and* the top product is authentic with its own
//! confidence at the named-product threshold (fitted so that photos of
//! products the catalog does not hold called `likely_authentic` stay under
//! `max_false_authentication`: in a catalog with one label, "no counterfeit"
//! alone would call every photo that is not `no_match` authentic);
//! `uncertain` otherwise.

mod config;

pub use config::{Presence, ThresholdBasis, VerdictConfig};
use serde::{Deserialize, Serialize};

use crate::catalog::Label;

/// What the verdict could be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    LikelyAuthentic,
    LikelyCounterfeit,
    Uncertain,
    NoMatch,
}

impl VerdictKind {
    /// The wire name (`likely_authentic`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::LikelyAuthentic => "likely_authentic",
            VerdictKind::LikelyCounterfeit => "likely_counterfeit",
            VerdictKind::Uncertain => "uncertain",
            VerdictKind::NoMatch => "no_match",
        }
    }
}

/// One ranked product as the verdict sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub product_id: &'a str,
    pub label: Label,
    pub similarity: f32,
}

/// The probability model's answer for one lookup (see the module docs).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Probabilities {
    /// One per candidate, same order: the probability that the photo shows that product.
    pub confidences: Vec<f32>,
    pub p_authentic: f32,
    pub p_counterfeit: f32,
    pub p_no_match: f32,
}

/// Probabilities and the verdict (why: [`super::summary::Evidence`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub probabilities: Probabilities,
    pub verdict: VerdictKind,
}

/// The distribution over `candidates` (sorted best first) plus "none of these".
#[must_use]
pub fn probabilities(candidates: &[Candidate<'_>], cfg: &VerdictConfig) -> Probabilities {
    if candidates.is_empty() {
        return Probabilities { p_no_match: 1.0, ..Default::default() };
    }
    let sims: Vec<f32> = candidates.iter().map(|c| c.similarity).collect();
    let top = super::TopOfRanking::of(&sims);
    let s2 = candidates.get(1).map_or(0.0, |c| c.similarity);
    let p_in = cfg.presence_of(top.similarity, top.margin);
    let weights: Vec<f32> = candidates[1..].iter().map(|c| (cfg.slope * (c.similarity - s2)).exp()).collect();
    let total: f32 = weights.iter().sum();
    // A mapping of the similarity alone cannot see a near-tie: there the top
    // product can be no surer than its share against the others (a mapping
    // that weighs the margin already judges it; see `Mapping::judges_ties`).
    let ties: f32 = candidates[1..].iter().map(|c| (cfg.tie_slope * (c.similarity - s2)).exp()).sum();
    let share = 1.0 / (1.0 + ties * (-cfg.tie_slope * top.margin).exp());
    let raw = cfg.confidence_of(&top);
    let c1 = if cfg.calibration.as_ref().is_some_and(super::Mapping::judges_ties) { raw } else { raw.min(share.max(cfg.floor)) };
    let mut confidences = Vec::with_capacity(candidates.len());
    confidences.push(p_in * c1);
    // Without a presence model only the mapping can say "none of these": no
    // other product is more probably the answer than a top match of its own
    // similarity would be, and what they cannot take is left to "none".
    let bounded = cfg.presence.is_none() && cfg.calibration.as_ref().is_none_or(super::Mapping::reads_similarity);
    let cap = |s: f32| if bounded { p_in * cfg.confidence(s) } else { 1.0 };
    // No product is more probable than one ranked above it: where the top's
    // remainder would give a weaker candidate more than the top itself (a
    // mapping that reads a near-identical photo at 0.2 beside three products
    // at 0.44 gave each of them 0.23), the excess is "none of these".
    let top_conf = confidences[0];
    confidences
        .extend(weights.iter().zip(&candidates[1..]).map(|(w, c)| (p_in * (1.0 - c1) * w / total).min(cap(c.similarity)).min(top_conf)));
    // Folded from +0.0: an empty `sum` of floats is -0.0, which JSON would show.
    let mass = |l: Label| candidates.iter().zip(&confidences).filter(|(c, _)| c.label == l).fold(0.0f32, |a, (_, p)| a + p);
    let (p_authentic, p_counterfeit) = (mass(Label::Authentic), mass(Label::Counterfeit));
    let p_no_match = (1.0 - p_authentic - p_counterfeit).max(0.0);
    Probabilities { confidences, p_authentic, p_counterfeit, p_no_match }
}

/// Scores candidates sorted best first and decides, computing each probability once.
#[must_use]
pub fn assess(candidates: &[Candidate<'_>], cfg: &VerdictConfig) -> Assessment {
    let probabilities = probabilities(candidates, cfg);
    let verdict = decide(candidates, &probabilities, cfg);
    Assessment { probabilities, verdict }
}

/// Positive evidence for the product `likely_authentic` would name: it is
/// the top candidate, authentic, and the photo shows *it* (its own
/// confidence, not the authentic products' summed mass) with the probability
/// fitted to keep photos of uncatalogued products from being called authentic.
fn names_the_product(best: &Candidate<'_>, p: &Probabilities, cfg: &VerdictConfig) -> bool {
    best.label == Label::Authentic && p.confidences.first().is_some_and(|c| *c >= cfg.identity_threshold)
}

fn decide(candidates: &[Candidate<'_>], p: &Probabilities, cfg: &VerdictConfig) -> VerdictKind {
    let Some(best) = candidates.first() else { return VerdictKind::NoMatch };
    let authentic_enough = p.p_authentic >= cfg.authentic_threshold && p.p_authentic > p.p_counterfeit;
    if p.p_counterfeit >= cfg.counterfeit_threshold {
        VerdictKind::LikelyCounterfeit
    } else if p.p_no_match >= 0.5 {
        VerdictKind::NoMatch
    } else if authentic_enough && names_the_product(best, p, cfg) {
        VerdictKind::LikelyAuthentic
    } else {
        // Not decidable at the stated risk, or authentic-looking but not surely the product it would name.
        VerdictKind::Uncertain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Mapping;

    fn c(id: &str, label: Label, similarity: f32) -> Candidate<'_> {
        Candidate { product_id: id, label, similarity }
    }

    fn verdict(cands: &[Candidate<'_>], cfg: &VerdictConfig) -> VerdictKind {
        assess(cands, cfg).verdict
    }

    fn presence() -> Presence {
        // p_in = 0.5 at similarity 0.6, rising with similarity.
        Presence { w_sim: 30.0, w_margin: 0.0, bias: -18.0, prior_none: 0.2 }
    }

    #[test]
    fn a_stated_out_of_catalog_share_shifts_p_no_match_by_the_prior_odds() {
        let p = presence();
        // The fitted prior changes nothing; at 0.5 the odds move by ln(4) from the 0.2 it was fitted with.
        assert!((p.apply_with_prior(0.6, 0.0, 0.2) - p.apply(0.6, 0.0)).abs() < 1e-6);
        let at_half = p.apply_with_prior(0.6, 0.0, 0.5);
        assert!((at_half - 1.0 / (1.0 + 4.0)).abs() < 1e-4, "{at_half}");
        let cands = [c("a", Label::Authentic, 0.62), c("b", Label::Authentic, 0.5)];
        let base = VerdictConfig { presence: Some(p.clone()), ..Default::default() };
        let more_strangers = VerdictConfig { out_of_catalog_share: Some(0.5), ..base.clone() };
        let (pb, pm) = (assess(&cands, &base).probabilities, assess(&cands, &more_strangers).probabilities);
        assert!(pm.p_no_match > pb.p_no_match && pm.p_authentic < pb.p_authentic, "{pb:?} {pm:?}");
        let sum = pm.p_no_match + pm.p_authentic + pm.p_counterfeit;
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    }

    #[test]
    fn probabilities_sum_to_one_stay_off_the_bounds_and_are_monotone() {
        let cfg = VerdictConfig { presence: Some(presence()), ..Default::default() };
        let cands = [c("a", Label::Authentic, 0.91), c("f", Label::Counterfeit, 0.85), c("b", Label::Authentic, 0.62)];
        let p = probabilities(&cands, &cfg);
        let total: f32 = p.confidences.iter().sum::<f32>() + p.p_no_match;
        assert!((total - 1.0).abs() < 1e-5, "{p:?}");
        assert!((p.p_authentic + p.p_counterfeit + p.p_no_match - 1.0).abs() < 1e-5);
        assert!((p.p_authentic - (p.confidences[0] + p.confidences[2])).abs() < 1e-6);
        assert!(p.confidences.windows(2).all(|w| w[0] >= w[1]), "ranked order kept: {p:?}");
        // A perfect-looking match is still not certainty.
        let sure = probabilities(&[c("a", Label::Authentic, 1.0), c("b", Label::Authentic, 0.0)], &cfg);
        assert!(sure.confidences[0] <= 1.0 - cfg.floor && sure.p_no_match >= cfg.floor * cfg.floor, "{sure:?}");
        // More similar (same runner-up): more confidence in the top product, less "none".
        let mut last = (0.0, 1.0);
        for s in [0.6, 0.7, 0.8, 0.9, 0.99] {
            let p = probabilities(&[c("a", Label::Authentic, s), c("b", Label::Authentic, 0.5)], &cfg);
            assert!(p.confidences[0] >= last.0 && p.p_no_match <= last.1, "{s}: {p:?}");
            last = (p.confidences[0], p.p_no_match);
        }
        // Nothing found: all mass on "none".
        let empty = probabilities(&[], &cfg);
        assert_eq!((empty.p_no_match, empty.confidences.len()), (1.0, 0));
        // No counterfeit reference among the candidates: a plain zero (an empty float sum is -0.0).
        let only_authentic = probabilities(&[c("a", Label::Authentic, 0.9), c("b", Label::Authentic, 0.5)], &cfg);
        assert!(only_authentic.p_counterfeit == 0.0 && only_authentic.p_counterfeit.is_sign_positive(), "{only_authentic:?}");
        // One candidate: what is not that product is "none".
        let one = probabilities(&[c("a", Label::Authentic, 0.8)], &cfg);
        assert!((one.confidences[0] + one.p_no_match - 1.0).abs() < 1e-6);
    }

    /// Break-it finding 9.9: a catalog whose self-calibration reads a
    /// near-identical photo at 0.2 (its products share photos) gave the top
    /// match 0.215 and each of three weaker counterfeit products 0.229.
    #[test]
    fn a_weaker_product_never_gets_more_confidence_than_the_top_match() {
        let low = Mapping::Isotonic { xs: vec![0.0, 0.5, 0.9], ys: vec![0.02, 0.1, 0.215] };
        let cfg = VerdictConfig { presence: Some(presence()), calibration: Some(low), ..Default::default() };
        let cands = [
            c("same-photo", Label::Authentic, 0.993),
            c("f1", Label::Counterfeit, 0.437),
            c("f2", Label::Counterfeit, 0.437),
            c("f3", Label::Counterfeit, 0.437),
        ];
        let p = probabilities(&cands, &cfg);
        assert!(p.confidences.windows(2).all(|w| w[0] >= w[1]), "ranked order kept: {p:?}");
        assert!(p.p_counterfeit <= 3.0 * p.confidences[0] + 1e-6, "{p:?}");
        assert!((p.p_authentic + p.p_counterfeit + p.p_no_match - 1.0).abs() < 1e-5, "{p:?}");
        assert_ne!(verdict(&cands, &cfg), VerdictKind::LikelyCounterfeit);
    }

    #[test]
    fn without_a_presence_model_no_product_is_more_probable_than_a_top_match_of_its_similarity() {
        // No presence model (a catalog too small to fit itself) and the default mapping.
        let cfg = VerdictConfig::default();
        let far = [c("a", Label::Authentic, 0.30), c("f", Label::Counterfeit, 0.28), c("b", Label::Authentic, 0.25)];
        let p = probabilities(&far, &cfg);
        for (cand, conf) in far.iter().zip(&p.confidences) {
            assert!(*conf <= cfg.confidence(cand.similarity) + 1e-6, "{cand:?}: {p:?}");
        }
        assert!(p.confidences.windows(2).all(|w| w[0] >= w[1]), "ranked order kept: {p:?}");
        // What no product can take is "none of these": a photo unlike every product is no match.
        assert!(p.p_no_match > 0.9 && (p.p_no_match + p.p_authentic + p.p_counterfeit - 1.0).abs() < 1e-5, "{p:?}");
        assert_eq!(verdict(&far, &cfg), VerdictKind::NoMatch);
        let near = [c("a", Label::Authentic, 0.95), c("b", Label::Authentic, 0.5)];
        assert!(probabilities(&near, &cfg).p_authentic > 0.9);
        assert_eq!(verdict(&near, &cfg), VerdictKind::LikelyAuthentic);
        // A fitted presence model says "none" itself: the runner-up keeps the top's
        // remainder, up to the top's own confidence (a near-tie reads as a tie).
        let close = [c("a", Label::Authentic, 0.70), c("b", Label::Authentic, 0.69)];
        let bounded = probabilities(&close, &cfg);
        let fitted = probabilities(&close, &VerdictConfig { presence: Some(presence()), ..Default::default() });
        assert!(bounded.confidences[1] <= cfg.confidence(0.69) + 1e-6, "{bounded:?}");
        assert!(fitted.confidences[1] > bounded.confidences[1], "{fitted:?}");
        assert!((fitted.confidences[1] - fitted.confidences[0]).abs() < 1e-6, "{fitted:?}");
    }

    /// #29: in a catalog with one label, "no counterfeit" is no evidence. A
    /// photo whose mass is spread over several authentic products (`p_authentic`
    /// high, none of them likely) is not called authentic; the named product
    /// must itself reach the named-product threshold, and be authentic.
    #[test]
    fn likely_authentic_needs_the_named_product_itself_not_only_no_counterfeit() {
        let cfg = VerdictConfig { presence: Some(presence()), identity_threshold: 0.6, ..Default::default() };
        let spread = [c("a", Label::Authentic, 0.80), c("b", Label::Authentic, 0.795), c("d", Label::Authentic, 0.79)];
        let a = assess(&spread, &cfg);
        assert!(a.probabilities.p_authentic > 0.9 && a.probabilities.confidences[0] < 0.6, "{a:?}");
        assert_eq!(a.verdict, VerdictKind::Uncertain, "{a:?}");
        // The same photo clearly of one product: authentic.
        let clear = [c("a", Label::Authentic, 0.95), c("b", Label::Authentic, 0.6)];
        assert_eq!(verdict(&clear, &cfg), VerdictKind::LikelyAuthentic);
        // A threshold no confidence reaches (a fit that could not show the rate): never authentic.
        assert_eq!(verdict(&clear, &VerdictConfig { identity_threshold: 1.01, ..cfg.clone() }), VerdictKind::Uncertain);
        // A counterfeit ranked first is never named authentic, however much authentic mass follows it.
        let low = VerdictConfig { counterfeit_threshold: 0.99, identity_threshold: 0.0, ..cfg };
        let behind = [c("f", Label::Counterfeit, 0.80), c("a", Label::Authentic, 0.799), c("b", Label::Authentic, 0.798)];
        let p = assess(&behind, &low);
        assert!(p.probabilities.p_authentic > p.probabilities.p_counterfeit, "{p:?}");
        assert_eq!(p.verdict, VerdictKind::Uncertain, "{p:?}");
    }

    #[test]
    fn a_copy_of_a_known_fake_accuses_at_its_threshold_or_when_the_listing_is_a_fake_either_way() {
        let cfg = VerdictConfig { counterfeit_threshold: 0.8, ..Default::default() };
        assert!(cfg.accuses_copy(0.8, 0.0) && !cfg.accuses_copy(0.79, 0.0));
        // A threshold no lookup reaches ("never") leaves the stated rate as the bar:
        // a sure copy, or a likely one of a photo that shows the fake anyway.
        let never = VerdictConfig { counterfeit_threshold: 1.01, ..Default::default() };
        assert!(never.accuses_copy(0.99, 0.0));
        assert!(never.accuses_copy(0.96, 0.97), "0.96 + 0.04 × 0.97 = 0.999");
        assert!(!never.accuses_copy(0.96, 0.2), "0.96 + 0.04 × 0.2 = 0.968 < 0.98");
        assert!(!never.accuses_copy(0.5, 0.9));
    }

    #[test]
    fn verdicts_follow_the_thresholds() {
        let cfg = VerdictConfig { presence: Some(presence()), counterfeit_threshold: 0.8, ..Default::default() };
        assert_eq!(verdict(&[], &cfg), VerdictKind::NoMatch);
        assert_eq!(verdict(&[c("a", Label::Authentic, 0.3), c("b", Label::Authentic, 0.29)], &cfg), VerdictKind::NoMatch);
        let a = assess(&[c("f", Label::Counterfeit, 0.95), c("a", Label::Authentic, 0.62)], &cfg);
        assert_eq!(a.verdict, VerdictKind::LikelyCounterfeit, "{a:?}");
        assert_eq!(verdict(&[c("a", Label::Authentic, 0.95), c("f", Label::Counterfeit, 0.62)], &cfg), VerdictKind::LikelyAuthentic);
        // Authentic and counterfeit references equally close: neither reaches its threshold.
        let tie = assess(&[c("a", Label::Authentic, 0.9), c("f", Label::Counterfeit, 0.9)], &cfg);
        assert_eq!(tie.verdict, VerdictKind::Uncertain, "{tie:?}");
        assert!(tie.probabilities.p_counterfeit < 0.8 && (tie.probabilities.p_authentic - 0.5).abs() < 0.01, "{tie:?}");
        // A threshold above 1 ("never": the fit could not show the rate) is reached by nothing.
        let never = assess(&[c("a", Label::Authentic, 0.95)], &VerdictConfig { authentic_threshold: 1.01, ..cfg.clone() });
        assert_eq!(never.verdict, VerdictKind::Uncertain, "{never:?}");
        // A stricter threshold turns the same evidence into `uncertain`.
        let strict = VerdictConfig { counterfeit_threshold: 0.999, ..cfg.clone() };
        assert_eq!(verdict(&[c("f", Label::Counterfeit, 0.95), c("a", Label::Authentic, 0.62)], &strict), VerdictKind::Uncertain);
        assert!(cfg.confidence(0.9) > cfg.confidence(0.8));
        assert_eq!(serde_json::to_value(VerdictKind::LikelyCounterfeit).unwrap(), VerdictKind::LikelyCounterfeit.as_str());
    }
}
