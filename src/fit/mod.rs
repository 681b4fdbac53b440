//! Everything knockoff learns from labelled lookups, in one place: the
//! confidence calibration (logistic or isotonic, chosen by held-out ECE), the
//! verdict thresholds (by expected cost), the projection's cross-validation,
//! and the two use cases that fit and save them, [`tune`] (from the catalog's
//! own photos) and [`calibrate`] (from labelled query photos). Each returns a
//! typed report; nothing here prints.

mod cv;
mod selfcal;
pub mod views;

pub use cv::{cross_validate_projection, ProjectionCv};
pub use selfcal::{self_calibrate, Evidence, SelfCalOptions, SelfCalReport, Skipped};

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::files::CALIBRATION_FILE;
use crate::catalog::{Catalog, CatalogError, FitOptions, Label, ProjectionInfo};
use crate::embed::Embedder;
use crate::eval::metrics::ece;
use crate::eval::{evaluate, read_queries, EvalOptions, Query};
use crate::ingest::IngestError;
use crate::search::calibration::{fit_isotonic, fit_logistic, CalibrationSample};
use crate::search::calibration::{for_risk, RiskThreshold, NEVER};
use crate::search::{assess, Calibration, Candidate, Mapping, VerdictConfig, VerdictThresholds};

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

/// The false-accusation rates a counterfeit threshold is fitted for (an
/// operator's `max_false_accusation` picks the largest one not above it).
pub const RISK_LEVELS: [f64; 6] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2];

/// Held-out lookups the verdict thresholds are chosen on: `positives`
/// (the truth's product is in the gallery) and, optionally, `nones` (the
/// same kind of lookups with the truth's product removed: a photo of a
/// product the catalog does not hold), with the share of uncatalogued
/// products assumed among authentic listings (`authentic_none_share`: a
/// brand catalogs its own products, so small) and among counterfeit ones
/// (`counterfeit_none_share`: most fakes a marketplace meets are not in the
/// brand's catalog, so large).
pub struct RiskSample<'a, K> {
    pub positives: &'a [RankedLookup<K>],
    pub nones: &'a [RankedLookup<K>],
    pub authentic_none_share: f64,
    pub counterfeit_none_share: f64,
}

impl<'a, K> RiskSample<'a, K> {
    /// Lookups of catalogued products only (labelled outside photos).
    #[must_use]
    pub fn positives(positives: &'a [RankedLookup<K>]) -> Self {
        RiskSample { positives, nones: &[], authentic_none_share: 0.0, counterfeit_none_share: 0.0 }
    }
}

/// Chooses the verdict thresholds for each rate in [`RISK_LEVELS`] (see
/// [`VerdictThresholds`]) on held-out lookups (truth product and ranked
/// candidates), scoring each by [`assess`], the lookup path's own function:
/// risk control in the sense of conformal / "learn then test" calibration.
/// The bounded rate is the mixture the queries are assumed to be, e.g. for
/// false accusations `(1 − share) · rate on positives + share · rate on
/// nones` with the authentic share, each part bounded at 97.5 % (so the sum
/// holds with 95 %). A threshold above 1
/// means no threshold is safe at that rate (too few lookups to show it).
/// `None` unless the products carry both labels.
#[must_use]
pub fn fit_risk_thresholds<K: Eq + Hash, S: std::hash::BuildHasher>(
    sample: &RiskSample<'_, K>,
    label_of: &HashMap<K, Label, S>,
    cfg: &VerdictConfig,
) -> Option<VerdictThresholds> {
    let has = |l: Label| label_of.values().any(|x| *x == l);
    if !(has(Label::Authentic) && has(Label::Counterfeit)) || sample.positives.is_empty() {
        return None;
    }
    let pos = scored_by_label(sample.positives, label_of, cfg);
    let none = scored_by_label(sample.nones, label_of, cfg);
    let share = |s: f64| if sample.nones.is_empty() { 0.0 } else { s.clamp(0.0, 1.0) };
    let (sa, sc) = (share(sample.authentic_none_share), share(sample.counterfeit_none_share));
    let fake = |s: &Scored| s.iter().map(|p| p.0).collect::<Vec<f32>>();
    let auth = |s: &Scored| s.iter().map(|p| p.1).collect::<Vec<f32>>();
    Some(VerdictThresholds {
        counterfeit: risk_table([(fake(&pos.0), 1.0 - sa), (fake(&none.0), sa)], &fake(&pos.1)),
        authentic: risk_table([(auth(&pos.1), 1.0 - sc), (auth(&none.1), sc)], &auth(&pos.0)),
        n_authentic: pos.0.len() + none.0.len(),
        n_counterfeit: pos.1.len() + none.1.len(),
        on_views: false,
    })
}

/// (`p_counterfeit`, `p_authentic`) per lookup.
type Scored = Vec<(f32, f32)>;

/// Each lookup's (`p_counterfeit`, `p_authentic`) by [`assess`], split by its truth's label: (authentic, counterfeit).
fn scored_by_label<K: Eq + Hash, S: std::hash::BuildHasher>(
    lookups: &[RankedLookup<K>],
    label_of: &HashMap<K, Label, S>,
    cfg: &VerdictConfig,
) -> (Scored, Scored) {
    let (mut authentic, mut counterfeit) = (Vec::new(), Vec::new());
    for l in lookups {
        let Some(truth) = label_of.get(&l.truth) else { continue };
        let cands: Vec<Candidate<'_>> = l
            .top
            .iter()
            .filter_map(|(key, sim)| Some(Candidate { product_id: "", label: *label_of.get(key)?, similarity: *sim }))
            .collect();
        let p = assess(&cands, cfg).probabilities;
        match truth {
            Label::Authentic => authentic.push((p.p_counterfeit, p.p_authentic)),
            Label::Counterfeit => counterfeit.push((p.p_counterfeit, p.p_authentic)),
        }
    }
    (authentic, counterfeit)
}

/// For each rate in [`RISK_LEVELS`]: the lowest threshold on a score whose
/// rate of `wrong` lookups at or above it — a mixture of groups, each
/// `(scores, weight)` — stays under the rate with 95 % confidence, and how
/// many `right` ones reach it.
fn risk_table<const G: usize>(wrong: [(Vec<f32>, f64); G], right: &[f32]) -> Vec<RiskThreshold> {
    let groups: Vec<(Vec<f32>, f64)> = wrong.into_iter().filter(|(v, w)| *w > 0.0 && !v.is_empty()).collect();
    let delta = 0.05 / groups.len().max(1) as f64;
    let at_or_above = |v: &[f32], t: f64| v.iter().filter(|p| f64::from(**p) >= t).count();
    let bound = |t: f64| groups.iter().map(|(v, w)| w * clopper_pearson_upper(at_or_above(v, t), v.len(), delta)).sum::<f64>();
    // Candidate thresholds, strictest first: never, then just above each wrong score (f32 compared in f64), then 0.
    let mut cands: Vec<f64> = groups.iter().flat_map(|(v, _)| v.iter().map(|p| f64::from(*p) + 1e-7)).collect();
    cands.sort_by(|a, b| b.total_cmp(a));
    cands.dedup();
    let cands: Vec<f64> = std::iter::once(NEVER).chain(cands).chain(std::iter::once(0.0)).collect();
    // Bounds grow as the threshold falls: computed until past the loosest rate.
    let loosest = RISK_LEVELS.iter().copied().fold(0.0, f64::max);
    let mut bounds = Vec::new();
    for t in &cands {
        bounds.push(bound(*t));
        if bounds.last().is_some_and(|b| *b > loosest) {
            break;
        }
    }
    RISK_LEVELS
        .iter()
        .map(|alpha| {
            // The lowest candidate before the first one whose bound exceeds alpha.
            let ok = bounds.iter().take_while(|b| **b <= *alpha).count();
            let threshold = if ok == 0 { NEVER } else { cands[ok - 1] };
            RiskThreshold {
                max_rate: *alpha,
                threshold,
                errors: groups.iter().map(|(v, _)| at_or_above(v, threshold)).sum(),
                error_ucb: bound(threshold),
                hits: right.iter().filter(|p| f64::from(**p) >= threshold).count(),
            }
        })
        .collect()
}

/// One-sided upper `1 − delta` confidence bound on a rate with `k` events in
/// `n` trials (Clopper–Pearson, by bisection on the binomial CDF); 1 when `n = 0`.
#[must_use]
pub fn clopper_pearson_upper(k: usize, n: usize, delta: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    // P(X <= k | n, p), in log space.
    let cdf = |p: f64| -> f64 {
        let (lp, lq) = (p.ln(), (1.0 - p).ln());
        let mut log_binom = 0.0f64; // ln C(n, 0)
        let mut total = 0.0f64;
        for i in 0..=k {
            if i > 0 {
                log_binom += ((n - i + 1) as f64).ln() - (i as f64).ln();
            }
            total += (log_binom + i as f64 * lp + (n - i) as f64 * lq).exp();
        }
        total
    };
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

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
    };
    let mut cfg = VerdictConfig::default();
    cfg.apply(&cal);
    cal.verdict = fit_verdict(&cfg);
    save_calibration(catalog, &cal, out)?;
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
                if let Some(p) = catalog.records().product(id)? {
                    label_of.insert(id.clone(), p.label);
                }
            }
        }
    }
    fit_and_save_calibration(
        catalog,
        &report.samples,
        |cfg| fit_risk_thresholds(&RiskSample::positives(&report.lookups), &label_of, cfg),
        sources,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Authentic lookups (truth 1) where the counterfeit look-alike (2) often
    /// ranks close or first: a naive `p_counterfeit >= 0.5` rule accuses
    /// about a tenth of them.
    fn lookalike_lookups(n: usize, seed: u64) -> Vec<RankedLookup<i64>> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f32 / 10_000.0
        };
        (0..n)
            .map(|_| {
                let (a, f) = (0.7 + 0.25 * next(), 0.6 + 0.3 * next());
                let mut top = vec![(1, a), (2, f), (3, 0.5 * next())];
                top.sort_by(|x, y| y.1.total_cmp(&x.1));
                RankedLookup { truth: 1, top }
            })
            .collect()
    }

    #[test]
    fn the_counterfeit_threshold_bounds_false_accusations_where_a_naive_one_does_not() {
        let labels: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Counterfeit), (3, Label::Authentic)].into();
        let cfg = VerdictConfig::default();
        let rate = |lookups: &[RankedLookup<i64>], threshold: f64| {
            let accused = lookups
                .iter()
                .filter(|l| {
                    let c: Vec<Candidate<'_>> =
                        l.top.iter().map(|(k, s)| Candidate { product_id: "", label: labels[k], similarity: *s }).collect();
                    f64::from(assess(&c, &cfg).probabilities.p_counterfeit) >= threshold
                })
                .count();
            accused as f64 / lookups.len() as f64
        };
        let fit_on = lookalike_lookups(3000, 7);
        let fresh = lookalike_lookups(3000, 99);
        assert!(rate(&fresh, 0.5) > 0.05, "the case must defeat the naive threshold: {}", rate(&fresh, 0.5));
        let t = fit_risk_thresholds(&RiskSample::positives(&fit_on), &labels, &cfg).unwrap();
        assert_eq!(t.n_authentic, 3000);
        let at = for_risk(&t.counterfeit, 0.02).unwrap();
        assert!((at.max_rate - 0.02).abs() < 1e-12);
        // The configured rate is an f32 (0.02 is 0.0199999995 as f64): it must still pick the 2 % level.
        assert_eq!(for_risk(&t.counterfeit, f64::from(0.02f32)), Some(at));
        assert!(at.error_ucb <= 0.02 && at.threshold > 0.5, "{at:?}");
        assert!(rate(&fresh, at.threshold) <= 0.02, "held out: {}", rate(&fresh, at.threshold));
        // Stricter rates need higher thresholds.
        assert!(t.counterfeit.windows(2).all(|w| w[0].threshold >= w[1].threshold), "{t:?}");
        // Too few authentic lookups to show a 0.5% rate: never accuse.
        let few = fit_risk_thresholds(&RiskSample::positives(&fit_on[..100]), &labels, &cfg).unwrap();
        assert!(for_risk(&few.counterfeit, 0.005).unwrap().threshold > 1.0);
        // A catalog with one label has no verdict to fit.
        let one: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Authentic), (3, Label::Authentic)].into();
        assert!(fit_risk_thresholds(&RiskSample::positives(&fit_on), &one, &cfg).is_none());
    }

    #[test]
    fn uncatalogued_cases_count_by_their_assumed_share_and_the_mixed_bound_holds() {
        let labels: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Counterfeit), (3, Label::Authentic)].into();
        let cfg = VerdictConfig::default();
        let positives = lookalike_lookups(3000, 7);
        // The same photos with their own product missing: the counterfeit look-alike now ranks first.
        let nones: Vec<RankedLookup<i64>> =
            positives.iter().map(|l| RankedLookup { truth: 1, top: l.top.iter().filter(|t| t.0 != 1).copied().collect() }).collect();
        let at = |share: f64| {
            let sample = RiskSample { positives: &positives, nones: &nones, authentic_none_share: share, counterfeit_none_share: share };
            for_risk(&fit_risk_thresholds(&sample, &labels, &cfg).unwrap().counterfeit, 0.02).unwrap().clone()
        };
        let (rare, even) = (at(0.05), at(0.5));
        // Rare uncatalogued listings weigh less: a lower threshold (more counterfeits caught) at the same bound.
        assert!(rare.threshold < even.threshold, "{rare:?} {even:?}");
        for t in [&rare, &even] {
            assert!(t.error_ucb <= 0.02, "{t:?}");
        }
        // The bound is the weighted sum of the parts' bounds at 97.5 %.
        let count = |v: &[RankedLookup<i64>]| {
            v.iter()
                .filter(|l| {
                    let c: Vec<Candidate<'_>> =
                        l.top.iter().map(|(k, s)| Candidate { product_id: "", label: labels[k], similarity: *s }).collect();
                    f64::from(assess(&c, &cfg).probabilities.p_counterfeit) >= rare.threshold
                })
                .count()
        };
        let want = 0.95 * clopper_pearson_upper(count(&positives), 3000, 0.025) + 0.05 * clopper_pearson_upper(count(&nones), 3000, 0.025);
        assert!((rare.error_ucb - want).abs() < 1e-9, "{} vs {want}", rare.error_ucb);
    }

    #[test]
    fn clopper_pearson_matches_known_values() {
        // k = 0: 1 - delta^(1/n).
        for n in [10usize, 149, 1000] {
            let exact = 1.0 - 0.05f64.powf(1.0 / n as f64);
            assert!((clopper_pearson_upper(0, n, 0.05) - exact).abs() < 1e-9, "{n}");
        }
        // k = 5 of 100: 0.1023 (one-sided 95 %).
        assert!((clopper_pearson_upper(5, 100, 0.05) - 0.1023).abs() < 5e-4, "{}", clopper_pearson_upper(5, 100, 0.05));
        assert_eq!(clopper_pearson_upper(3, 0, 0.05), 1.0);
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
