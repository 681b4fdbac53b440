//! The confidence mappings: the probability that a lookup's top product
//! is right, fitted on labelled lookups — a logistic of (similarity,
//! margin), a logistic of the margin over the ranking's spread, or an
//! isotonic step function — and the choice between them by held-out ECE.

use std::collections::BTreeMap;

use crate::metrics::ece;
use crate::search::mapping::{CalibrationSample, MIN_SPREAD};
use crate::search::{Mapping, TopOfRanking};

/// The candidate calibration methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Logistic,
    Isotonic,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Logistic => "logistic",
            Method::Isotonic => "isotonic",
        }
    }

    fn fit(self, samples: &[CalibrationSample], idx: &[usize]) -> Mapping {
        let y: Vec<bool> = idx.iter().map(|i| samples[*i].correct).collect();
        match self {
            Method::Logistic => fit_logistic(&idx.iter().map(|i| (samples[*i].similarity, samples[*i].margin)).collect::<Vec<_>>(), &y),
            Method::Isotonic => fit_isotonic(&idx.iter().map(|i| samples[*i].similarity).collect::<Vec<_>>(), &y),
        }
    }
}

/// Fits both candidate mappings, compares them by 2-fold held-out ECE, and
/// refits the better one on all samples (isotonic only when it is better by
/// more than one bootstrap standard error: the simpler mapping wins ties).
#[must_use]
pub fn fit_calibration(samples: &[CalibrationSample]) -> (Mapping, BTreeMap<String, f64>) {
    let even: Vec<usize> = (0..samples.len()).step_by(2).collect();
    let odd: Vec<usize> = (1..samples.len()).step_by(2).collect();
    let mut heldout = BTreeMap::new();
    let mut predictions: Vec<Vec<f32>> = Vec::new();
    let mut ok = Vec::new();
    for method in [Method::Logistic, Method::Isotonic] {
        let mut conf = Vec::new();
        ok.clear();
        for (train, test) in [(&even, &odd), (&odd, &even)] {
            let m = method.fit(samples, train);
            for s in test.iter().map(|i| &samples[*i]) {
                conf.push(m.apply(s.similarity, s.margin));
                ok.push(s.correct);
            }
        }
        heldout.insert(method.name().to_string(), ece(&conf, &ok, 10));
        predictions.push(conf);
    }
    // One-standard-error rule: the isotonic step function (many more degrees
    // of freedom) wins only if its held-out ECE is lower by more than the
    // bootstrap standard error of the difference; otherwise the logistic.
    let se = bootstrap_se_of_ece_difference(&predictions[0], &predictions[1], &ok, 200);
    heldout.insert("bootstrap_se_of_difference".to_string(), se);
    let best = if heldout["isotonic"] + se < heldout["logistic"] { Method::Isotonic } else { Method::Logistic };
    let all: Vec<usize> = (0..samples.len()).collect();
    (best.fit(samples, &all), heldout)
}

/// Standard error of `ece(a) - ece(b)` over `rounds` bootstrap resamples of
/// the same held-out points (deterministic).
fn bootstrap_se_of_ece_difference(a: &[f32], b: &[f32], ok: &[bool], rounds: usize) -> f64 {
    let n = ok.len();
    if n < 2 || rounds < 2 {
        return 0.0;
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let diffs: Vec<f64> = (0..rounds)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| next()).collect();
            let pick = |v: &[f32]| idx.iter().map(|i| v[*i]).collect::<Vec<f32>>();
            let y: Vec<bool> = idx.iter().map(|i| ok[*i]).collect();
            ece(&pick(a), &y, 10) - ece(&pick(b), &y, 10)
        })
        .collect();
    let mean = diffs.iter().sum::<f64>() / rounds as f64;
    (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (rounds - 1) as f64).sqrt()
}

/// Logistic regression by Newton's method on (sim, margin) → correct.
pub fn fit_logistic(x: &[(f32, f32)], y: &[bool]) -> Mapping {
    let [w_sim, w_margin, bias] = fit_logistic_weighted(x, y, &vec![1.0; y.len()]);
    Mapping::Logistic { w_sim, w_margin, bias }
}

/// A [`Mapping::RelativeMargin`] fitted on rankings (best first) → whether the top product was right.
#[must_use]
pub fn fit_relative_margin(rankings: &[TopOfRanking], y: &[bool]) -> Mapping {
    let mut spreads: Vec<f32> = rankings.iter().filter_map(|t| t.spread).collect();
    spreads.sort_by(f32::total_cmp);
    let typical_spread = spreads.get(spreads.len() / 2).copied().unwrap_or(0.05).max(MIN_SPREAD);
    // One feature: the two-feature fit with its second column at 0 (the ridge keeps that weight at 0).
    let x: Vec<(f32, f32)> = rankings.iter().map(|t| (t.relative_margin(typical_spread), 0.0)).collect();
    let [w, _, bias] = fit_logistic_weighted(&x, y, &vec![1.0; y.len()]);
    // A tie (margin 0) is at most a coin toss, whatever the made-up photos said.
    Mapping::RelativeMargin { w, bias: bias.min(0.0), typical_spread }
}

/// Weighted logistic regression (Newton) on (sim, margin) → outcome:
/// returns `[w_sim, w_margin, bias]`.
pub fn fit_logistic_weighted(x: &[(f32, f32)], y: &[bool], weight: &[f64]) -> [f64; 3] {
    let mut w = [0.0f64; 3]; // sim, margin, bias
    for _ in 0..50 {
        let mut g = [0.0f64; 3];
        let mut h = [[0.0f64; 3]; 3];
        for (((s, m), t), wt) in x.iter().zip(y).zip(weight) {
            let f = [f64::from(*s), f64::from(*m), 1.0];
            let z: f64 = (0..3).map(|i| w[i] * f[i]).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let r = wt * (p - f64::from(u8::from(*t)));
            for i in 0..3 {
                g[i] += r * f[i];
                for j in 0..3 {
                    h[i][j] += wt * p * (1.0 - p) * f[i] * f[j];
                }
            }
        }
        for (i, row) in h.iter_mut().enumerate() {
            row[i] += 1e-6; // ridge, keeps separable data finite
        }
        let Some(step) = crate::util::solve3(h, g, 1e-300) else { break };
        for i in 0..3 {
            w[i] -= step[i];
        }
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-9 {
            break;
        }
    }
    w
}

/// Isotonic regression (pool adjacent violators) of correct on similarity.
pub fn fit_isotonic(sims: &[f32], y: &[bool]) -> Mapping {
    let mut pts: Vec<(f32, f64)> = sims.iter().zip(y).map(|(s, t)| (*s, f64::from(u8::from(*t)))).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Blocks: (first x, sum, count).
    let mut blocks: Vec<(f32, f64, f64)> = Vec::new();
    for (x, v) in pts {
        blocks.push((x, v, 1.0));
        while blocks.len() >= 2 {
            let n = blocks.len();
            let (a, b) = (blocks[n - 2], blocks[n - 1]);
            if a.1 / a.2 > b.1 / b.2 {
                blocks.pop();
                blocks[n - 2] = (a.0, a.1 + b.1, a.2 + b.2);
            } else {
                break;
            }
        }
    }
    Mapping::Isotonic { xs: blocks.iter().map(|b| b.0).collect(), ys: blocks.iter().map(|b| (b.1 / b.2) as f32).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_recovers_a_threshold_and_isotonic_is_monotone() {
        // correct iff sim > 0.6, with some overlap
        let sims: Vec<f32> = (0..200).map(|i| i as f32 / 200.0).collect();
        let y: Vec<bool> = sims.iter().enumerate().map(|(i, s)| *s > 0.6 || i % 17 == 0).collect();
        let x: Vec<(f32, f32)> = sims.iter().map(|s| (*s, 0.0)).collect();
        let m = fit_logistic(&x, &y);
        assert!(m.apply(0.9, 0.0) > 0.9 && m.apply(0.2, 0.0) < 0.2, "{m:?}");
        assert!((m.apply(0.61, 0.0) - 0.5).abs() < 0.2);
        let iso = fit_isotonic(&sims, &y);
        let mut last = 0.0;
        for s in &sims {
            let p = iso.apply(*s, 0.0);
            assert!(p >= last - 1e-6);
            last = p;
        }
        assert_eq!(iso.apply(0.95, 0.0), 1.0);
        assert!(iso.apply(-1.0, 0.0) < 0.1);
    }

    #[test]
    fn a_relative_margin_reads_the_same_wherever_a_catalogs_similarities_sit() {
        // Rankings whose top product is right when it stands out of the next
        // products by more than their spread (with some overlap).
        let mut rng = crate::util::Rng::new(5);
        let rankings: Vec<Vec<f32>> = (0..400)
            .map(|_| {
                let mut r: Vec<f32> = (0..10).map(|_| rng.range(0.3, 0.5)).collect();
                r[0] = 0.5 + rng.range(0.0, 0.2);
                r.sort_by(|a, b| b.total_cmp(a));
                r
            })
            .collect();
        let tops: Vec<TopOfRanking> = rankings.iter().map(|r| TopOfRanking::of(r)).collect();
        let y: Vec<bool> = tops.iter().enumerate().map(|(i, t)| t.relative_margin(0.05) > 1.5 || i % 11 == 0).collect();
        let m = fit_relative_margin(&tops, &y);
        let Mapping::RelativeMargin { w, typical_spread, .. } = m else { panic!("{m:?}") };
        assert!(w > 0.0 && typical_spread > 0.03 && typical_spread < 0.08, "{m:?}");
        assert!(m.judges_ties());
        // The same ranking shifted down (another make-up) or scaled about its mean keeps its probability.
        let r = &rankings[0];
        let p = m.apply_to(&TopOfRanking::of(r));
        let shifted: Vec<f32> = r.iter().map(|s| s - 0.2).collect();
        let scaled: Vec<f32> = r.iter().map(|s| 0.4 + (s - 0.4) * 1.5).collect();
        assert!((m.apply_to(&TopOfRanking::of(&shifted)) - p).abs() < 1e-4);
        assert!((m.apply_to(&TopOfRanking::of(&scaled)) - p).abs() < 1e-4);
        // A bigger margin over the same neighbourhood is likelier right.
        let mut wider = r.clone();
        wider[0] += 0.05;
        assert!(m.apply_to(&TopOfRanking::of(&wider)) > p);
        // Too short a ranking for a spread: the typical one stands in.
        let short = TopOfRanking::of(&[0.8, 0.7]);
        assert_eq!(short.spread, None);
        assert!((m.apply_to(&short) - m.apply(0.8, 0.1)).abs() < 1e-6);
        assert_eq!(TopOfRanking::of(&[]).margin, 0.0);
        assert_eq!(TopOfRanking::of(&[0.8]).margin, 0.8, "alone, the top stands out of a next product at 0");
        // Made-up photos right even at a near-tie still leave a tie a coin toss at most.
        let all_right = fit_relative_margin(&tops, &vec![true; tops.len()]);
        assert!(all_right.apply_to(&TopOfRanking::of(&[0.6, 0.6, 0.5, 0.4, 0.3])) <= 0.5, "{all_right:?}");
    }

    #[test]
    fn calibration_prefers_the_logistic_unless_isotonic_is_clearly_better() {
        // Correct iff similarity > 0.6 (plus noise): a smooth logistic fits; both are scored held out.
        let samples: Vec<CalibrationSample> = (0..400)
            .map(|i| {
                let s = i as f32 / 400.0;
                CalibrationSample { similarity: s, margin: 0.0, correct: s > 0.6 || i % 13 == 0 }
            })
            .collect();
        let (mapping, heldout) = fit_calibration(&samples);
        assert!(heldout.contains_key("logistic") && heldout.contains_key("isotonic") && heldout.contains_key("bootstrap_se_of_difference"));
        let chose_isotonic = matches!(mapping, Mapping::Isotonic { .. });
        assert_eq!(chose_isotonic, heldout["isotonic"] + heldout["bootstrap_se_of_difference"] < heldout["logistic"], "{heldout:?}");
        assert!(mapping.apply(0.95, 0.0) > 0.8 && mapping.apply(0.2, 0.0) < 0.2, "{mapping:?}");
    }
}
