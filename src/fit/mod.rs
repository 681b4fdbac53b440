//! Everything knockoff learns from labelled lookups, in one place: the
//! confidence calibration (logistic or isotonic, chosen by held-out ECE), the
//! verdict thresholds (by expected cost), the projection's cross-validation,
//! and the two use cases that fit and save them, [`tune`] (from the catalog's
//! own photos) and [`calibrate`] (from labelled query photos). Each returns a
//! typed report; nothing here prints.

mod cv;

pub use cv::{cross_validate_projection, ProjectionCv};

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, FitOptions, Label, ProjectionInfo};
use crate::embed::Embedder;
use crate::eval::metrics::ece;
use crate::eval::{evaluate, read_queries, EvalOptions, Query};
use crate::ingest::IngestError;
use crate::search::calibration::{fit_isotonic, fit_logistic, CalibrationSample, CALIBRATION_FILE};
use crate::search::{assess, Calibration, Candidate, Mapping, VerdictConfig, VerdictKind, VerdictThresholds};

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("index {0} is empty: index a catalog first")]
    EmptyIndex(PathBuf),
    #[error(transparent)]
    Queries(#[from] IngestError),
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
}

/// One labelled lookup: the right product and the best products found (key, similarity).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedLookup<K> {
    pub truth: K,
    pub top: Vec<(K, f32)>,
}

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

/// Margins tried when fitting the verdict's `uncertain` band.
pub const VERDICT_MARGINS: [f64; 8] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3];

/// Chooses the verdict margin on labelled lookups by expected cost: a wrong
/// verdict costs 1, `uncertain` costs `uncertain_cost`, `no_match` on a
/// known product 1. Each lookup is decided by [`assess`], the lookup path's
/// own function. `None` unless the products carry both labels.
#[must_use]
pub fn fit_verdict_thresholds<K: Eq + Hash, S: std::hash::BuildHasher>(
    lookups: &[RankedLookup<K>],
    label_of: &HashMap<K, Label, S>,
    mapping: &Mapping,
    uncertain_cost: f64,
) -> Option<VerdictThresholds> {
    let has = |l: Label| label_of.values().any(|x| *x == l);
    if !(has(Label::Authentic) && has(Label::Counterfeit)) || lookups.is_empty() {
        return None;
    }
    let min_confidence = f64::from(VerdictConfig::default().min_confidence);
    let lists: Vec<(Label, Vec<Candidate<'_>>)> = lookups
        .iter()
        .filter_map(|l| {
            let truth = *label_of.get(&l.truth)?;
            let cands = l
                .top
                .iter()
                .filter_map(|(key, sim)| Some(Candidate { product_id: "", label: *label_of.get(key)?, similarity: *sim }))
                .collect();
            Some((truth, cands))
        })
        .collect();
    let cost_of = |margin: f64| -> f64 {
        let cfg = VerdictConfig {
            margin: margin as f32,
            min_confidence: min_confidence as f32,
            calibration: Some(mapping.clone()),
            ..Default::default()
        };
        let total: f64 = lists
            .iter()
            .map(|(truth, cands)| match (assess(cands, &cfg).verdict.verdict, truth) {
                (VerdictKind::LikelyAuthentic, Label::Authentic) | (VerdictKind::LikelyCounterfeit, Label::Counterfeit) => 0.0,
                (VerdictKind::Uncertain, _) => uncertain_cost,
                _ => 1.0,
            })
            .sum();
        total / lists.len().max(1) as f64
    };
    let cost_by_margin: Vec<(f64, f64)> = VERDICT_MARGINS.iter().map(|m| (*m, cost_of(*m))).collect();
    // Lowest cost; on a tie the wider margin (more caution for the same cost).
    let margin = cost_by_margin.iter().fold((0.0f64, f64::INFINITY), |best, (m, c)| if *c <= best.1 { (*m, *c) } else { best }).0;
    Some(VerdictThresholds { min_confidence, margin, uncertain_cost, n_queries: lists.len(), cost_by_margin })
}

/// Fits the confidence mapping on `samples` (and, with it, the verdict
/// thresholds), tags it with the index's model and projection, and writes it
/// atomically to `path`: what `calibrate` and `tune` both store.
pub fn fit_and_save_calibration(
    catalog: &Catalog,
    samples: &[CalibrationSample],
    fit_verdict: impl FnOnce(&Mapping) -> Option<VerdictThresholds>,
    queries: Vec<String>,
    path: &Path,
) -> Result<Calibration, FitError> {
    let (mapping, heldout_ece) = fit_calibration(samples);
    let verdict = fit_verdict(&mapping);
    let cal = Calibration {
        mapping,
        model: catalog.model().to_string(),
        fitted_at: crate::util::now_rfc3339(),
        n_queries: samples.len(),
        n_correct: samples.iter().filter(|s| s.correct).count(),
        heldout_ece,
        queries,
        projection: catalog.projection().map(|p| p.info.id.clone()),
        verdict,
    };
    let json = serde_json::to_vec_pretty(&cal).map_err(|e| FitError::Write { path: path.into(), error: e.into() })?;
    crate::util::write_atomic(path, &json).map_err(|error| FitError::Write { path: path.into(), error })?;
    Ok(cal)
}

/// Settings of [`tune`].
#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub projection: FitOptions,
    pub folds: usize,
    /// At most this many cross-validation lookups (spread evenly over the folds).
    pub cv_lookups: usize,
    /// Apply the projection even when cross-validation says it does not help.
    pub force: bool,
    /// Cost of an `uncertain` verdict relative to a wrong one (1).
    pub uncertain_cost: f64,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions { projection: FitOptions::default(), folds: 5, cv_lookups: 5000, force: false, uncertain_cost: 0.5 }
    }
}

/// What [`tune`] did.
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    pub cross_validation: ProjectionCv,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<ProjectionInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_heldout_ece: Option<BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictThresholds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_file: Option<PathBuf>,
}

/// Cross-validates a projection on the catalog's own photos; when it beats
/// the model's own vectors (or `force`), applies it and stores the
/// confidence calibration fitted on the cross-validated lookups. `log`
/// receives one line per step.
pub fn tune(catalog: &Catalog, opts: &TuneOptions, log: &mut dyn FnMut(String)) -> Result<TuneReport, FitError> {
    let labelled = catalog.labelled_vectors()?;
    let t0 = std::time::Instant::now();
    let cv = cross_validate_projection(&labelled, catalog.model(), opts.projection, opts.folds, opts.cv_lookups, |f, n| {
        if f < n {
            log(format!("cross-validation fold {}/{n}", f + 1));
        }
    })?;
    log(format!(
        "{} photos looked up against the other folds: top-1 {:.3} with the projection, {:.3} without ({:.1}s)",
        cv.n_queries,
        cv.top1_projected,
        cv.top1_raw,
        t0.elapsed().as_secs_f64()
    ));
    let mut report = TuneReport {
        cross_validation: cv,
        applied: false,
        projection: None,
        calibration_heldout_ece: None,
        verdict: None,
        calibration_file: None,
    };
    if report.cross_validation.top1_projected <= report.cross_validation.top1_raw && !opts.force {
        log("the projection does not help on this catalog: not applied (--force applies it anyway)".into());
        return Ok(report);
    }
    let info = catalog.fit_projection(opts.projection)?;
    let path = catalog.dir().join(CALIBRATION_FILE);
    let cv = &report.cross_validation;
    let labels = catalog.product_labels();
    let cal = fit_and_save_calibration(
        catalog,
        &cv.samples,
        |mapping| fit_verdict_thresholds(&cv.ranked, &labels, mapping, opts.uncertain_cost),
        vec![format!("{}-fold cross-validation of the catalog's own photos (knockoff tune)", cv.folds)],
        &path,
    )?;
    if let Some(v) = &cal.verdict {
        log(format!("verdict margin {:.2} (expected cost per lookup by margin: {:?})", v.margin, v.cost_by_margin));
    }
    log(format!(
        "projection {} ({} → {} dims, {} products, {} photos) applied; calibration written to {}",
        info.id,
        info.in_dim,
        info.out_dim,
        info.n_products,
        info.n_images,
        path.display()
    ));
    report.applied = true;
    report.projection = Some(info);
    report.calibration_heldout_ece = Some(cal.heldout_ece);
    report.verdict = cal.verdict;
    report.calibration_file = Some(path);
    Ok(report)
}

/// Fits the index's calibration (and verdict margin) from labelled query
/// photos not in the index (the manifests `queries`), and writes it to `out`.
/// Query rows that cannot be read go to `skipped`.
pub fn calibrate(
    catalog: &Catalog,
    embedder: &Embedder,
    queries: &[PathBuf],
    uncertain_cost: f64,
    out: &Path,
    skipped: &mut dyn FnMut(IngestError),
) -> Result<Calibration, FitError> {
    if catalog.stats()?.counts.images == 0 {
        return Err(FitError::EmptyIndex(catalog.dir().into()));
    }
    let (rows, errors) = read_queries(queries)?;
    errors.into_iter().for_each(&mut *skipped);
    let sources = queries.iter().map(|q| q.display().to_string()).collect();
    let queries: &[Query] = &rows;
    let opts = EvalOptions {
        k: 5,
        verdict: VerdictConfig::default(),
        concurrency: crate::embed::available_cores(),
        product_score: crate::search::ProductScore::default(),
    };
    let report = evaluate(catalog, embedder, queries, &opts)?;
    let mut label_of = HashMap::new();
    for l in &report.lookups {
        for id in std::iter::once(&l.truth).chain(l.top.iter().map(|(id, _)| id)) {
            if !label_of.contains_key(id) {
                if let Some(p) = catalog.product(id)? {
                    label_of.insert(id.clone(), p.label);
                }
            }
        }
    }
    fit_and_save_calibration(
        catalog,
        &report.samples,
        |mapping| fit_verdict_thresholds(&report.lookups, &label_of, mapping, uncertain_cost),
        sources,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_margin_is_fitted_by_expected_cost_and_needs_both_labels() {
        // Confidences: 0.6 → 0.58, 0.7 → 0.70, 0.9 → 0.94 (gaps 0.12 and 0.24, off the grid of margins).
        let mapping = Mapping::Isotonic { xs: vec![0.0, 0.5, 0.6, 0.7, 0.8, 0.9], ys: vec![0.05, 0.52, 0.58, 0.7, 0.83, 0.94] };
        let labels: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Counterfeit)].into();
        // 6 clear lookups (similarities 0.9 vs 0.7) the top product gets right;
        // 4 near-ties (0.7 vs 0.6) it gets wrong: `uncertain` is cheaper there.
        let mut ranked = Vec::new();
        for _ in 0..6 {
            ranked.push(RankedLookup { truth: 1, top: vec![(1, 0.9), (2, 0.7)] });
        }
        for _ in 0..4 {
            ranked.push(RankedLookup { truth: 2, top: vec![(1, 0.7), (2, 0.6)] });
        }
        let t = fit_verdict_thresholds(&ranked, &labels, &mapping, 0.5).unwrap();
        assert_eq!(t.n_queries, 10);
        let cost = |m: f64| t.cost_by_margin.iter().find(|(x, _)| *x == m).unwrap().1;
        assert!((cost(0.0) - 0.4).abs() < 1e-9, "margin 0: the 4 ties are wrong verdicts");
        assert!((cost(0.15) - 0.2).abs() < 1e-9, "ties uncertain: 4 × 0.5 / 10");
        assert!((cost(0.3) - 0.5).abs() < 1e-9, "too wide: the clear ones become uncertain too");
        assert!((t.margin - 0.2).abs() < f64::EPSILON, "lowest cost, the wider of the tied margins: {t:?}");
        assert!((t.min_confidence - 0.5).abs() < f64::EPSILON);
        // A catalog with one label has no verdict to fit.
        let one: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Authentic)].into();
        assert!(fit_verdict_thresholds(&ranked, &one, &mapping, 0.5).is_none());
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
