//! Copy-detection metrics: a query manifest's `copy_of` column names the
//! catalog image each query was made from (empty for photos that are not
//! copies); these measure whether the lookup's copy ranking finds it.

use serde::Serialize;

use crate::metrics::{ece, roc_auc};

/// What one query's copy check came to.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOutcome {
    /// The query was made from a catalog image.
    pub is_copy: bool,
    /// The top-ranked copy candidate is that image.
    pub source_first: bool,
    /// The top candidate's `p_copy` (0 without candidates).
    pub p_copy: f32,
    /// The top candidate's verified matched points.
    pub inliers: usize,
    pub correlation: Option<f32>,
    pub coverage: f32,
    /// A continuous detection score: the copy model's log-odds (ties broken by similarity).
    pub score: f32,
    /// Glance points the gate saw explained on a candidate (`None`: a photo
    /// of content regions, always checked in full).
    pub gate_inliers: Option<usize>,
    /// Whether the photo was checked in full.
    pub gate_passed: bool,
}

/// The copy keys of eval's report (all null when the queries have no `copy_of`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyMetrics {
    pub n_copy_queries: Option<usize>,
    /// Copies whose source image ranked first.
    pub copy_recall_at_1: Option<f64>,
    /// Copies detected, with their source first, above the score that flags 1 % of the non-copies.
    pub copy_tpr_at_fpr_1pct: Option<f64>,
    /// Detection AUC, copies against non-copies.
    pub copy_auc: Option<f64>,
    /// Calibration of the top candidate's `p_copy` against "a copy of exactly that image".
    pub copy_ece: Option<f64>,
    /// Share of the non-copies the copy check's gate let through to the full check (its cost).
    pub non_copies_checked_in_full: Option<f64>,
}

/// The score above which at most 1 % of the non-copies fall (`None` without non-copies).
pub fn threshold_at_1pct(all: &[&CopyOutcome]) -> Option<f32> {
    let mut neg: Vec<f32> = all.iter().filter(|o| !o.is_copy).map(|o| o.score).collect();
    if neg.is_empty() {
        return None;
    }
    neg.sort_by(|a, b| b.total_cmp(a));
    Some(neg[((0.01 * neg.len() as f64).floor() as usize).min(neg.len() - 1)])
}

/// The metrics over `outcomes`, detection counted above `threshold` (from [`threshold_at_1pct`] of the whole set).
pub fn copy_metrics(outcomes: &[&CopyOutcome], threshold: Option<f32>) -> CopyMetrics {
    if outcomes.is_empty() {
        return CopyMetrics::default();
    }
    let copies: Vec<&&CopyOutcome> = outcomes.iter().filter(|o| o.is_copy).collect();
    let n = copies.len();
    let share = |k: usize| if n == 0 { None } else { Some(k as f64 / n as f64) };
    let pos: Vec<f32> = copies.iter().map(|o| o.score).collect();
    let neg: Vec<f32> = outcomes.iter().filter(|o| !o.is_copy).map(|o| o.score).collect();
    let p: Vec<f32> = outcomes.iter().map(|o| o.p_copy).collect();
    let y: Vec<bool> = outcomes.iter().map(|o| o.is_copy && o.source_first).collect();
    CopyMetrics {
        n_copy_queries: Some(n),
        copy_recall_at_1: share(copies.iter().filter(|o| o.source_first).count()),
        copy_tpr_at_fpr_1pct: threshold.and_then(|t| share(copies.iter().filter(|o| o.source_first && o.score > t).count())),
        copy_auc: roc_auc(&pos, &neg),
        copy_ece: Some(ece(&p, &y, 10)),
        non_copies_checked_in_full: (!neg.is_empty())
            .then(|| outcomes.iter().filter(|o| !o.is_copy && o.gate_passed).count() as f64 / neg.len() as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(is_copy: bool, source_first: bool, p_copy: f32) -> CopyOutcome {
        CopyOutcome {
            is_copy,
            source_first,
            p_copy,
            inliers: 0,
            correlation: None,
            coverage: 0.0,
            score: p_copy,
            gate_inliers: Some(20),
            gate_passed: is_copy || p_copy > 0.5,
        }
    }

    #[test]
    fn copy_metrics_match_a_hand_computed_case() {
        // Copies: found first at 0.95 and 0.6, found but another image first at 0.8, missed at 0.1.
        // Non-copies: 0.75 and 0.05 (values kept off the ECE bins' edges).
        let all = [
            o(true, true, 0.95),
            o(true, true, 0.6),
            o(true, false, 0.8),
            o(true, false, 0.1),
            o(false, false, 0.75),
            o(false, false, 0.05),
        ];
        let refs: Vec<&CopyOutcome> = all.iter().collect();
        let t = threshold_at_1pct(&refs).unwrap();
        assert_eq!(t, 0.75, "with 2 non-copies, 1 % allows none: the highest non-copy");
        let m = copy_metrics(&refs, Some(t));
        assert_eq!(m.n_copy_queries, Some(4));
        assert_eq!(m.copy_recall_at_1, Some(0.5));
        assert_eq!(m.copy_tpr_at_fpr_1pct, Some(0.25), "only 0.95 is above 0.75 with its source first (0.8 names another image)");
        // AUC: pairs (copy > non-copy) of 4 × 2: 0.95 beats both, 0.6 beats 0.05, 0.8 beats both, 0.1 beats 0.05 → 6 / 8.
        assert_eq!(m.copy_auc, Some(0.75));
        assert_eq!(m.non_copies_checked_in_full, Some(0.5), "the non-copy at 0.75 went on to the full check, the one at 0.05 did not");
        // ECE, 10 bins, one value each: [0.95 → 1], [0.6 → 1], [0.8 → 0], [0.1 → 0], [0.75 → 0], [0.05 → 0]:
        // 0.05 + 0.4 + 0.8 + 0.1 + 0.75 + 0.05 = 2.15 over 6.
        assert!((m.copy_ece.unwrap() - 2.15 / 6.0).abs() < 1e-6, "{:?}", m.copy_ece);
        assert_eq!(copy_metrics(&[], None).n_copy_queries, None, "no copy column: null keys");
    }
}
