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
    /// Verdict thresholds fitted with this calibration (`knockoff tune` on a
    /// catalog with both labels); a `[verdict]` section in the service config wins.
    #[serde(default)]
    pub verdict: Option<VerdictThresholds>,
}

/// Verdict thresholds chosen from calibrated lookups: `margin` minimises the
/// expected cost (wrong verdict 1, `uncertain` `uncertain_cost`, right 0);
/// `min_confidence` stays at even odds (below it the top match is more
/// likely wrong than right, so `no_match`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictThresholds {
    pub min_confidence: f64,
    pub margin: f64,
    pub uncertain_cost: f64,
    /// Lookups the choice was made on, and the cost per lookup of each margin tried.
    pub n_queries: usize,
    pub cost_by_margin: Vec<(f64, f64)>,
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

/// The verdict settings a lookup on `catalog` uses: the index's calibration
/// (or the model's shipped default, from `model_dir`) with its fitted
/// thresholds. `configured` (a `[verdict]` section of the service config)
/// keeps its own thresholds and takes only the calibration.
#[must_use]
pub fn verdict_config(catalog: &Catalog, model_dir: &Path, configured: Option<&VerdictConfig>) -> VerdictConfig {
    let projection = catalog.projection().map(|p| p.info.id.clone());
    let found = Calibration::find_matching(catalog.dir(), model_dir, catalog.model(), projection.as_deref());
    let mut v = configured.cloned().unwrap_or_default();
    if let Some((cal, path)) = found {
        tracing::info!("confidence calibration from {}", path.display());
        v.calibration = Some(cal.mapping);
        if let (Some(t), None) = (cal.verdict, configured) {
            v.min_confidence = t.min_confidence as f32;
            v.margin = t.margin as f32;
        }
    }
    v
}

/// Logistic regression by Newton's method on (sim, margin) → correct.
pub fn fit_logistic(x: &[(f32, f32)], y: &[bool]) -> Mapping {
    let mut w = [0.0f64; 3]; // sim, margin, bias
    for _ in 0..50 {
        let mut g = [0.0f64; 3];
        let mut h = [[0.0f64; 3]; 3];
        for ((s, m), t) in x.iter().zip(y) {
            let f = [f64::from(*s), f64::from(*m), 1.0];
            let z: f64 = (0..3).map(|i| w[i] * f[i]).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let r = p - f64::from(u8::from(*t));
            for i in 0..3 {
                g[i] += r * f[i];
                for j in 0..3 {
                    h[i][j] += p * (1.0 - p) * f[i] * f[j];
                }
            }
        }
        for (i, row) in h.iter_mut().enumerate() {
            row[i] += 1e-6; // ridge, keeps separable data finite
        }
        let Some(step) = solve3(h, g) else { break };
        for i in 0..3 {
            w[i] -= step[i];
        }
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-9 {
            break;
        }
    }
    Mapping::Logistic { w_sim: w[0], w_margin: w[1], bias: w[2] }
}

fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    if d.abs() < 1e-300 {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut m = a;
        for i in 0..3 {
            m[i][k] = b[i];
        }
        *o = det(m) / d;
    }
    Some(out)
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
