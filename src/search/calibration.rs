//! Turning a match's similarity (and its margin to the next product) into the
//! probability that the match is right. Fitted by [`crate::fit`] (`knockoff
//! calibrate`, `knockoff tune`), stored as `calibration.json` in the index
//! folder (or shipped next to a model as its default), and turned into the
//! lookup's [`VerdictConfig`] by [`verdict_config`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use super::mapping::{CalibrationSample, Mapping, TopOfRanking};
use super::VerdictConfig;
use crate::catalog::files::CALIBRATION_FILE;
use crate::catalog::Catalog;

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
    /// What the top product's own probability needs before `likely_authentic`
    /// names it, fitted on photos of products the catalog does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityThresholds>,
}

/// For each rate of photos of *uncatalogued* products an operator accepts
/// being called `likely_authentic` (`max_false_authentication`), the lowest
/// threshold on the top product's own probability (its `confidence`) whose
/// rate of held-out lookups with their product removed reaching it stays
/// under the rate (95 % upper bound): `likely_authentic` then needs positive
/// evidence for the product, not only the absence of a counterfeit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityThresholds {
    pub levels: Vec<RiskThreshold>,
    /// Lookups with their product removed the choice was made on.
    pub n_nones: usize,
    /// Chosen on synthetic views (see [`VerdictThresholds::on_views`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_views: bool,
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
    /// Chosen on synthetic views, not real photos: a threshold is only ever
    /// raised by them above its default, never lowered (a bound on made-up
    /// photos may promise what real listings do not keep, so it may only make
    /// a verdict more cautious).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_views: bool,
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

/// The threshold for the largest fitted rate not above `max_rate`; `None`
/// when every fitted rate is above it (no fitted threshold keeps that rate).
#[must_use]
pub fn for_risk(table: &[RiskThreshold], max_rate: f64) -> Option<&RiskThreshold> {
    table
        .iter()
        // (A rate stated as f32 — 0.02 is 0.0199999995 in f64 — still picks the 0.02 level.)
        .filter(|r| r.max_rate <= max_rate + 1e-6)
        .max_by(|a, b| a.max_rate.total_cmp(&b.max_rate))
}

/// A threshold no probability reaches: what a rate gets when no fitted
/// threshold can show it (the risk table's "never", and a stated rate
/// stricter than every fitted level).
pub const NEVER: f64 = 1.01;

impl Calibration {
    /// The calibration in a file, if it reads.
    pub fn load(path: &Path) -> Option<Calibration> {
        Calibration::parse(&std::fs::read_to_string(path).ok()?, &path.display().to_string())
    }

    /// A calibration as stored; one that does not read is ignored with a warning naming `origin`.
    pub fn parse(text: &str, origin: &str) -> Option<Calibration> {
        match serde_json::from_str(text) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("ignoring {origin}: {e}");
                None
            }
        }
    }

    /// The calibrations in an index folder and a model folder, in order of
    /// precedence: the index's own, then the model's shipped default.
    fn in_folders(index_dir: &Path, model_dir: &Path) -> impl Iterator<Item = (Calibration, PathBuf)> {
        [index_dir.join(CALIBRATION_FILE), model_dir.join(CALIBRATION_FILE)]
            .into_iter()
            .filter_map(|p| Calibration::load(&p).map(|c| (c, p)))
    }

    /// The index folder's own calibration, else the model's shipped default.
    pub fn find(index_dir: &Path, model_dir: &Path) -> Option<(Calibration, PathBuf)> {
        Self::in_folders(index_dir, model_dir).next()
    }

    /// Like [`Calibration::find`], skipping (with a warning) a calibration
    /// fitted for another model or in another projection.
    pub fn find_matching(index_dir: &Path, model_dir: &Path, model: &str, projection: Option<&str>) -> Option<(Calibration, PathBuf)> {
        Self::first_matching(Self::in_folders(index_dir, model_dir).map(|(c, p)| (c, p.display().to_string())), model, projection)
            .map(|(c, p)| (c, PathBuf::from(p)))
    }

    /// The first of `found` fitted for `model` in `projection`; the others are skipped with a warning.
    fn first_matching(
        mut found: impl Iterator<Item = (Calibration, String)>,
        model: &str,
        projection: Option<&str>,
    ) -> Option<(Calibration, String)> {
        found.find(|(c, origin)| {
            let ok = c.model == model && c.projection.as_deref() == projection;
            if !ok {
                tracing::warn!(
                    "ignoring {origin}: fitted for model '{}' / projection {:?}, the index is '{model}' / {:?}",
                    c.model,
                    c.projection,
                    projection
                );
            }
            ok
        })
    }

    /// The catalog's own calibration (among its shared files), if any.
    pub fn of_catalog(catalog: &Catalog) -> Option<Calibration> {
        Self::stored(catalog).map(|(c, _)| c)
    }

    fn stored(catalog: &Catalog) -> Option<(Calibration, String)> {
        let origin = format!("{}/{CALIBRATION_FILE}", catalog.location());
        let text = catalog.records().file(CALIBRATION_FILE).map_err(|e| tracing::warn!("cannot read {origin}: {e}")).ok().flatten()?;
        Calibration::parse(&text, &origin).map(|c| (c, origin))
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
    /// Whether it has a presence model (`p_no_match`) and fitted counterfeit
    /// thresholds (on synthetic views only ever stricter than the defaults:
    /// `fitted_on` says which).
    pub presence: bool,
    pub counterfeit_thresholds: bool,
    /// The thresholds lookups use at the stated rates (above 1: no
    /// probability reaches it), and where they come from.
    pub thresholds: ThresholdsInUse,
}

/// The verdict thresholds in use, for `stats` and `/v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ThresholdsInUse {
    /// `p_counterfeit` needed for `likely_counterfeit`, at `max_false_accusation`.
    pub likely_counterfeit: f32,
    pub max_false_accusation: f32,
    /// `p_authentic` needed for `likely_authentic`, at `max_missed_counterfeit`.
    pub likely_authentic: f32,
    pub max_missed_counterfeit: f32,
    /// The top product's own probability needed for `likely_authentic`, at `max_false_authentication`.
    pub named_product: f32,
    pub max_false_authentication: f32,
    /// `default`, `fitted` (held-out photos or labelled queries) or `stricter_on_views`.
    pub basis: &'static str,
}

impl CalibrationInfo {
    fn new(cal: &Calibration, origin: &str, v: &VerdictConfig) -> Self {
        CalibrationInfo {
            file: origin.to_string(),
            fitted_at: cal.fitted_at.clone(),
            fitted_on: cal.queries.join("; "),
            n_queries: cal.n_queries,
            presence: cal.presence.is_some(),
            counterfeit_thresholds: cal.verdict.is_some(),
            thresholds: ThresholdsInUse::of(v),
        }
    }
}

impl ThresholdsInUse {
    /// The thresholds `v` decides with.
    #[must_use]
    pub fn of(v: &VerdictConfig) -> Self {
        ThresholdsInUse {
            likely_counterfeit: v.counterfeit_threshold,
            max_false_accusation: v.max_false_accusation,
            likely_authentic: v.authentic_threshold,
            max_missed_counterfeit: v.max_missed_counterfeit,
            named_product: v.identity_threshold,
            max_false_authentication: v.max_false_authentication,
            basis: v.thresholds.as_str(),
        }
    }
}

/// In words, for `knockoff stats` and `index`'s log line.
impl std::fmt::Display for ThresholdsInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |p: f32| if p > 1.0 { "never (too few lookups to show the rate)".to_string() } else { format!(">= {p:.2}") };
        write!(
            f,
            "likely_counterfeit at p_counterfeit {} ({:.0}% false accusations), likely_authentic at p_authentic {} ({:.0}% counterfeits passed) and the product's own confidence {} ({:.0}% of uncatalogued products passed): {}",
            at(self.likely_counterfeit),
            self.max_false_accusation * 100.0,
            at(self.likely_authentic),
            self.max_missed_counterfeit * 100.0,
            at(self.named_product),
            self.max_false_authentication * 100.0,
            self.basis
        )
    }
}

/// The calibration a lookup on `catalog` would use, described, with the
/// thresholds it gives at the default rates.
#[must_use]
pub fn describe(catalog: &Catalog, model_dir: &Path) -> Option<CalibrationInfo> {
    verdict_config_described(catalog, model_dir, None).1
}

/// Whether the catalog holds a calibration of its own fitted for its model
/// and its current projection (a refit killed between writing the
/// projection and the calibration leaves one that is not).
#[must_use]
pub fn has_own(catalog: &Catalog) -> bool {
    let projection = catalog.projection().map(|p| p.info.id.clone());
    Calibration::stored(catalog).is_some_and(|(c, _)| c.model == catalog.model() && c.projection == projection)
}

/// The catalog's calibration matching its model and projection, else the model's shipped one.
fn matching(catalog: &Catalog, model_dir: &Path) -> Option<(Calibration, String)> {
    let projection = catalog.projection().map(|p| p.info.id.clone());
    let path = model_dir.join(CALIBRATION_FILE);
    let shipped = Calibration::load(&path).map(|c| (c, path.display().to_string()));
    Calibration::first_matching(Calibration::stored(catalog).into_iter().chain(shipped), catalog.model(), projection.as_deref())
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
    if let Some((cal, origin)) = &found {
        tracing::info!("confidence calibration from {origin}");
        v.apply(cal);
    }
    let info = found.map(|(c, p)| CalibrationInfo::new(&c, &p, &v));
    (v, info)
}

impl VerdictConfig {
    /// Takes a fitted calibration: mapping, presence, floor and the thresholds
    /// for `self.max_false_accusation`, `self.max_missed_counterfeit` and
    /// `self.max_false_authentication` (the authentic and named-product ones,
    /// and all when fitted on synthetic views, only raised; a
    /// rate stricter than every fitted level gets [`NEVER`], not the nearest level).
    pub fn apply(&mut self, cal: &Calibration) {
        self.calibration = Some(cal.mapping.clone());
        self.presence.clone_from(&cal.presence);
        self.floor = self.floor.min(1.0 / (cal.n_queries as f32 + 2.0)).max(1e-4);
        if let Some(t) = &cal.verdict {
            self.thresholds = if t.on_views { super::ThresholdBasis::StricterOnViews } else { super::ThresholdBasis::Fitted };
            let at = |table: &[RiskThreshold], rate: f32| for_risk(table, f64::from(rate)).map_or(NEVER, |r| r.threshold) as f32;
            let fitted = at(&t.counterfeit, self.max_false_accusation);
            self.counterfeit_threshold = if t.on_views { fitted.max(self.counterfeit_threshold) } else { fitted };
            self.authentic_threshold = at(&t.authentic, self.max_missed_counterfeit).max(self.authentic_threshold);
        }
        // Only ever raised: "likely" never means less than "more probable than not".
        if let Some(t) = &cal.identity {
            let fitted = for_risk(&t.levels, f64::from(self.max_false_authentication)).map_or(NEVER, |r| r.threshold) as f32;
            self.identity_threshold = fitted.max(self.identity_threshold);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A calibration fitted on 100 lookups, with no thresholds.
    fn fitted_on_100() -> Calibration {
        Calibration {
            mapping: Mapping::Logistic { w_sim: 10.0, w_margin: 0.0, bias: -5.0 },
            model: "m".into(),
            fitted_at: String::new(),
            n_queries: 100,
            n_correct: 50,
            heldout_ece: std::collections::BTreeMap::new(),
            queries: Vec::new(),
            projection: None,
            verdict: None,
            presence: None,
            identity: None,
        }
    }

    #[test]
    fn the_named_product_threshold_is_only_ever_raised_and_survives_the_file() {
        let levels = |t: f64| vec![RiskThreshold { max_rate: 0.01, threshold: t, errors: 0, error_ucb: 0.01, hits: 0 }];
        let cal = |t: f64| Calibration {
            identity: Some(IdentityThresholds { levels: levels(t), n_nones: 100, on_views: false }),
            ..fitted_on_100()
        };
        let applied = |c: &Calibration, rate: f32| {
            let mut v = VerdictConfig { max_false_authentication: rate, ..VerdictConfig::default() };
            v.apply(c);
            v.identity_threshold
        };
        assert!((applied(&cal(0.9), 0.01) - 0.9).abs() < 1e-6);
        // Never under "more probable than not".
        assert!((applied(&cal(0.3), 0.01) - 0.5).abs() < 1e-6);
        // A rate stricter than every fitted level: never.
        assert!((f64::from(applied(&cal(0.9), 0.005)) - NEVER).abs() < 1e-6);
        let json = serde_json::to_string(&cal(0.9)).unwrap();
        assert_eq!(serde_json::from_str::<Calibration>(&json).unwrap(), cal(0.9));
        // A file from before the threshold reads, with the default in force.
        let old = Calibration { identity: None, ..cal(0.9) };
        let text = serde_json::to_string(&old).unwrap();
        assert!(!text.contains("identity"), "{text}");
        assert!((applied(&serde_json::from_str(&text).unwrap(), 0.01) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn thresholds_fitted_on_synthetic_views_only_ever_make_a_verdict_more_cautious() {
        let table = |t: f64| vec![RiskThreshold { max_rate: 0.02, threshold: t, errors: 0, error_ucb: 0.01, hits: 0 }];
        let missed = |t: f64| vec![RiskThreshold { max_rate: 0.1, threshold: t, errors: 0, error_ucb: 0.05, hits: 0 }];
        let cal = |counterfeit: f64, authentic: f64, on_views: bool| Calibration {
            verdict: Some(VerdictThresholds {
                counterfeit: table(counterfeit),
                authentic: missed(authentic),
                n_authentic: 90,
                n_counterfeit: 10,
                on_views,
            }),
            ..fitted_on_100()
        };
        let applied = |c: &Calibration| {
            let mut v = VerdictConfig::default();
            v.apply(c);
            (v.counterfeit_threshold, v.authentic_threshold, v.thresholds)
        };
        let (lax_c, lax_a) = (0.4, 0.3);
        // Held-out photos: the fitted thresholds, lower than the defaults or not (the authentic one is never lowered).
        assert_eq!(applied(&cal(lax_c, lax_a, false)), (0.4, 0.5, super::super::ThresholdBasis::Fitted));
        // Synthetic views: never below the defaults (0.95 / 0.5), raised when they need more.
        assert_eq!(applied(&cal(lax_c, lax_a, true)), (0.95, 0.5, super::super::ThresholdBasis::StricterOnViews));
        assert_eq!(applied(&cal(1.01, 0.94, true)), (1.01, 0.94, super::super::ThresholdBasis::StricterOnViews));
        // A rate stricter than every fitted level (here 0.02 / 0.1): no threshold keeps it, so never.
        let strict = |c: &Calibration| {
            let mut v = VerdictConfig { max_false_accusation: 0.001, max_missed_counterfeit: 0.05, ..VerdictConfig::default() };
            v.apply(c);
            (v.counterfeit_threshold, v.authentic_threshold)
        };
        assert_eq!(strict(&cal(lax_c, lax_a, false)), (NEVER as f32, NEVER as f32));
        // The flag survives the file (and an older file without it reads as held-out thresholds).
        let json = serde_json::to_string(&cal(0.4, 0.3, true)).unwrap();
        assert!(serde_json::from_str::<Calibration>(&json).unwrap().verdict.unwrap().on_views);
        let old = json.replace(",\"on_views\":true", "");
        assert!(!serde_json::from_str::<Calibration>(&old).unwrap().verdict.unwrap().on_views, "{old}");
    }
}
