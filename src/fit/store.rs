//! Storing a fitted calibration: as the catalog's own (shared with every
//! server of the catalog), or into a file.

use std::path::Path;

use super::{fit_calibration, FitError};
use crate::catalog::files::CALIBRATION_FILE;
use crate::catalog::Catalog;
use crate::search::calibration::CalibrationSample;
use crate::search::{Calibration, VerdictConfig, VerdictThresholds};

/// Writes a calibration atomically: to `out`, or (`None`) as the catalog's
/// own, for every server of the catalog.
pub(crate) fn save_calibration(catalog: &Catalog, cal: &Calibration, out: Option<&Path>) -> Result<(), FitError> {
    let json = serde_json::to_string_pretty(cal).map_err(|e| FitError::Write { path: CALIBRATION_FILE.into(), error: e.into() })?;
    match out {
        Some(path) => crate::util::write_atomic(path, json.as_bytes()).map_err(|error| FitError::Write { path: path.into(), error }),
        None => Ok(catalog.put_file(CALIBRATION_FILE, Some(&json))?),
    }
}

/// Fits the confidence mapping on `samples` (and, with it, the verdict
/// thresholds), keeps the presence model of the calibration it replaces,
/// tags it with the index's model and projection, and writes it atomically
/// to `out` (`None`: as the catalog's own): what `calibrate` stores.
pub fn fit_and_save_calibration(
    catalog: &Catalog,
    samples: &[CalibrationSample],
    fit_verdict: impl FnOnce(&VerdictConfig) -> Option<VerdictThresholds>,
    queries: Vec<String>,
    out: Option<&Path>,
) -> Result<Calibration, FitError> {
    let (mapping, heldout_ece) = fit_calibration(samples);
    let replaced = match out {
        Some(path) => Calibration::load(path),
        None => Calibration::of_catalog(catalog),
    };
    let presence = replaced.and_then(|c| c.presence);
    let mut cal = Calibration {
        mapping,
        model: catalog.model().to_string(),
        fitted_at: crate::util::now_rfc3339(),
        n_queries: samples.len(),
        n_correct: samples.iter().filter(|s| s.correct).count(),
        heldout_ece,
        queries,
        projection: catalog.projection().map(|p| p.info.id.clone()),
        verdict: None,
        presence,
        // Fitted on the replaced mapping's confidences: not carried over.
        identity: None,
    };
    let mut cfg = VerdictConfig::default();
    cfg.apply(&cal);
    cal.verdict = fit_verdict(&cfg);
    save_calibration(catalog, &cal, out)?;
    Ok(cal)
}
