//! Retrieval and calibration metrics, as small pure functions (each unit-tested
//! against hand-computed cases), and the labelled ranking they and the
//! fitting are computed over. Fitting ([`crate::fit`]) and measuring
//! ([`crate::eval`]) both use them; they depend on nothing.

/// One labelled lookup: the right product and the best products found (key, similarity), best first.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedLookup<K> {
    pub truth: K,
    pub top: Vec<(K, f32)>,
}

/// Fraction of ranked queries whose right answer is within the first `k`
/// (`ranks[i]` is the 0-based rank, `None` when absent). Empty input: 0.
pub fn recall_at_k(ranks: &[Option<usize>], k: usize) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().filter(|r| r.is_some_and(|r| r < k)).count() as f64 / ranks.len() as f64
}

/// Mean reciprocal rank (absent counts 0). Empty input: 0.
pub fn mrr(ranks: &[Option<usize>]) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().map(|r| r.map_or(0.0, |r| 1.0 / (r as f64 + 1.0))).sum::<f64>() / ranks.len() as f64
}

/// Average precision of one ranked list: `relevant[i]` says whether item i is
/// relevant; `total_relevant` counts all relevant items (also those not retrieved).
pub fn average_precision(relevant: &[bool], total_relevant: usize) -> f64 {
    if total_relevant == 0 {
        return 0.0;
    }
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (i, r) in relevant.iter().enumerate() {
        if *r {
            hits += 1;
            sum += hits as f64 / (i as f64 + 1.0);
        }
    }
    sum / total_relevant as f64
}

/// ROC AUC of scores for positives vs negatives (Mann–Whitney; ties count half).
/// `None` when either side is empty.
pub fn roc_auc(pos: &[f32], neg: &[f32]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut all: Vec<(f32, bool)> = pos.iter().map(|s| (*s, true)).chain(neg.iter().map(|s| (*s, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += all[i..=j].iter().filter(|x| x.1).count() as f64 * avg;
        i = j + 1;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    Some((rank_sum_pos - np * (np + 1.0) / 2.0) / (np * nn))
}

/// True-positive rate at the strictest threshold whose false-positive rate
/// is at most `fpr` (scores ≥ threshold are positive). `None` when a side is empty.
pub fn tpr_at_fpr(pos: &[f32], neg: &[f32], fpr: f64) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut n = neg.to_vec();
    n.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * n.len() as f64).floor() as usize;
    // Threshold strictly above the (allowed+1)-th highest negative.
    let thr = n[allowed.min(n.len() - 1)];
    let fp = n.iter().filter(|s| **s > thr).count();
    debug_assert!(fp <= allowed);
    Some(pos.iter().filter(|s| **s > thr).count() as f64 / pos.len() as f64)
}

/// Expected calibration error with `bins` equal-width bins over [0, 1].
/// Empty input: 0.
pub fn ece(confidence: &[f32], correct: &[bool], bins: usize) -> f64 {
    let n = confidence.len();
    if n == 0 {
        return 0.0;
    }
    let mut sum_c = vec![0.0f64; bins];
    let mut sum_a = vec![0.0f64; bins];
    let mut cnt = vec![0usize; bins];
    for (c, ok) in confidence.iter().zip(correct) {
        let b = ((f64::from(*c) * bins as f64) as usize).min(bins - 1);
        sum_c[b] += f64::from(*c);
        sum_a[b] += f64::from(u8::from(*ok));
        cnt[b] += 1;
    }
    (0..bins).filter(|b| cnt[*b] > 0).map(|b| (sum_c[b] - sum_a[b]).abs()).sum::<f64>() / n as f64
}

/// How to read an ECE measured on few queries: ECE is biased upwards on a
/// small sample (a perfectly calibrated model shows about 0.08 on 100
/// queries), so the report gives the ECE such a model would show with the
/// same confidences and the share of its draws at least as far off as the
/// one measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EceCheck {
    /// Median ECE of a perfectly calibrated model (outcomes drawn with the stated probabilities).
    pub if_calibrated: f64,
    /// Its 95th percentile: a measured ECE above it is evidence of miscalibration.
    pub if_calibrated_p95: f64,
    /// Share of those draws with an ECE at least the measured one (small: miscalibrated).
    pub p_value: f64,
}

/// Draws for [`ece_check`]: enough for a p-value to ±0.01.
const ECE_DRAWS: usize = 2000;

/// [`EceCheck`] of `measured` = `ece(confidence, …, bins)`, by simulation
/// with a fixed seed (the same input gives the same check). Empty input: all 0.
pub fn ece_check(confidence: &[f32], measured: f64, bins: usize) -> EceCheck {
    if confidence.is_empty() {
        return EceCheck { if_calibrated: 0.0, if_calibrated_p95: 0.0, p_value: 1.0 };
    }
    let mut rng = crate::util::Rng::new(0x00EC_E5EE_D000 + confidence.len() as u64);
    let mut outcome = vec![false; confidence.len()];
    let mut draws: Vec<f64> = (0..ECE_DRAWS)
        .map(|_| {
            for (o, c) in outcome.iter_mut().zip(confidence) {
                *o = rng.range(0.0, 1.0) < *c;
            }
            ece(confidence, &outcome, bins)
        })
        .collect();
    draws.sort_by(f64::total_cmp);
    // A draw equal to the measured value up to rounding counts as "at least as far off".
    let at_least = draws.iter().filter(|d| **d >= measured - 1e-12).count();
    EceCheck {
        if_calibrated: percentile(&draws, 0.5),
        if_calibrated_p95: percentile(&draws, 0.95),
        p_value: at_least as f64 / ECE_DRAWS as f64,
    }
}

/// The value below which `p` (0..=1) of the sorted values fall (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_mrr_by_hand() {
        let r = [Some(0), Some(2), None, Some(4)];
        assert_eq!(recall_at_k(&r, 1), 0.25);
        assert_eq!(recall_at_k(&r, 5), 0.75);
        assert!((mrr(&r) - (1.0 + 1.0 / 3.0 + 0.0 + 0.2) / 4.0).abs() < 1e-12);
        assert_eq!(recall_at_k(&[], 5), 0.0);
        assert_eq!(mrr(&[]), 0.0);
    }

    #[test]
    fn average_precision_by_hand() {
        // relevant at ranks 1 and 3, 3 relevant in total: (1/1 + 2/3) / 3
        assert!((average_precision(&[true, false, true, false], 3) - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(average_precision(&[false, false], 0), 0.0);
        assert_eq!(average_precision(&[], 2), 0.0);
    }

    #[test]
    fn auc_with_ties_and_edges() {
        assert_eq!(roc_auc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(roc_auc(&[0.1], &[0.9]), Some(0.0));
        assert_eq!(roc_auc(&[0.5], &[0.5]), Some(0.5));
        // pos {0.8, 0.4}, neg {0.6, 0.4}: pairs (0.8>0.6)=1 (0.8>0.4)=1 (0.4<0.6)=0 (0.4=0.4)=0.5 → 2.5/4
        assert_eq!(roc_auc(&[0.8, 0.4], &[0.6, 0.4]), Some(0.625));
        assert_eq!(roc_auc(&[], &[0.1]), None);
    }

    #[test]
    fn tpr_at_low_fpr() {
        let neg: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect(); // 0.00 .. 0.99
                                                                          // 1% of 100 negatives = 1 allowed above the threshold: threshold 0.98, only 0.99 passes.
        let pos = [0.985, 0.5, 0.999, 0.2];
        assert_eq!(tpr_at_fpr(&pos, &neg, 0.01), Some(0.5));
        assert_eq!(tpr_at_fpr(&pos, &[], 0.01), None);
    }

    #[test]
    fn ece_check_tells_sampling_noise_from_miscalibration() {
        // 100 queries at confidence 0.7: calibrated when 70 are right, not when all are.
        let conf = vec![0.7f32; 100];
        let right: Vec<bool> = (0..100).map(|i| i < 70).collect();
        let calibrated = ece_check(&conf, ece(&conf, &right, 10), 10);
        assert!(calibrated.p_value > 0.5, "{calibrated:?}");
        let over = ece_check(&conf, ece(&conf, &[true; 100], 10), 10);
        assert!(over.p_value < 0.001, "{over:?}");
        // A calibrated model still shows a positive ECE on 100 queries; fewer queries, more.
        assert!(calibrated.if_calibrated > 0.01 && calibrated.if_calibrated <= calibrated.if_calibrated_p95);
        let spread: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let every_fifth: Vec<f32> = spread.iter().step_by(5).copied().collect();
        let few = ece_check(&every_fifth, 0.0, 10).if_calibrated;
        assert!(few > ece_check(&spread, 0.0, 10).if_calibrated, "{few}");
        assert_eq!(ece_check(&conf, 0.05, 10), ece_check(&conf, 0.05, 10));
    }

    #[test]
    fn ece_by_hand() {
        // bin 9: conf 0.9, 0.9 with 1 correct → |1.8 - 1| = 0.8; bin 2: conf 0.2 correct → |0.2 - 1| = 0.8
        let e = ece(&[0.9, 0.9, 0.2], &[true, false, true], 10);
        assert!((e - 1.6 / 3.0).abs() < 1e-6);
        assert_eq!(ece(&[], &[], 10), 0.0);
        assert!(ece(&[1.0, 0.0], &[true, false], 10) < 1e-9);
    }

    #[test]
    fn percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert_eq!(percentile(&v, 0.99), 4.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
