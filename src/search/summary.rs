//! What a person reads about a lookup: [`Evidence`], the typed facts the
//! verdict rests on (the deciding probabilities, the thresholds they were
//! compared with, the top product, the nearest authentic and counterfeit
//! references, the copy), and `summary`, one plain sentence rendered from
//! them and the verdict ([`summary`]) — the same function for every
//! front-end. (`reason` repeats `summary` for one release: it was the older
//! engineer's text.)

use std::fmt::Write as _;

use serde::Serialize;

use super::{CopyMatch, ThresholdBasis, VerdictConfig, VerdictKind};
use crate::catalog::Label;

/// A catalog product the evidence names.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Reference {
    pub product_id: String,
    pub name: Option<String>,
    /// `authentic` or `counterfeit`.
    #[schema(value_type = String)]
    pub label: Label,
    /// Its best-matching catalog image.
    pub image_id: i64,
    pub similarity: f32,
    /// Probability that the photo shows this product.
    pub confidence: f32,
}

impl Reference {
    /// The product as a sentence names it.
    fn called(&self) -> String {
        format!("'{}'", self.name.as_deref().filter(|n| !n.is_empty()).unwrap_or(&self.product_id))
    }
}

/// The catalog photo the listing reuses.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CopyEvidence {
    pub product_id: String,
    /// `authentic` or `counterfeit`.
    #[schema(value_type = String)]
    pub label: Label,
    pub image_id: i64,
    pub p_copy: f32,
    /// Whether the copy alone decided the verdict (a copy of a known fake at a `p_copy` that accuses).
    pub decided: bool,
}

/// The thresholds the verdict compared the probabilities with.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Thresholds {
    /// `p_counterfeit` needed for `likely_counterfeit` (above 1: never).
    pub counterfeit: f32,
    /// `p_authentic` needed for `likely_authentic`.
    pub authentic: f32,
    /// The top product's own confidence needed for `likely_authentic`.
    pub named_product: f32,
    /// Where they come from: `default` (nothing fitted on this catalog),
    /// `fitted` (to the stated rates, on the catalog's own held-out photos) or
    /// `stricter_on_views` (the stricter of the default and what synthetic
    /// views of a one-photo-per-product catalog need).
    pub basis: ThresholdBasis,
}

/// The facts a verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Evidence {
    pub p_counterfeit: f32,
    pub p_authentic: f32,
    pub p_no_match: f32,
    pub thresholds: Thresholds,
    /// The product ranked first.
    pub top: Option<Reference>,
    pub nearest_authentic: Option<Reference>,
    pub nearest_counterfeit: Option<Reference>,
    pub copy: Option<CopyEvidence>,
}

impl Evidence {
    /// The evidence of an answer: `ranked` best first (every candidate weighed), the best copy.
    #[must_use]
    pub fn of(ranked: &[Reference], p: [f32; 3], cfg: &VerdictConfig, copy: Option<&CopyMatch>, copy_decided: bool) -> Evidence {
        let nearest = |l: Label| ranked.iter().find(|r| r.label == l).cloned();
        Evidence {
            p_counterfeit: p[0],
            p_authentic: p[1],
            p_no_match: p[2],
            thresholds: Thresholds {
                counterfeit: cfg.counterfeit_threshold,
                authentic: cfg.authentic_threshold,
                named_product: cfg.identity_threshold,
                basis: cfg.thresholds,
            },
            top: ranked.first().cloned(),
            nearest_authentic: nearest(Label::Authentic),
            nearest_counterfeit: nearest(Label::Counterfeit),
            copy: copy.map(|c| CopyEvidence {
                product_id: c.product_id.clone(),
                label: c.label,
                image_id: c.image_id,
                p_copy: c.p_copy,
                decided: copy_decided,
            }),
        }
    }
}

fn pct(p: f32) -> String {
    format!("{:.0} %", (p * 100.0).clamp(0.0, 100.0).floor())
}

/// One plain sentence an analyst can act on.
#[must_use]
pub fn summary(verdict: VerdictKind, e: &Evidence) -> String {
    let name = |r: &Option<Reference>| r.as_ref().map_or_else(|| "a catalog product".into(), Reference::called);
    let copied = |label: Label| e.copy.as_ref().filter(|c| c.label == label);
    if let Some(c) = copied(Label::Counterfeit).filter(|c| c.decided) {
        let of = e.top.as_ref().filter(|t| t.product_id == c.product_id).map_or_else(|| format!("'{}'", c.product_id), Reference::called);
        return format!("Reuses a catalog photo of the known fake {of} ({} sure it is a copy).", pct(c.p_copy));
    }
    let mut s = match verdict {
        VerdictKind::LikelyCounterfeit => format!(
            "Looks like the known fake {} ({} counterfeit, at least {} needed to flag).",
            name(&e.nearest_counterfeit),
            pct(e.p_counterfeit),
            pct(e.thresholds.counterfeit)
        ),
        VerdictKind::LikelyAuthentic => {
            format!(
                "Looks like the genuine {} ({} sure it is this product).",
                name(&e.top),
                pct(e.top.as_ref().map_or(0.0, |t| t.confidence))
            )
        }
        VerdictKind::NoMatch => {
            format!("Shows no product of the catalog ({} sure; the nearest is {}).", pct(e.p_no_match), name(&e.top))
        }
        VerdictKind::Uncertain => {
            let (side, p) =
                if e.p_counterfeit > e.p_authentic { ("the known fake", e.p_counterfeit) } else { ("the genuine one", e.p_authentic) };
            format!("Looks like {}, closer to {side} ({}), not sure enough to decide: review.", name(&e.top), pct(p))
        }
    };
    if let Some(c) = copied(Label::Counterfeit).filter(|c| !c.decided) {
        let _ = write!(s, " It may reuse a photo of the known fake '{}' ({}).", c.product_id, pct(c.p_copy));
    } else if let Some(c) = copied(Label::Authentic) {
        let _ = write!(s, " It reuses the brand's own photo of '{}': check that the seller may use it.", c.product_id);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, name: Option<&str>, label: Label, confidence: f32) -> Reference {
        Reference { product_id: id.into(), name: name.map(String::from), label, image_id: 1, similarity: 0.9, confidence }
    }

    fn evidence(p: [f32; 3], top: Reference, copy: Option<CopyEvidence>) -> Evidence {
        let fake = r("mug-fake", Some("Fake mug"), Label::Counterfeit, 0.1);
        let genuine = r("mug", Some("Mug"), Label::Authentic, 0.1);
        Evidence {
            p_counterfeit: p[0],
            p_authentic: p[1],
            p_no_match: p[2],
            thresholds: Thresholds { counterfeit: 0.95, authentic: 0.5, named_product: 0.7, basis: ThresholdBasis::Fitted },
            nearest_authentic: Some(if top.label == Label::Authentic { top.clone() } else { genuine }),
            nearest_counterfeit: Some(if top.label == Label::Counterfeit { top.clone() } else { fake }),
            top: Some(top),
            copy,
        }
    }

    #[allow(clippy::unnecessary_wraps)] // each table row passes an Option
    fn copy(label: Label, decided: bool) -> Option<CopyEvidence> {
        Some(CopyEvidence { product_id: "rocket".into(), label, image_id: 2, p_copy: 0.994, decided })
    }

    /// The sentence for each kind of answer (the table the issue asks to check sentences against).
    #[test]
    fn each_kind_of_answer_reads_as_its_sentence() {
        let rocket = r("rocket", Some("Rocket toy"), Label::Counterfeit, 0.99);
        let vanilla = r("alpro", Some("Alpro Vanilla Soyghurt"), Label::Authentic, 0.62);
        let cases = [
            (VerdictKind::LikelyCounterfeit, evidence([0.99, 0.0, 0.01], rocket.clone(), copy(Label::Counterfeit, true)),
             "Reuses a catalog photo of the known fake 'Rocket toy' (99 % sure it is a copy)."),
            (VerdictKind::LikelyCounterfeit, evidence([0.97, 0.01, 0.02], rocket.clone(), None),
             "Looks like the known fake 'Rocket toy' (97 % counterfeit, at least 95 % needed to flag)."),
            (VerdictKind::Uncertain, evidence([0.87, 0.1, 0.03], rocket.clone(), None),
             "Looks like 'Rocket toy', closer to the known fake (87 %), not sure enough to decide: review."),
            (VerdictKind::Uncertain, evidence([0.2, 0.62, 0.18], vanilla.clone(), None),
             "Looks like 'Alpro Vanilla Soyghurt', closer to the genuine one (62 %), not sure enough to decide: review."),
            (VerdictKind::LikelyAuthentic, evidence([0.01, 0.95, 0.04], r("mug", None, Label::Authentic, 0.91), None),
             "Looks like the genuine 'mug' (91 % sure it is this product)."),
            (VerdictKind::LikelyAuthentic, evidence([0.0, 0.99, 0.01], r("mug", Some("Mug"), Label::Authentic, 0.99), copy(Label::Authentic, false)),
             "Looks like the genuine 'Mug' (99 % sure it is this product). It reuses the brand's own photo of 'rocket': check that the seller may use it."),
            (VerdictKind::Uncertain, evidence([0.4, 0.3, 0.3], vanilla.clone(), copy(Label::Counterfeit, false)),
             "Looks like 'Alpro Vanilla Soyghurt', closer to the known fake (40 %), not sure enough to decide: review. It may reuse a photo of the known fake 'rocket' (99 %)."),
            (VerdictKind::NoMatch, evidence([0.01, 0.02, 0.97], vanilla, None),
             "Shows no product of the catalog (97 % sure; the nearest is 'Alpro Vanilla Soyghurt')."),
        ];
        for (verdict, e, want) in cases {
            assert_eq!(summary(verdict, &e), want);
        }
    }

    #[test]
    fn a_percentage_never_rounds_up_to_a_threshold_it_does_not_reach() {
        assert_eq!(pct(0.947), "94 %");
        assert_eq!(pct(0.948), "94 %");
        assert_eq!(pct(1.2), "100 %");
    }
}
