//! Turning a match's similarity (and its margin to the next product) into the
//! probability that the match is right. Fitted by [`crate::fit`] (`knockoff
//! calibrate`, `knockoff tune`), stored as `calibration.json` in the index
//! folder (or shipped next to a model as its default), and turned into the
//! lookup's [`VerdictConfig`] by [`verdict_config`].

use std::path::Path;

use super::VerdictConfig;
use crate::catalog::Catalog;

/// One labelled lookup, as calibration sees it: the top product's
/// similarity, its margin to the next product, and whether it was right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationSample {
    pub similarity: f32,
    pub margin: f32,
    pub correct: bool,
}

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Mapping {
    /// `p = σ(w_sim · sim + w_margin · margin + bias)`.
    Logistic { w_sim: f64, w_margin: f64, bias: f64 },
    /// Isotonic (monotone step) function of the similarity: `p = ys[i]` for the
    /// last `xs[i] <= sim`.
    Isotonic { xs: Vec<f32>, ys: Vec<f32> },
}

impl Mapping {
    /// Whether the mapping weighs the margin to the next product (and so sees near-ties).
    #[must_use]
    pub fn uses_margin(&self) -> bool {
        matches!(self, Mapping::Logistic { w_margin, .. } if *w_margin != 0.0)
    }

    pub fn apply(&self, sim: f32, margin: f32) -> f32 {
        match self {
            Mapping::Logistic { w_sim, w_margin, bias } => {
                let z = w_sim * f64::from(sim) + w_margin * f64::from(margin) + bias;
                (1.0 / (1.0 + (-z).exp())) as f32
            }
            Mapping::Isotonic { xs, ys } => match xs.partition_point(|x| *x <= sim) {
                0 => ys.first().copied().unwrap_or(0.0),
                i => ys[i - 1],
            },
        }
    }
}

/// A fitted calibration with what it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub mapping: Mapping,
    pub model: String,
    pub fitted_at: String,
    pub n_queries: usize,
    pub n_correct: usize,
    /// Held-out ECE (2-fold) of each candidate method; the lower one was chosen.
    pub heldout_ece: std::collections::BTreeMap<String, f64>,
    /// Where the queries came from (manifest paths, or how the catalog's own
    /// photos were cross-validated).
    pub queries: Vec<String>,
    /// Id of the catalog projection the similarities were measured in
    /// (`None`: the model's own vectors). A calibration only applies to the
    /// space it was fitted in.
    #[serde(default)]
    pub projection: Option<String>,
    /// Verdict thresholds fitted with this calibration (on a catalog with
    /// both labels).
    #[serde(default)]
    pub verdict: Option<VerdictThresholds>,
    /// The presence model (`p_no_match`), when one was fitted.
    #[serde(default)]
    pub presence: Option<super::Presence>,
}

/// Verdict thresholds chosen for each error rate an operator may state, by
/// a 95 % upper confidence bound (Clopper–Pearson) on held-out lookups:
/// - `counterfeit`: the lowest `p_counterfeit` threshold whose rate of
///   authentic lookups called `likely_counterfeit` (false accusations) stays
///   under the rate;
/// - `authentic`: the lowest `p_authentic` threshold whose rate of counterfeit
///   lookups called `likely_authentic` (missed counterfeits) stays under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictThresholds {
    pub counterfeit: Vec<RiskThreshold>,
    pub authentic: Vec<RiskThreshold>,
    /// Held-out lookups of authentic and of counterfeit products the choice was made on.
    pub n_authentic: usize,
    pub n_counterfeit: usize,
}

/// One threshold and what it does on the lookups it was chosen on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskThreshold {
    /// The error rate it is chosen for.
    pub max_rate: f64,
    /// Probability needed for the verdict (above 1: never).
    pub threshold: f64,
    /// Lookups it would decide wrongly, and the 95 % upper bound of that rate.
    pub errors: usize,
    pub error_ucb: f64,
    /// Lookups it would decide rightly.
    pub hits: usize,
}

/// The threshold for the largest fitted rate not above `max_rate` (the
/// strictest one when all are above it).
#[must_use]
pub fn for_risk(table: &[RiskThreshold], max_rate: f64) -> Option<&RiskThreshold> {
    table
        .iter()
        // (A rate stated as f32 — 0.02 is 0.0199999995 in f64 — still picks the 0.02 level.)
        .filter(|r| r.max_rate <= max_rate + 1e-6)
        .max_by(|a, b| a.max_rate.total_cmp(&b.max_rate))
        .or_else(|| table.iter().min_by(|a, b| a.max_rate.total_cmp(&b.max_rate)))
}

pub const CALIBRATION_FILE: &str = "calibration.json";

impl Calibration {
    pub fn load(path: &Path) -> Option<Calibration> {
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", path.display());
                None
            }
        }
    }

    /// The calibrations that exist, in order of precedence: the index's own,
    /// then the model's shipped default.
    fn candidates(index_dir: &Path, model_dir: &Path) -> impl Iterator<Item = (Calibration, std::path::PathBuf)> {
        [index_dir.join(CALIBRATION_FILE), model_dir.join(CALIBRATION_FILE)]
            .into_iter()
            .filter_map(|p| Calibration::load(&p).map(|c| (c, p)))
    }

    /// The index's own calibration, else the model's shipped default.
    pub fn find(index_dir: &Path, model_dir: &Path) -> Option<(Calibration, std::path::PathBuf)> {
        Self::candidates(index_dir, model_dir).next()
    }

    /// Like [`Calibration::find`], skipping (with a warning) a calibration
    /// fitted for another model or in another projection.
    pub fn find_matching(
        index_dir: &Path,
        model_dir: &Path,
        model: &str,
        projection: Option<&str>,
    ) -> Option<(Calibration, std::path::PathBuf)> {
        Self::candidates(index_dir, model_dir).find(|(c, p)| {
            let ok = c.model == model && c.projection.as_deref() == projection;
            if !ok {
                tracing::warn!(
                    "ignoring {}: fitted for model '{}' / projection {:?}, the index is '{model}' / {:?}",
                    p.display(),
                    c.model,
                    c.projection,
                    projection
                );
            }
            ok
        })
    }
}

/// What an index is calibrated with, for `stats` and `/v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationInfo {
    /// The file it came from (the index's own, or the model's shipped default).
    pub file: String,
    pub fitted_at: String,
    /// What it was fitted on, in words.
    pub fitted_on: String,
    pub n_queries: usize,
    /// Whether it has a presence model (`p_no_match`) and fitted counterfeit thresholds.
    pub presence: bool,
    pub counterfeit_thresholds: bool,
}

impl CalibrationInfo {
    fn new(cal: &Calibration, path: &Path) -> Self {
        CalibrationInfo {
            file: path.display().to_string(),
            fitted_at: cal.fitted_at.clone(),
            fitted_on: cal.queries.join("; "),
            n_queries: cal.n_queries,
            presence: cal.presence.is_some(),
            counterfeit_thresholds: cal.verdict.is_some(),
        }
    }
}

/// The calibration a lookup on `catalog` would use, described.
#[must_use]
pub fn describe(catalog: &Catalog, model_dir: &Path) -> Option<CalibrationInfo> {
    matching(catalog, model_dir).map(|(c, p)| CalibrationInfo::new(&c, &p))
}

/// The index's calibration matching its model and projection, else the model's shipped one.
fn matching(catalog: &Catalog, model_dir: &Path) -> Option<(Calibration, std::path::PathBuf)> {
    let projection = catalog.projection().map(|p| p.info.id.clone());
    Calibration::find_matching(catalog.dir(), model_dir, catalog.model(), projection.as_deref())
}

/// The verdict settings a lookup on `catalog` uses: the index's calibration
/// (or the model's shipped default, from `model_dir`) with its presence model
/// and the counterfeit threshold fitted for the stated false-accusation rate.
/// `configured` (a `[verdict]` section of the service config) states the rate
/// and the defaults; without fitted thresholds its own apply.
#[must_use]
pub fn verdict_config(catalog: &Catalog, model_dir: &Path, configured: Option<&VerdictConfig>) -> VerdictConfig {
    verdict_config_described(catalog, model_dir, configured).0
}

/// [`verdict_config`] and the description of the calibration it took (one read of the file).
#[must_use]
pub fn verdict_config_described(
    catalog: &Catalog,
    model_dir: &Path,
    configured: Option<&VerdictConfig>,
) -> (VerdictConfig, Option<CalibrationInfo>) {
    let mut v = configured.cloned().unwrap_or_default();
    let found = matching(catalog, model_dir);
    if let Some((cal, path)) = &found {
        tracing::info!("confidence calibration from {}", path.display());
        v.apply(cal);
    }
    (v, found.map(|(c, p)| CalibrationInfo::new(&c, &p)))
}

impl VerdictConfig {
    /// Takes a fitted calibration: mapping, presence, floor and the counterfeit threshold for `self.max_false_accusation`.
    pub fn apply(&mut self, cal: &Calibration) {
        self.calibration = Some(cal.mapping.clone());
        self.presence.clone_from(&cal.presence);
        self.floor = self.floor.min(1.0 / (cal.n_queries as f32 + 2.0)).max(1e-4);
        if let Some(t) = &cal.verdict {
            self.thresholds_fitted = true;
            if let Some(r) = for_risk(&t.counterfeit, f64::from(self.max_false_accusation)) {
                self.counterfeit_threshold = r.threshold as f32;
            }
            if let Some(r) = for_risk(&t.authentic, f64::from(self.max_missed_counterfeit)) {
                self.authentic_threshold = (r.threshold as f32).max(self.authentic_threshold);
            }
        }
    }
}

/// Logistic regression by Newton's method on (sim, margin) → correct.
pub fn fit_logistic(x: &[(f32, f32)], y: &[bool]) -> Mapping {
    let [w_sim, w_margin, bias] = fit_logistic_weighted(x, y, &vec![1.0; y.len()]);
    Mapping::Logistic { w_sim, w_margin, bias }
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
}
