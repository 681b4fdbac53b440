//! From raw similarities to what a marketplace acts on: a confidence per
//! matched product and a verdict (`likely_authentic`, `likely_counterfeit`,
//! `uncertain`, `no_match`) with its reason in words.
//!
//! Until calibration exists, confidence is a fixed logistic mapping of the
//! similarity, `1 / (1 + exp(-(slope * (similarity - midpoint))))`, with the
//! defaults below (documented in README); thresholds live in [`VerdictConfig`].

use serde::{Deserialize, Serialize};

use super::ProductMatch;
use crate::catalog::Label;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictConfig {
    /// Logistic slope of the default confidence mapping.
    pub slope: f32,
    /// Similarity at which the default confidence is 0.5.
    pub midpoint: f32,
    /// Below this confidence for the best match: `no_match`.
    pub min_confidence: f32,
    /// Authentic and counterfeit evidence closer than this (in confidence): `uncertain`.
    pub margin: f32,
    /// A fitted calibration; when absent, the logistic default above is used.
    #[serde(skip)]
    pub calibration: Option<super::Mapping>,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig { slope: 20.0, midpoint: 0.75, min_confidence: 0.5, margin: 0.05, calibration: None }
    }
}

impl VerdictConfig {
    /// Probability that a match is right, from its similarity and its margin to the next product.
    pub fn confidence_of(&self, similarity: f32, margin_to_next: f32) -> f32 {
        match &self.calibration {
            Some(m) => m.apply(similarity, margin_to_next),
            None => 1.0 / (1.0 + (-(self.slope * (similarity - self.midpoint))).exp()),
        }
    }

    /// The default mapping (similarity only).
    pub fn confidence(&self, similarity: f32) -> f32 {
        self.confidence_of(similarity, 0.0)
    }
}

/// The confidence of each match (sorted best first).
pub fn confidences(matches: &[ProductMatch], cfg: &VerdictConfig) -> Vec<f32> {
    matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let next = matches.get(i + 1).map(|n| n.best.similarity).unwrap_or(0.0);
            cfg.confidence_of(m.best.similarity, m.best.similarity - next)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    LikelyAuthentic,
    LikelyCounterfeit,
    Uncertain,
    NoMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub verdict: VerdictKind,
    pub reason: String,
}

/// Decides from matches sorted best first.
pub fn decide(matches: &[ProductMatch], cfg: &VerdictConfig) -> Verdict {
    let Some(best) = matches.first() else {
        return Verdict { verdict: VerdictKind::NoMatch, reason: "the catalog has no candidate for this photo".into() };
    };
    let conf = confidences(matches, cfg);
    let best_conf = conf[0];
    if best_conf < cfg.min_confidence {
        return Verdict {
            verdict: VerdictKind::NoMatch,
            reason: format!(
                "best match {} at similarity {:.2} (confidence {:.2}) is below the {:.2} needed",
                best.product.product_id, best.best.similarity, best_conf, cfg.min_confidence
            ),
        };
    }
    let nearest = |l: Label| matches.iter().position(|m| m.product.label == l);
    let (auth, fake) = (nearest(Label::Authentic), nearest(Label::Counterfeit));
    let f = |i: Option<usize>| i.map(|i| format!("{:.2}", matches[i].best.similarity)).unwrap_or_else(|| "none".into());
    let reason = format!("nearest counterfeit reference {} vs nearest authentic {}", f(fake), f(auth));
    let (ca, cf) = (auth.map(|i| conf[i]).unwrap_or(0.0), fake.map(|i| conf[i]).unwrap_or(0.0));
    let verdict = if (ca - cf).abs() < cfg.margin {
        VerdictKind::Uncertain
    } else if cf > ca {
        VerdictKind::LikelyCounterfeit
    } else {
        VerdictKind::LikelyAuthentic
    };
    Verdict { verdict, reason }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::Product;
    use crate::search::ImageHit;

    fn m(id: &str, label: Label, sim: f32) -> ProductMatch {
        ProductMatch {
            product: Arc::new(Product::new(id, label)),
            score: sim,
            best: ImageHit { image_id: 1, similarity: sim },
            second: None,
        }
    }

    #[test]
    fn verdicts() {
        let c = VerdictConfig::default();
        assert_eq!(decide(&[], &c).verdict, VerdictKind::NoMatch);
        assert_eq!(decide(&[m("a", Label::Authentic, 0.5)], &c).verdict, VerdictKind::NoMatch);
        let v = decide(&[m("f", Label::Counterfeit, 0.91), m("a", Label::Authentic, 0.62)], &c);
        assert_eq!(v.verdict, VerdictKind::LikelyCounterfeit);
        assert_eq!(v.reason, "nearest counterfeit reference 0.91 vs nearest authentic 0.62");
        assert_eq!(decide(&[m("a", Label::Authentic, 0.9), m("f", Label::Counterfeit, 0.7)], &c).verdict, VerdictKind::LikelyAuthentic);
        assert_eq!(decide(&[m("a", Label::Authentic, 0.95), m("f", Label::Counterfeit, 0.949)], &c).verdict, VerdictKind::Uncertain);
        assert!((c.confidence(0.75) - 0.5).abs() < 1e-6);
        assert!(c.confidence(0.9) > c.confidence(0.8));
    }
}
