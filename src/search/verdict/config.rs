//! What a verdict is decided with: the presence model, the probability
//! mapping's defaults, the stated rates and the thresholds they give, and
//! where those thresholds come from.

use serde::{Deserialize, Serialize};

/// `p_in = σ(w_sim · s1 + w_margin · (s1 − s2) + bias)`: the probability that
/// a photo shows some catalog product, fitted on lookups of the catalog's own
/// photos with and without their product in the catalog (see [`crate::fit`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub w_sim: f64,
    pub w_margin: f64,
    pub bias: f64,
    /// Share of lookups assumed to show a product outside the catalog (the prior the fit was weighted with).
    pub prior_none: f64,
}

impl Presence {
    #[must_use]
    pub fn apply(&self, s1: f32, margin: f32) -> f32 {
        let z = self.w_sim * f64::from(s1) + self.w_margin * f64::from(margin) + self.bias;
        (1.0 / (1.0 + (-z).exp())) as f32
    }

    /// [`Presence::apply`] for traffic with a share `prior_none` of photos
    /// outside the catalog instead of the one fitted with: the log-odds move
    /// by the change in prior odds (a share outside (0, 1) is clamped).
    #[must_use]
    pub fn apply_with_prior(&self, s1: f32, margin: f32, prior_none: f64) -> f32 {
        let odds = |pi: f64| {
            let pi = pi.clamp(1e-4, 1.0 - 1e-4);
            ((1.0 - pi) / pi).ln()
        };
        let shifted = Presence { bias: self.bias + odds(prior_none) - odds(self.prior_none), ..self.clone() };
        shifted.apply(s1, margin)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerdictConfig {
    /// Logistic slope of the default confidence mapping, and of how the
    /// remaining probability spreads over the other candidates.
    pub slope: f32,
    /// Similarity at which the default confidence is 0.5.
    pub midpoint: f32,
    /// Slope of the near-tie cap on a similarity-only mapping: the top product's
    /// share `1 / Σ exp(tie_slope · (s_i − s1))` (0.5 at a tie, 0.88 at a margin of 0.02).
    pub tie_slope: f32,
    /// The false-accusation rate the operator accepts (authentic listings
    /// called `likely_counterfeit`); the counterfeit threshold is fitted to it.
    pub max_false_accusation: f32,
    /// `p_counterfeit` needed for `likely_counterfeit` (fitted; this default applies without a fit).
    pub counterfeit_threshold: f32,
    /// The rate of counterfeit listings called `likely_authentic` the operator
    /// accepts (on a catalog with both labels the authentic threshold is fitted to it).
    pub max_missed_counterfeit: f32,
    /// `p_authentic` needed for `likely_authentic` (at least this; raised by the fit).
    pub authentic_threshold: f32,
    /// The rate of photos of products the catalog does not hold the operator
    /// accepts being called `likely_authentic` (the named-product threshold is fitted to it).
    pub max_false_authentication: f32,
    /// The top product's own probability (its `confidence`) needed for
    /// `likely_authentic`: positive evidence that the photo shows *that*
    /// product (at least this; raised by the fit).
    pub identity_threshold: f32,
    /// Lowest probability the model gives anything (and `1 − floor` the highest).
    pub floor: f32,
    /// A fitted calibration of the top product; when absent, the logistic default above is used.
    #[serde(skip)]
    pub calibration: Option<crate::search::Mapping>,
    /// A fitted presence model; when absent, "none" gets what the mapping denies the other candidates (see the module docs).
    #[serde(skip)]
    pub presence: Option<Presence>,
    /// Share of lookups expected to show a product the catalog does not hold,
    /// when the operator knows it: the fitted presence model's prior (5 %) is
    /// shifted to it (Bayes' rule on the odds), so `p_no_match` means what it
    /// says for that traffic. Unset: the prior it was fitted with.
    pub out_of_catalog_share: Option<f32>,
    /// Where the thresholds come from (the reason says so).
    #[serde(skip)]
    pub thresholds: ThresholdBasis,
    /// How copy evidence becomes `p_copy` (`[verdict.copy]`).
    pub copy: crate::search::copy::CopyModel,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig {
            slope: 20.0,
            midpoint: 0.75,
            tie_slope: 100.0,
            max_false_accusation: 0.02,
            counterfeit_threshold: 0.95,
            max_missed_counterfeit: 0.1,
            authentic_threshold: 0.5,
            max_false_authentication: 0.01,
            identity_threshold: 0.5,
            floor: 0.01,
            calibration: None,
            presence: None,
            out_of_catalog_share: None,
            thresholds: ThresholdBasis::Default,
            copy: crate::search::copy::CopyModel::default(),
        }
    }
}

impl VerdictConfig {
    /// Probability that the top match is right (given that the photo shows
    /// a catalog product), from its similarity and its margin to the next product.
    #[must_use]
    pub fn confidence_of(&self, top: &crate::search::TopOfRanking) -> f32 {
        let p = match &self.calibration {
            Some(m) => m.apply_to(top),
            None => 1.0 / (1.0 + (-(self.slope * (top.similarity - self.midpoint))).exp()),
        };
        p.clamp(self.floor, 1.0 - self.floor)
    }

    /// Whether a copy of a counterfeit reference at `p_copy` makes the verdict
    /// `likely_counterfeit`, the lookup's own `p_counterfeit` aside: when
    /// `p_copy` reaches the counterfeit threshold, or when the listing is a
    /// fake either way — the known fake's own photo (`p_copy`) or, if not, a
    /// photo of a counterfeit product (`p_counterfeit`) — with a probability
    /// that leaves at most `max_false_accusation` for an authentic listing.
    /// The second holds however few lookups the catalog had to fit its
    /// threshold on: a threshold above 1 ("never") must not switch copy
    /// detection off.
    #[must_use]
    pub fn accuses_copy(&self, p_copy: f32, p_counterfeit: f32) -> bool {
        let fake_either_way = p_copy + (1.0 - p_copy) * p_counterfeit;
        p_copy >= self.counterfeit_threshold || fake_either_way >= 1.0 - self.max_false_accusation
    }

    /// The mapping of a similarity alone.
    #[must_use]
    pub fn confidence(&self, similarity: f32) -> f32 {
        self.confidence_of(&crate::search::TopOfRanking { similarity, margin: 0.0, spread: None })
    }

    /// Probability that the photo shows some catalog product.
    pub(super) fn presence_of(&self, s1: f32, margin: f32) -> f32 {
        let shifted = |p: &Presence| match self.out_of_catalog_share {
            Some(share) => p.apply_with_prior(s1, margin, f64::from(share)),
            None => p.apply(s1, margin),
        };
        self.presence.as_ref().map_or(1.0 - self.floor, shifted).clamp(self.floor, 1.0 - self.floor)
    }
}

/// Where the verdict thresholds come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdBasis {
    /// The configured defaults: nothing fitted on this catalog.
    #[default]
    Default,
    /// Fitted to the stated rates on the catalog's own held-out photos (or labelled queries).
    Fitted,
    /// The stricter of the default and what synthetic views of the catalog
    /// need for the stated rates (a catalog with one photo per product).
    StricterOnViews,
}

impl ThresholdBasis {
    /// The wire name (`default`, `fitted`, `stricter_on_views`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdBasis::Default => "default",
            ThresholdBasis::Fitted => "fitted",
            ThresholdBasis::StricterOnViews => "stricter_on_views",
        }
    }
}
