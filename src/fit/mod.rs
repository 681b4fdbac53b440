//! Everything knockoff learns from labelled lookups, in one place: the
//! confidence mappings (logistic or isotonic, chosen by held-out ECE,
//! [`mappings`]), the verdict thresholds (bounded by risk, [`risk`]), the
//! projection's cross-validation ([`cv`]), self-calibration from the
//! catalog's own photos ([`selfcal`], [`views`]), the service's refit
//! policy ([`refit`]), and the use cases that fit and save them ([`tune`]:
//! `tune`, `calibrate`, the fitting `knockoff index` ends with). Each
//! returns a typed report; nothing here prints.

mod cv;
mod mappings;
pub mod priority;
pub mod refit;
mod risk;
mod selfcal;
mod store;
mod tune;
pub mod views;

pub use cv::{cross_validate_projection, ProjectionCv};
pub use mappings::{fit_calibration, fit_isotonic, fit_logistic, fit_logistic_weighted, fit_relative_margin};
pub use risk::{clopper_pearson_upper, fit_identity_thresholds, fit_risk_thresholds, RiskSample, RISK_LEVELS};
pub use selfcal::{self_calibrate, Evidence, SelfCalOptions, SelfCalReport, Skipped, REVIEWS_TO_LEAD};
pub use store::fit_and_save_calibration;
pub(crate) use store::save_calibration;
pub use tune::{calibrate, fit_index, self_calibrate_logged, tune, TuneOptions, TuneReport};

use std::path::PathBuf;

use crate::catalog::CatalogError;
use crate::ingest::IngestError;

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("index {0} is empty: index a catalog first")]
    EmptyIndex(String),
    #[error(transparent)]
    Queries(#[from] IngestError),
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("embedding synthetic views failed: {0}")]
    Embed(#[from] crate::embed::EmbedError),
}
