//! Evaluation harness behind `knockoff eval`: looks every query up through
//! the same path as the HTTP service (decode + embed one photo, grouped
//! product search, confidence, verdict) and measures retrieval quality,
//! calibration, verdicts and latency.

pub mod metrics;
pub mod report;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::catalog::{Catalog, Filter, Label};
use crate::embed::Embedder;
use crate::ingest::{fetch, FetchOptions};
use crate::search::{decide, search_products, SearchRequest, VerdictConfig, VerdictKind};
use metrics::*;

/// One query photo; `product_id: None` marks a distractor (right answer: `no_match`).
#[derive(Debug, Clone)]
pub struct Query {
    pub image: String,
    pub product_id: Option<String>,
    pub category: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub k: usize,
    pub verdict: VerdictConfig,
    pub concurrency: usize,
    pub product_score: crate::search::ProductScore,
}

/// What one query produced.
#[derive(Debug, Clone)]
struct Outcome {
    truth: Option<String>,
    truth_label: Option<Label>,
    group: String,
    /// Product ids, best first (all products).
    ranked: Vec<(String, f32)>,
    query_image: String,
    top_image: Option<(i64, f32)>,
    image_relevant: Vec<bool>,
    total_relevant_images: usize,
    confidence: f32,
    top_margin: f32,
    verdict: VerdictKind,
    embed_ms: f64,
    search_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub n_queries: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub map: f64,
    pub mrr: f64,
    pub auc: Option<f64>,
    pub tpr_at_fpr_1pct: Option<f64>,
    pub ece: f64,
    pub verdict_accuracy: Option<f64>,
    pub distractor_false_match_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageLatency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub n_catalog_images: i64,
    pub n_failed_queries: usize,
    #[serde(flatten)]
    pub overall: Metrics,
    /// The same metrics per top-level category (`Packages`, `Fruit`, …).
    pub by_group: std::collections::BTreeMap<String, Metrics>,
    /// Rows: truth label → predicted verdict → count.
    pub verdict_confusion: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>,
    pub latency: std::collections::BTreeMap<String, StageLatency>,
    /// (true product, predicted top-1, count), most frequent first.
    pub most_confused: Vec<(String, String, usize)>,
    pub failures: Vec<String>,
    /// (top similarity, margin to the next product, top-1 correct) per query, for calibration.
    #[serde(skip)]
    pub samples: Vec<(f32, f32, bool)>,
    /// Per labelled query: its product and the best 5 products (id, similarity), for fitting the verdict.
    #[serde(skip)]
    pub lookups: Vec<(String, Vec<(String, f32)>)>,
    /// (confidence, correct) per query, for the reliability diagram.
    #[serde(skip)]
    pub reliability: Vec<(f32, bool)>,
    /// Similarities of same-product and different-product pairs (ROC, histograms).
    #[serde(skip)]
    pub pair_scores: (Vec<f32>, Vec<f32>),
    /// Wrong top-1 answers, most confident first.
    #[serde(skip)]
    pub mistakes: Vec<Mistake>,
}

#[derive(Debug, Clone)]
pub struct Mistake {
    pub query_image: String,
    pub truth: Option<String>,
    pub predicted: String,
    pub predicted_image: i64,
    pub similarity: f32,
    pub confidence: f32,
}

impl Outcome {
    /// Whether the top-ranked product is the query's product (never for distractors).
    fn top1_correct(&self) -> bool {
        self.truth.is_some() && self.ranked.first().map(|r| &r.0) == self.truth.as_ref()
    }
}

/// Scores of (query, its product) pairs and of (query, another product) pairs.
fn pair_scores<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> (Vec<f32>, Vec<f32>) {
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for o in outcomes.into_iter().filter(|o| o.truth.is_some()) {
        for (p, s) in &o.ranked {
            if Some(p) == o.truth.as_ref() {
                pos.push(*s);
            } else {
                neg.push(*s);
            }
        }
    }
    (pos, neg)
}

fn group_of(category: Option<&str>) -> String {
    category.and_then(|c| c.split('/').next()).filter(|c| !c.is_empty()).unwrap_or("other").to_string()
}

/// Runs every query and computes the report.
pub fn evaluate(
    catalog: &Catalog,
    embedder: &Embedder,
    queries: &[Query],
    opts: &EvalOptions,
) -> Result<EvalReport, crate::catalog::CatalogError> {
    let stats = catalog.stats()?;
    let n_products = stats.counts.products.max(1) as usize;
    let n_images = stats.counts.images.max(1) as usize;
    let has_both_labels = stats.counts.per_label.len() >= 2;
    // Images per product, for image-level AP.
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let fetch_opts = FetchOptions { allow_private: true, ..Default::default() };
    let product_sizes: HashMap<String, usize> = catalog.image_counts()?;
    std::thread::scope(|s| {
        for _ in 0..opts.concurrency.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(q) = queries.get(i) else { break };
                let t0 = Instant::now();
                let v = match fetch(&q.image, &fetch_opts)
                    .map_err(|e| e.to_string())
                    .and_then(|b| embedder.embed_bytes(&b, &q.image).map_err(|e| e.to_string()))
                {
                    Ok(v) => v,
                    Err(e) => {
                        failures.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                        continue;
                    }
                };
                let embed_ms = t0.elapsed().as_secs_f64() * 1e3;
                // Timed: the service's own search (k products). Untimed: the full
                // product ranking that recall, MRR and AUC need.
                let t1 = Instant::now();
                let top =
                    search_products(catalog, &v, &SearchRequest { k: opts.k, product_score: opts.product_score, ..Default::default() });
                let search_ms = t1.elapsed().as_secs_f64() * 1e3;
                let all =
                    search_products(catalog, &v, &SearchRequest { k: n_products, product_score: opts.product_score, ..Default::default() });
                let verdict = decide(&top, &opts.verdict).verdict;
                let images = catalog.search_images(&v, n_images.min(2000), Some(n_images.min(2000).max(64)), &Filter::default());
                let image_relevant: Vec<bool> = images.iter().map(|(_, _, p)| Some(&p.product_id) == q.product_id.as_ref()).collect();
                let truth_label =
                    q.product_id.as_ref().and_then(|t| all.iter().find(|m| &m.product.product_id == t)).map(|m| m.product.label);
                let o = Outcome {
                    truth: q.product_id.clone(),
                    truth_label,
                    group: group_of(q.category.as_deref()),
                    ranked: all.iter().map(|m| (m.product.product_id.clone(), m.score)).collect(),
                    query_image: q.image.clone(),
                    top_image: all.first().map(|m| (m.best.image_id, m.best.similarity)),
                    image_relevant,
                    total_relevant_images: q.product_id.as_ref().and_then(|t| product_sizes.get(t)).copied().unwrap_or(0),
                    confidence: crate::search::confidences(&top, &opts.verdict).first().copied().unwrap_or(0.0),
                    top_margin: match (all.first(), all.get(1)) {
                        (Some(a), Some(b)) => a.best.similarity - b.best.similarity,
                        (Some(a), None) => a.best.similarity,
                        _ => 0.0,
                    },
                    verdict,
                    embed_ms,
                    search_ms,
                };
                outcomes.lock().unwrap_or_else(|p| p.into_inner()).push((i, o));
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());

    let overall = compute(&outcomes, has_both_labels);
    let mut by_group = std::collections::BTreeMap::new();
    let mut groups: Vec<String> = outcomes.iter().map(|o| o.group.clone()).collect();
    groups.sort();
    groups.dedup();
    for g in groups {
        let sub: Vec<Outcome> = outcomes.iter().filter(|o| o.group == g).cloned().collect();
        by_group.insert(g, compute(&sub, has_both_labels));
    }
    let mut verdict_confusion: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>> = Default::default();
    for o in &outcomes {
        let row = match (&o.truth, o.truth_label) {
            (None, _) => "distractor".to_string(),
            (Some(_), Some(l)) => l.as_str().to_string(),
            (Some(_), None) => "unknown-product".to_string(),
        };
        let col = serde_json::to_value(o.verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        *verdict_confusion.entry(row).or_default().entry(col).or_default() += 1;
    }
    let lat = |f: fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = outcomes.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        StageLatency { p50_ms: percentile(&v, 0.5), p95_ms: percentile(&v, 0.95), p99_ms: percentile(&v, 0.99) }
    };
    let mut latency = std::collections::BTreeMap::new();
    latency.insert("embed".to_string(), lat(|o| o.embed_ms));
    latency.insert("search".to_string(), lat(|o| o.search_ms));
    let mut confused: HashMap<(String, String), usize> = HashMap::new();
    for o in &outcomes {
        if let (Some(t), Some((p, _))) = (&o.truth, o.ranked.first()) {
            if t != p {
                *confused.entry((t.clone(), p.clone())).or_default() += 1;
            }
        }
    }
    let mut most_confused: Vec<(String, String, usize)> = confused.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    most_confused.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1)));
    most_confused.truncate(10);
    let mut mistakes: Vec<Mistake> = outcomes
        .iter()
        .filter(|o| !o.top1_correct())
        .filter_map(|o| {
            let (pid, _) = o.ranked.first()?;
            let (img, sim) = o.top_image?;
            Some(Mistake {
                query_image: o.query_image.clone(),
                truth: o.truth.clone(),
                predicted: pid.clone(),
                predicted_image: img,
                similarity: sim,
                confidence: o.confidence,
            })
        })
        .collect();
    mistakes.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then_with(|| b.similarity.total_cmp(&a.similarity)));
    mistakes.truncate(24);
    Ok(EvalReport {
        reliability: outcomes.iter().map(|o| (o.confidence, o.top1_correct())).collect(),
        pair_scores: pair_scores(&outcomes),
        mistakes,
        model: catalog.model().to_string(),
        n_catalog_images: stats.counts.images,
        n_failed_queries: failures.len(),
        overall,
        by_group,
        verdict_confusion,
        latency,
        most_confused,
        failures: failures.into_iter().take(50).collect(),
        samples: outcomes.iter().map(|o| (o.top_image.map(|t| t.1).unwrap_or(0.0), o.top_margin, o.top1_correct())).collect(),
        lookups: outcomes.iter().filter_map(|o| Some((o.truth.clone()?, o.ranked.iter().take(5).cloned().collect()))).collect(),
    })
}

fn compute(outcomes: &[Outcome], has_both_labels: bool) -> Metrics {
    let with_truth: Vec<&Outcome> = outcomes.iter().filter(|o| o.truth.is_some()).collect();
    let ranks: Vec<Option<usize>> = with_truth.iter().map(|o| o.ranked.iter().position(|(p, _)| Some(p) == o.truth.as_ref())).collect();
    let aps: Vec<f64> = with_truth.iter().map(|o| average_precision(&o.image_relevant, o.total_relevant_images)).collect();
    let (pos, neg) = pair_scores(outcomes);
    let conf: Vec<f32> = outcomes.iter().map(|o| o.confidence).collect();
    let correct: Vec<bool> = outcomes.iter().map(Outcome::top1_correct).collect();
    let expected = |o: &Outcome| match (&o.truth, o.truth_label) {
        (None, _) => Some(VerdictKind::NoMatch),
        (Some(_), Some(Label::Authentic)) => Some(VerdictKind::LikelyAuthentic),
        (Some(_), Some(Label::Counterfeit)) => Some(VerdictKind::LikelyCounterfeit),
        (Some(_), None) => None,
    };
    let verdict_accuracy = if has_both_labels {
        let judged: Vec<bool> = outcomes.iter().filter_map(|o| expected(o).map(|e| e == o.verdict)).collect();
        (!judged.is_empty()).then(|| judged.iter().filter(|b| **b).count() as f64 / judged.len() as f64)
    } else {
        None
    };
    let distractors: Vec<&Outcome> = outcomes.iter().filter(|o| o.truth.is_none()).collect();
    let distractor_false_match_rate = (!distractors.is_empty())
        .then(|| distractors.iter().filter(|o| o.verdict != VerdictKind::NoMatch).count() as f64 / distractors.len() as f64);
    Metrics {
        n_queries: outcomes.len(),
        recall_at_1: recall_at_k(&ranks, 1),
        recall_at_5: recall_at_k(&ranks, 5),
        map: if aps.is_empty() { 0.0 } else { aps.iter().sum::<f64>() / aps.len() as f64 },
        mrr: mrr(&ranks),
        auc: roc_auc(&pos, &neg),
        tpr_at_fpr_1pct: tpr_at_fpr(&pos, &neg, 0.01),
        ece: ece(&conf, &correct, 10),
        verdict_accuracy,
        distractor_false_match_rate,
    }
}

/// Fits both candidate mappings, compares them by 2-fold held-out ECE, and
/// refits the better one on all samples (isotonic only when it is better by
/// more than one bootstrap standard error: the simpler mapping wins ties).
pub fn fit_calibration(samples: &[(f32, f32, bool)]) -> (crate::search::Mapping, std::collections::BTreeMap<String, f64>) {
    use crate::search::calibration::{fit_isotonic, fit_logistic};
    let fit = |method: &str, idx: &[usize]| -> crate::search::Mapping {
        let y: Vec<bool> = idx.iter().map(|i| samples[*i].2).collect();
        if method == "logistic" {
            fit_logistic(&idx.iter().map(|i| (samples[*i].0, samples[*i].1)).collect::<Vec<_>>(), &y)
        } else {
            fit_isotonic(&idx.iter().map(|i| samples[*i].0).collect::<Vec<_>>(), &y)
        }
    };
    let even: Vec<usize> = (0..samples.len()).step_by(2).collect();
    let odd: Vec<usize> = (1..samples.len()).step_by(2).collect();
    let mut heldout = std::collections::BTreeMap::new();
    let mut predictions: Vec<Vec<f32>> = Vec::new();
    let mut ok = Vec::new();
    for method in ["logistic", "isotonic"] {
        let mut conf = Vec::new();
        ok.clear();
        for (train, test) in [(&even, &odd), (&odd, &even)] {
            let m = fit(method, train);
            for i in test.iter() {
                conf.push(m.apply(samples[*i].0, samples[*i].1));
                ok.push(samples[*i].2);
            }
        }
        heldout.insert(method.to_string(), ece(&conf, &ok, 10));
        predictions.push(conf);
    }
    // One-standard-error rule: the isotonic step function (many more degrees
    // of freedom) wins only if its held-out ECE is lower by more than the
    // bootstrap standard error of the difference; otherwise the logistic.
    let se = bootstrap_se_of_ece_difference(&predictions[0], &predictions[1], &ok, 200);
    heldout.insert("bootstrap_se_of_difference".to_string(), se);
    let best = if heldout["isotonic"] + se < heldout["logistic"] { "isotonic" } else { "logistic" };
    let all: Vec<usize> = (0..samples.len()).collect();
    (fit(best, &all), heldout)
}

/// What cross-validating a projection on the catalog's own photos found.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionCv {
    pub folds: usize,
    /// Photos looked up (those whose product keeps a photo in the other folds).
    pub n_queries: usize,
    /// Top-1 product accuracy without and with the projection (same folds).
    pub top1_raw: f64,
    pub top1_projected: f64,
    /// (top similarity, margin to the next product, top product right) in the
    /// projected space: calibration samples.
    #[serde(skip)]
    pub samples: Vec<(f32, f32, bool)>,
    /// Per lookup: its product, and the best 5 products (label key, similarity) in the projected space.
    #[serde(skip)]
    pub ranked: Vec<(i64, Vec<(i64, f32)>)>,
}

/// K-fold cross-validation of a projection (at most `max_lookups` lookups in
/// all): each fold's photos are looked up
/// (exhaustively, nearest image per product) against the other folds, with a
/// projection fitted on those other folds only, and without one.
pub fn cross_validate_projection(
    labelled: &[(i64, Vec<f32>)],
    model: &str,
    opts: crate::catalog::FitOptions,
    folds: usize,
    max_lookups: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<ProjectionCv, crate::catalog::CatalogError> {
    let folds = folds.max(2);
    crate::catalog::Projection::require_photos(&labelled.iter().map(|(l, _)| *l).collect::<Vec<_>>())?;
    let mut samples = Vec::new();
    let mut ranked = Vec::new();
    let (mut right_raw, mut right_proj, mut n) = (0usize, 0usize, 0usize);
    // Blocked folds: each product's photos (in indexing order) are cut into
    // `folds` contiguous runs. Photos taken one after another are often near
    // duplicates; interleaved folds would let each query find its twin and
    // make both the accuracy and the calibration far too optimistic.
    let mut fold_of = vec![0usize; labelled.len()];
    let mut members: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, (l, _)) in labelled.iter().enumerate() {
        members.entry(*l).or_default().push(i);
    }
    for idx in members.values() {
        for (rank, i) in idx.iter().enumerate() {
            fold_of[*i] = rank * folds / idx.len();
        }
    }
    for f in 0..folds {
        progress(f, folds);
        let (test, train): (Vec<usize>, Vec<usize>) = (0..labelled.len()).partition(|i| fold_of[*i] == f);
        let train_vecs: Vec<&[f32]> = train.iter().map(|i| labelled[*i].1.as_slice()).collect();
        let train_labels: Vec<i64> = train.iter().map(|i| labelled[*i].0).collect();
        let known: std::collections::HashSet<i64> = train_labels.iter().copied().collect();
        let queries: Vec<usize> = test.into_iter().filter(|i| known.contains(&labelled[*i].0)).collect();
        // Large catalogs: an evenly spread subset keeps the exhaustive lookups affordable.
        let cap = (max_lookups / folds).max(1);
        let queries: Vec<usize> = if queries.len() > cap { (0..cap).map(|k| queries[k * queries.len() / cap]).collect() } else { queries };
        if queries.is_empty() {
            continue;
        }
        let p = crate::catalog::Projection::fit(&train_vecs, &train_labels, model, opts)?;
        let gallery_proj: Vec<Vec<f32>> = train_vecs.iter().map(|v| p.apply(v)).collect();
        let gallery_proj: Vec<&[f32]> = gallery_proj.iter().map(|v| v.as_slice()).collect();
        for q in queries {
            let (label, v) = (&labelled[q].0, &labelled[q].1);
            let raw = rank_products(v, &train_vecs, &train_labels);
            let pq = p.apply(v);
            let proj = rank_products(&pq, &gallery_proj, &train_labels);
            n += 1;
            right_raw += (raw[0].0 == *label) as usize;
            right_proj += (proj[0].0 == *label) as usize;
            let second = proj.get(1).map_or(0.0, |r| r.1);
            samples.push((proj[0].1, proj[0].1 - second, proj[0].0 == *label));
            ranked.push((*label, proj.into_iter().take(5).collect()));
        }
    }
    progress(folds, folds);
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Ok(ProjectionCv { folds, n_queries: n, top1_raw: share(right_raw), top1_projected: share(right_proj), samples, ranked })
}

/// Products (label key, similarity of their nearest image), best first; the
/// gallery is never empty here (each query's product has photos in it).
fn rank_products(q: &[f32], gallery: &[&[f32]], labels: &[i64]) -> Vec<(i64, f32)> {
    let mut best: HashMap<i64, f32> = HashMap::new();
    for (g, l) in gallery.iter().zip(labels) {
        let s: f32 = q.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
        let e = best.entry(*l).or_insert(f32::MIN);
        *e = e.max(s);
    }
    let mut ranked: Vec<(i64, f32)> = best.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
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

/// [`fit_verdict_thresholds`] on an evaluation's lookups, products keyed by id.
pub fn fit_verdict_from_lookups(
    lookups: &[(String, Vec<(String, f32)>)],
    label_of: &HashMap<String, Label>,
    mapping: &crate::search::Mapping,
    uncertain_cost: f64,
) -> Option<crate::search::VerdictThresholds> {
    let mut keys: HashMap<String, i64> = HashMap::new();
    let mut key = |id: &String| -> i64 {
        let n = keys.len() as i64;
        *keys.entry(id.clone()).or_insert(n)
    };
    let ranked: Vec<(i64, Vec<(i64, f32)>)> =
        lookups.iter().map(|(truth, top)| (key(truth), top.iter().map(|(id, s)| (key(id), *s)).collect())).collect();
    let labels: HashMap<i64, Label> = keys.iter().filter_map(|(id, k)| Some((*k, *label_of.get(id)?))).collect();
    fit_verdict_thresholds(&ranked, &labels, mapping, uncertain_cost)
}

/// Margins tried when fitting the verdict's `uncertain` band.
pub const VERDICT_MARGINS: [f64; 8] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3];

/// Chooses the verdict margin on labelled lookups (`ranked`: each lookup's
/// product key and its top products) by expected cost: a wrong verdict costs
/// 1, `uncertain` costs `uncertain_cost`, `no_match` on a known product 1.
/// `None` unless the products carry both labels.
pub fn fit_verdict_thresholds(
    ranked: &[(i64, Vec<(i64, f32)>)],
    label_of: &HashMap<i64, Label>,
    mapping: &crate::search::Mapping,
    uncertain_cost: f64,
) -> Option<crate::search::VerdictThresholds> {
    let has = |l: Label| label_of.values().any(|x| *x == l);
    if !(has(Label::Authentic) && has(Label::Counterfeit)) || ranked.is_empty() {
        return None;
    }
    let min_confidence = VerdictConfig::default().min_confidence as f64;
    let lists: Vec<(Label, Vec<crate::search::ProductMatch>)> = ranked
        .iter()
        .filter_map(|(truth, top)| {
            let label = *label_of.get(truth)?;
            let matches = top
                .iter()
                .filter_map(|(key, sim)| {
                    let product = crate::catalog::Product::new(key.to_string(), *label_of.get(key)?);
                    let best = crate::search::ImageHit { image_id: 0, similarity: *sim };
                    Some(crate::search::ProductMatch { product: std::sync::Arc::new(product), score: *sim, best, second: None })
                })
                .collect();
            Some((label, matches))
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
            .map(|(truth, matches)| match (decide(matches, &cfg).verdict, truth) {
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
    Some(crate::search::VerdictThresholds { min_confidence, margin, uncertain_cost, n_queries: lists.len(), cost_by_margin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_margin_is_fitted_by_expected_cost_and_needs_both_labels() {
        // Confidences: 0.6 → 0.58, 0.7 → 0.70, 0.9 → 0.94 (gaps 0.12 and 0.24, off the grid of margins).
        let mapping =
            crate::search::Mapping::Isotonic { xs: vec![0.0, 0.5, 0.6, 0.7, 0.8, 0.9], ys: vec![0.05, 0.52, 0.58, 0.7, 0.83, 0.94] };
        let labels: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Counterfeit)].into();
        // 6 clear lookups (similarities 0.9 vs 0.7) the top product gets right;
        // 4 near-ties (0.7 vs 0.6) it gets wrong: `uncertain` is cheaper there.
        let mut ranked = Vec::new();
        for _ in 0..6 {
            ranked.push((1, vec![(1, 0.9), (2, 0.7)]));
        }
        for _ in 0..4 {
            ranked.push((2, vec![(1, 0.7), (2, 0.6)]));
        }
        let t = fit_verdict_thresholds(&ranked, &labels, &mapping, 0.5).unwrap();
        assert_eq!(t.n_queries, 10);
        let cost = |m: f64| t.cost_by_margin.iter().find(|(x, _)| *x == m).unwrap().1;
        assert!((cost(0.0) - 0.4).abs() < 1e-9, "margin 0: the 4 ties are wrong verdicts");
        assert!((cost(0.15) - 0.2).abs() < 1e-9, "ties uncertain: 4 × 0.5 / 10");
        assert!((cost(0.3) - 0.5).abs() < 1e-9, "too wide: the clear ones become uncertain too");
        assert_eq!(t.margin, 0.2, "lowest cost, the wider of the tied margins: {t:?}");
        assert_eq!(t.min_confidence, 0.5);
        // A catalog with one label has no verdict to fit.
        let one: HashMap<i64, Label> = [(1, Label::Authentic), (2, Label::Authentic)].into();
        assert!(fit_verdict_thresholds(&ranked, &one, &mapping, 0.5).is_none());
    }
}
