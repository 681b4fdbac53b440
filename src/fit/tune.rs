//! The fitting use cases and what they say: [`tune`] (a projection when it
//! helps, then self-calibration), [`fit_index`] (what `knockoff index` ends
//! with and the service's refit runs), [`calibrate`] (from labelled query
//! photos), and storing a calibration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::selfcal::{self, self_calibrate, Evidence, SelfCalOptions, SelfCalReport, Skipped};
use super::store::fit_and_save_calibration;
use super::{cross_validate_projection, fit_risk_thresholds, FitError, ProjectionCv, RiskSample};
use crate::catalog::{Catalog, FitOptions, ProjectionInfo};
use crate::embed::Embedder;
use crate::ingest::{read_queries, IngestError};
use crate::search::batch::{look_up_all, BatchOptions};
use crate::search::calibration::{for_risk, CalibrationSample};
use crate::search::{Calibration, VerdictConfig};

/// Settings of [`tune`].
#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub projection: FitOptions,
    pub folds: usize,
    /// At most this many cross-validation lookups (spread evenly over the folds).
    pub cv_lookups: usize,
    /// Apply the projection even when cross-validation says it does not help.
    pub force: bool,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions { projection: FitOptions::default(), folds: 5, cv_lookups: 5000, force: false }
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
    pub self_calibration: Option<SelfCalReport>,
}

/// Cross-validates a projection on the catalog's own photos; when it beats
/// the model's own vectors (or `force`), applies it and stores the
/// confidence calibration fitted on the catalog's held-out photos (on
/// synthetic views when they copy one another and the model, `embedder`, is
/// at hand). `log` receives one line per step.
pub fn tune(
    catalog: &Catalog,
    embedder: Option<&Embedder>,
    opts: &TuneOptions,
    log: &mut dyn FnMut(String),
) -> Result<TuneReport, FitError> {
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
    let mut report = TuneReport { cross_validation: cv, applied: false, projection: None, self_calibration: None };
    if report.cross_validation.top1_projected <= report.cross_validation.top1_raw && !opts.force {
        log("the projection does not help on this catalog: not applied (--force applies it anyway)".into());
        report.self_calibration = self_calibrate_logged(catalog, embedder, log)?;
        return Ok(report);
    }
    let info = catalog.fit_projection(opts.projection)?;
    log(format!(
        "projection {} ({} → {} dims, {} products, {} photos) applied",
        info.id, info.in_dim, info.out_dim, info.n_products, info.n_images
    ));
    report.applied = true;
    report.projection = Some(info);
    report.self_calibration = self_calibrate_logged(catalog, embedder, log)?;
    Ok(report)
}

/// What `knockoff index` ends with and the service's background refit runs
/// ([`selfcal::fit_index`]: the projection when it helps, then
/// self-calibration), with its outcome in words for `log`. A failure is
/// logged, never fatal: the index and its earlier calibration stay as they were.
/// Returns whether it fitted (`Some(true)`), had too little to fit on (`Some(false)`), or failed (`None`).
pub fn fit_index(catalog: &Catalog, embedder: Option<&Embedder>, log: &mut dyn FnMut(String)) -> Option<bool> {
    match selfcal::fit_index(catalog, embedder, &SelfCalOptions::default()) {
        Ok(outcome) => {
            let fitted = outcome.is_ok();
            log_outcome(outcome, log);
            Some(fitted)
        }
        Err(e) => {
            log(format!("fitting the index failed, its earlier calibration stays: {e}"));
            None
        }
    }
}

/// [`self_calibrate`] with its outcome in words for `log`.
pub fn self_calibrate_logged(
    catalog: &Catalog,
    embedder: Option<&Embedder>,
    log: &mut dyn FnMut(String),
) -> Result<Option<SelfCalReport>, FitError> {
    let outcome = self_calibrate(catalog, embedder, &SelfCalOptions::default())?;
    let report = outcome.as_ref().ok().cloned();
    log_outcome(outcome, log);
    Ok(report)
}

/// The thresholds `cal` gives at the default rates, in words.
fn thresholds_in_words(cal: &Calibration) -> String {
    let mut v = VerdictConfig::default();
    v.apply(cal);
    crate::search::calibration::ThresholdsInUse::of(&v).to_string()
}

fn log_outcome(outcome: Result<SelfCalReport, Skipped>, log: &mut dyn FnMut(String)) {
    match outcome {
        Ok(r) if r.evidence != Evidence::HeldOutHalves => log(format!(
            "fitted the confidence mapping and p_no_match on {} synthetic listing photos of the catalog's own images ({}): top-1 {:.3}; {}; {:.1}s",
            r.n_lookups,
            r.evidence.why_views(),
            r.top1_raw,
            if r.calibration.verdict.is_some() {
                format!("verdict thresholds, the defaults raised where the views need more (never lowered): {}", thresholds_in_words(&r.calibration))
            } else {
                "verdict thresholds stay the defaults".into()
            },
            r.seconds
        )),
        Ok(r) => {
            let t = r.calibration.verdict.as_ref();
            let risk = t.and_then(|t| for_risk(&t.counterfeit, 0.02));
            log(format!(
                "fitted on {} held-out lookups of the catalog's own photos: top-1 {:.3} as embedded{}; projection {}{}; {:.1}s",
                r.n_lookups,
                r.top1_raw,
                r.top1_projected.map_or(String::new(), |p| format!(", {p:.3} in a projection")),
                if r.projected { "applied" } else { "not applied" },
                risk.map_or(String::new(), |c| format!(
                    "; counterfeit threshold {:.3} for a 2% false-accusation rate ({} of {} authentic lookups over it, upper bound {:.3})",
                    c.threshold,
                    c.errors,
                    t.map_or(0, |t| t.n_authentic),
                    c.error_ucb
                )),
                r.seconds
            ));
        }
        Err(skipped) => log(format!("no self-calibration: {skipped}")),
    }
}

/// Fits the index's calibration (and counterfeit thresholds) from labelled query
/// photos not in the index (the manifests `queries`), and writes it to `out`
/// (`None`: as the catalog's own).
/// Query rows that cannot be read go to `skipped`.
pub fn calibrate(
    catalog: &Catalog,
    embedder: &Embedder,
    queries: &[PathBuf],
    out: Option<&Path>,
    skipped: &mut dyn FnMut(IngestError),
) -> Result<Calibration, FitError> {
    if catalog.stats()?.counts.images == 0 {
        return Err(FitError::EmptyIndex(catalog.location()));
    }
    let (rows, errors) = read_queries(queries)?;
    errors.into_iter().for_each(&mut *skipped);
    let sources = queries.iter().map(|q| q.display().to_string()).collect();
    let opts = BatchOptions {
        k: 5,
        verdict: VerdictConfig::default(),
        concurrency: crate::embed::available_cores(),
        product_score: crate::search::ProductScore::default(),
    };
    let photos: Vec<&str> = rows.iter().map(|q| q.image.as_str()).collect();
    let (mut samples, mut lookups): (Vec<CalibrationSample>, Vec<_>) = (Vec::new(), Vec::new());
    for (q, looked) in rows.iter().zip(look_up_all(catalog, embedder, &photos, &opts)?) {
        let Ok(looked) = looked else { continue };
        samples.push(looked.sample(q.product_id.as_deref()));
        lookups.extend(q.product_id.as_deref().map(|truth| looked.ranked_lookup(truth)));
    }
    let mut label_of = HashMap::new();
    for l in &lookups {
        for id in std::iter::once(&l.truth).chain(l.top.iter().map(|(id, _)| id)) {
            if !label_of.contains_key(id) {
                if let Some(p) = catalog.records().product(id)? {
                    label_of.insert(id.clone(), p.label);
                }
            }
        }
    }
    fit_and_save_calibration(catalog, &samples, |cfg| fit_risk_thresholds(&RiskSample::positives(&lookups), &label_of, cfg), sources, out)
}
