//! The probability that a lookup's top product is right, as a function of
//! what the ranking shows ([`TopOfRanking`]): the fitted [`Mapping`] (fitted
//! by [`crate::fit`] on [`CalibrationSample`]s), applied by every lookup.

use serde::{Deserialize, Serialize};

/// One labelled lookup, as calibration sees it: the top product's
/// similarity, its margin to the next product, and whether it was right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationSample {
    pub similarity: f32,
    pub margin: f32,
    pub correct: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Mapping {
    /// `p = σ(w_sim · sim + w_margin · margin + bias)`.
    Logistic { w_sim: f64, w_margin: f64, bias: f64 },
    /// Isotonic (monotone step) function of the similarity: `p = ys[i]` for the
    /// last `xs[i] <= sim`.
    Isotonic { xs: Vec<f32>, ys: Vec<f32> },
    /// `p = σ(w · margin / spread + bias)`, `bias ≤ 0`: the margin to the next product in
    /// units of the spread of the next products' similarities (the query's own
    /// neighbourhood, [`TopOfRanking::spread`]), so it reads the same wherever
    /// a catalog's similarities sit (cohort normalisation). `typical_spread`
    /// (the median over the lookups it was fitted on) stands in for a ranking
    /// too short to have one.
    RelativeMargin { w: f64, bias: f64, typical_spread: f32 },
}

/// What a mapping reads of one ranking of products (best first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopOfRanking {
    /// The top product's similarity.
    pub similarity: f32,
    /// Its margin to the next product (a missing next product counts as
    /// similarity 0, as in the fit's features).
    pub margin: f32,
    /// Standard deviation of the similarities of the 2nd to 10th products;
    /// `None` with fewer than three of them.
    pub spread: Option<f32>,
}

/// Products after the first whose similarities make [`TopOfRanking::spread`].
const SPREAD_OF: usize = 9;

impl TopOfRanking {
    /// From the ranked products' similarities, best first.
    #[must_use]
    pub fn of(similarities: &[f32]) -> Self {
        let similarity = similarities.first().copied().unwrap_or(0.0);
        let margin = similarity - similarities.get(1).copied().unwrap_or(0.0);
        let rest = similarities.get(1..).unwrap_or_default();
        let rest = &rest[..rest.len().min(SPREAD_OF)];
        let spread = (rest.len() >= 3).then(|| {
            let mean = rest.iter().sum::<f32>() / rest.len() as f32;
            (rest.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / rest.len() as f32).sqrt()
        });
        TopOfRanking { similarity, margin, spread }
    }

    /// The margin in units of the spread (`fallback` when the ranking has none), the spread floored at 0.001.
    #[must_use]
    pub fn relative_margin(&self, fallback: f32) -> f32 {
        self.margin / self.spread.unwrap_or(fallback).max(MIN_SPREAD)
    }
}

/// Smallest spread a margin is divided by (a ranking of near-identical similarities).
pub(crate) const MIN_SPREAD: f32 = 1e-3;

impl Mapping {
    /// Whether the mapping judges near-ties itself: it weighs the margin to the
    /// next product (a relative-margin one is fitted to give a tie at most a
    /// coin toss). A similarity-only mapping cannot see a tie, so the lookup caps
    /// it by the top product's softmax share (see [`super::verdict`]).
    #[must_use]
    pub fn judges_ties(&self) -> bool {
        match self {
            Mapping::Logistic { w_margin, .. } => *w_margin != 0.0,
            Mapping::RelativeMargin { w, .. } => *w != 0.0,
            Mapping::Isotonic { .. } => false,
        }
    }

    /// Whether the mapping reads the similarity itself (a relative-margin one
    /// reads only how the top stands out of its ranking).
    #[must_use]
    pub fn reads_similarity(&self) -> bool {
        !matches!(self, Mapping::RelativeMargin { .. })
    }

    /// The mapping of a top similarity and its margin (a relative-margin
    /// mapping takes its typical spread).
    #[must_use]
    pub fn apply(&self, sim: f32, margin: f32) -> f32 {
        self.apply_to(&TopOfRanking { similarity: sim, margin, spread: None })
    }

    /// The probability that the top product of `top` is right.
    #[must_use]
    pub fn apply_to(&self, top: &TopOfRanking) -> f32 {
        let logistic = |z: f64| (1.0 / (1.0 + (-z).exp())) as f32;
        match self {
            Mapping::Logistic { w_sim, w_margin, bias } => {
                logistic(w_sim * f64::from(top.similarity) + w_margin * f64::from(top.margin) + bias)
            }
            Mapping::RelativeMargin { w, bias, typical_spread } => logistic(w * f64::from(top.relative_margin(*typical_spread)) + bias),
            Mapping::Isotonic { xs, ys } => match xs.partition_point(|x| *x <= top.similarity) {
                0 => ys.first().copied().unwrap_or(0.0),
                i => ys[i - 1],
            },
        }
    }
}
