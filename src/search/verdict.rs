//! From raw similarities to what a marketplace acts on: a confidence per
//! matched product and a verdict (`likely_authentic`, `likely_counterfeit`,
//! `uncertain`, `no_match`) with its reason in words.
//!
//! [`assess`] is the only implementation of "candidates → confidences →
//! verdict": the lookup path ([`super::lookup`]) and the verdict fit
//! ([`crate::fit`]) both call it.
//!
//! Without a calibration, confidence is a fixed logistic mapping of the
//! similarity, `1 / (1 + exp(-(slope * (similarity - midpoint))))`, with the
//! defaults below; thresholds live in [`VerdictConfig`].

use serde::{Deserialize, Serialize};

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
    #[must_use]
    pub fn confidence_of(&self, similarity: f32, margin_to_next: f32) -> f32 {
        match &self.calibration {
            Some(m) => m.apply(similarity, margin_to_next),
            None => 1.0 / (1.0 + (-(self.slope * (similarity - self.midpoint))).exp()),
        }
    }

    /// The default mapping (similarity only).
    #[must_use]
    pub fn confidence(&self, similarity: f32) -> f32 {
        self.confidence_of(similarity, 0.0)
    }
}

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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub verdict: VerdictKind,
    pub reason: String,
}

/// One ranked product as the verdict sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub product_id: &'a str,
    pub label: Label,
    pub similarity: f32,
}

/// Confidences (one per candidate, same order) and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub confidences: Vec<f32>,
    pub verdict: Verdict,
}

/// Scores candidates sorted best first and decides, computing each confidence once.
#[must_use]
pub fn assess(candidates: &[Candidate<'_>], cfg: &VerdictConfig) -> Assessment {
    let confidences: Vec<f32> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let next = candidates.get(i + 1).map_or(0.0, |n| n.similarity);
            cfg.confidence_of(c.similarity, c.similarity - next)
        })
        .collect();
    let verdict = decide(candidates, &confidences, cfg);
    Assessment { confidences, verdict }
}

fn decide(candidates: &[Candidate<'_>], conf: &[f32], cfg: &VerdictConfig) -> Verdict {
    let Some(best) = candidates.first() else {
        return Verdict { verdict: VerdictKind::NoMatch, reason: "the catalog has no candidate for this photo".into() };
    };
    let best_conf = conf[0];
    if best_conf < cfg.min_confidence {
        return Verdict {
            verdict: VerdictKind::NoMatch,
            reason: format!(
                "best match {} at similarity {:.2} (confidence {:.2}) is below the {:.2} needed",
                best.product_id, best.similarity, best_conf, cfg.min_confidence
            ),
        };
    }
    let nearest = |l: Label| candidates.iter().position(|c| c.label == l);
    let (auth, fake) = (nearest(Label::Authentic), nearest(Label::Counterfeit));
    let f = |i: Option<usize>| i.map_or_else(|| "none".into(), |i| format!("{:.2}", candidates[i].similarity));
    let reason = format!("nearest counterfeit reference {} vs nearest authentic {}", f(fake), f(auth));
    let (ca, cf) = (auth.map_or(0.0, |i| conf[i]), fake.map_or(0.0, |i| conf[i]));
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
    use super::*;

    fn c(id: &str, label: Label, similarity: f32) -> Candidate<'_> {
        Candidate { product_id: id, label, similarity }
    }

    fn verdict(cands: &[Candidate<'_>]) -> VerdictKind {
        assess(cands, &VerdictConfig::default()).verdict.verdict
    }

    #[test]
    fn verdicts() {
        let cfg = VerdictConfig::default();
        assert_eq!(verdict(&[]), VerdictKind::NoMatch);
        assert_eq!(verdict(&[c("a", Label::Authentic, 0.5)]), VerdictKind::NoMatch);
        let a = assess(&[c("f", Label::Counterfeit, 0.91), c("a", Label::Authentic, 0.62)], &cfg);
        assert_eq!(a.verdict.verdict, VerdictKind::LikelyCounterfeit);
        assert_eq!(a.verdict.reason, "nearest counterfeit reference 0.91 vs nearest authentic 0.62");
        assert_eq!(a.confidences, vec![cfg.confidence_of(0.91, 0.91 - 0.62), cfg.confidence_of(0.62, 0.62)]);
        assert_eq!(verdict(&[c("a", Label::Authentic, 0.9), c("f", Label::Counterfeit, 0.7)]), VerdictKind::LikelyAuthentic);
        assert_eq!(verdict(&[c("a", Label::Authentic, 0.95), c("f", Label::Counterfeit, 0.949)]), VerdictKind::Uncertain);
        assert!((cfg.confidence(0.75) - 0.5).abs() < 1e-6);
        assert!(cfg.confidence(0.9) > cfg.confidence(0.8));
        assert_eq!(serde_json::to_value(VerdictKind::LikelyCounterfeit).unwrap(), VerdictKind::LikelyCounterfeit.as_str());
    }
}
