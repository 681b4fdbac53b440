//! Evaluation harness behind `knockoff eval`: looks every query up through
//! the service's own path (decode + embed one photo, then
//! [`crate::search::lookup`]) and measures retrieval quality, calibration,
//! verdicts and latency. It only measures: fitting lives in [`crate::fit`].

pub mod copies;
pub mod networks;
pub mod protocol;
pub mod report;
pub mod review_loop;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, Label};
use crate::embed::Embedder;
use crate::ingest::Query;
use crate::metrics::{average_precision, ece, ece_check, mrr, percentile, recall_at_k, roc_auc, tpr_at_fpr, EceCheck};
use crate::search::batch::{look_up_all, BatchOptions, Looked};
use crate::search::{Lookup, VerdictKind};

/// How queries are looked up.
pub type EvalOptions = BatchOptions;

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
    /// The service's answer (k matches, confidences, verdict).
    answer: Lookup,
    embed_ms: f64,
    search_ms: f64,
    /// The copy check, when the queries carry `copy_of`.
    copy: Option<copies::CopyOutcome>,
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
    /// The ECE a perfectly calibrated model would show on these queries, and how unusual `ece` is for one.
    pub ece_check: EceCheck,
    pub verdict_accuracy: Option<f64>,
    pub distractor_false_match_rate: Option<f64>,
    /// Authentic queries called `likely_counterfeit` (null unless the catalog has both labels).
    pub false_accusation_rate: Option<f64>,
    /// Counterfeit queries called `likely_counterfeit` (null unless the catalog has both labels).
    pub catch_rate: Option<f64>,
    /// Labelled queries that got a `likely_*` verdict (null unless the catalog has both labels).
    pub coverage: Option<f64>,
    /// Calibration of `p_counterfeit` against the query's true label (null unless the catalog has both labels).
    pub ece_counterfeit: Option<f64>,
    /// As `ece_check`, for `ece_counterfeit`.
    pub ece_counterfeit_check: Option<EceCheck>,
    /// Mean `p_no_match` of distractor queries (null without distractors).
    pub distractor_p_no_match: Option<f64>,
    #[serde(flatten)]
    pub copies: copies::CopyMetrics,
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
    pub by_group: BTreeMap<String, Metrics>,
    /// Rows: truth label → predicted verdict → count.
    pub verdict_confusion: BTreeMap<String, BTreeMap<String, usize>>,
    pub latency: BTreeMap<String, StageLatency>,
    /// Wrong top-1 answers by (true product, predicted product), most frequent first.
    pub most_confused: Vec<Confusion>,
    pub failures: Vec<String>,
    /// Per query: what the service would answer (`knockoff eval --per-query`).
    #[serde(skip)]
    pub records: Vec<QueryRecord>,
    /// (confidence, correct) per query, for the reliability diagram.
    #[serde(skip)]
    pub reliability: Vec<(f32, bool)>,
    /// (`p_counterfeit`, truly counterfeit) per query of a known product, for the second diagram.
    #[serde(skip)]
    pub counterfeit_reliability: Vec<(f32, bool)>,
    /// Similarities of same-product and different-product pairs (ROC, histograms).
    #[serde(skip)]
    pub pair_scores: (Vec<f32>, Vec<f32>),
    /// Wrong top-1 answers, most confident first.
    #[serde(skip)]
    pub mistakes: Vec<Mistake>,
}

/// How often one product was taken for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub truth: String,
    pub predicted: String,
    pub count: usize,
}

/// One query's answer, exactly as `POST /v1/lookup` gives it (matches,
/// verdict, reason), with the query and its expected product.
#[derive(Debug, Clone, Serialize)]
pub struct QueryRecord {
    pub image: String,
    pub truth: Option<String>,
    #[serde(flatten)]
    pub lookup: Lookup,
    /// The copy check against `copy_of` (when the queries have that column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_check: Option<copies::CopyOutcome>,
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

    /// The confidence the service gives its top match (0 without one).
    fn confidence(&self) -> f32 {
        self.answer.matches.first().map_or(0.0, |m| m.confidence)
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
pub fn evaluate(catalog: &Catalog, embedder: &Embedder, queries: &[Query], opts: &EvalOptions) -> Result<EvalReport, CatalogError> {
    let stats = catalog.stats()?;
    let (outcomes, failures) = outcomes(catalog, embedder, queries, opts)?;
    let has_both_labels = stats.counts.per_label.len() >= 2;
    let copy_threshold = copies::threshold_at_1pct(&outcomes.iter().filter_map(|o| o.copy.as_ref()).collect::<Vec<_>>());
    let overall = compute(&outcomes, has_both_labels, copy_threshold);
    let mut groups: Vec<String> = outcomes.iter().map(|o| o.group.clone()).collect();
    groups.sort();
    groups.dedup();
    let by_group = groups
        .into_iter()
        .map(|g| {
            let sub: Vec<Outcome> = outcomes.iter().filter(|o| o.group == g).cloned().collect();
            (g, compute(&sub, has_both_labels, copy_threshold))
        })
        .collect();
    let lat = |f: fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = outcomes.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        StageLatency { p50_ms: percentile(&v, 0.5), p95_ms: percentile(&v, 0.95), p99_ms: percentile(&v, 0.99) }
    };
    let latency = [("embed".to_string(), lat(|o| o.embed_ms)), ("search".to_string(), lat(|o| o.search_ms))].into();
    Ok(EvalReport {
        reliability: outcomes.iter().map(|o| (o.confidence(), o.top1_correct())).collect(),
        counterfeit_reliability: {
            let (p, y) = counterfeit_reliability(&outcomes);
            p.into_iter().zip(y).collect()
        },
        pair_scores: pair_scores(&outcomes),
        mistakes: mistakes(&outcomes),
        model: catalog.model().to_string(),
        n_catalog_images: stats.counts.images,
        n_failed_queries: failures.len(),
        overall,
        by_group,
        verdict_confusion: verdict_confusion(&outcomes),
        latency,
        most_confused: most_confused(&outcomes),
        failures: failures.into_iter().take(50).collect(),
        records: outcomes
            .iter()
            .map(|o| QueryRecord {
                image: o.query_image.clone(),
                truth: o.truth.clone(),
                lookup: o.answer.clone(),
                copy_check: o.copy.clone(),
            })
            .collect(),
    })
}

/// Looks every query up (see [`look_up_all`]); outcomes in query order, and failures.
fn outcomes(
    catalog: &Catalog,
    embedder: &Embedder,
    queries: &[Query],
    opts: &EvalOptions,
) -> Result<(Vec<Outcome>, Vec<String>), CatalogError> {
    let photos: Vec<&str> = queries.iter().map(|q| q.image.as_str()).collect();
    let sizes = catalog.records().image_counts()?;
    let copy_protocol = queries.iter().any(|q| q.copy_of.is_some());
    let (mut outcomes, mut failures) = (Vec::new(), Vec::new());
    for (q, looked) in queries.iter().zip(look_up_all(catalog, embedder, &photos, opts)?) {
        match looked {
            Ok(l) => outcomes.push(Outcome::new(catalog, q, l, &sizes, copy_protocol)),
            Err(e) => failures.push(e),
        }
    }
    Ok((outcomes, failures))
}

impl Outcome {
    fn new(catalog: &Catalog, q: &Query, l: Looked, sizes: &HashMap<String, usize>, copy_protocol: bool) -> Outcome {
        let truth = q.product_id.as_ref();
        Outcome {
            truth: q.product_id.clone(),
            truth_label: truth.and_then(|t| l.label_of(t)),
            group: group_of(q.category.as_deref()),
            ranked: l.products.iter().map(|m| (m.product.product_id.clone(), m.score)).collect(),
            query_image: q.image.clone(),
            top_image: l.top_image(),
            image_relevant: l.image_products.iter().map(|p| Some(p) == truth).collect(),
            total_relevant_images: truth.and_then(|t| sizes.get(t)).copied().unwrap_or(0),
            copy: copy_protocol.then(|| copy_outcome(catalog, q, &l.answer)),
            answer: l.answer,
            embed_ms: l.embed_ms,
            search_ms: l.search_ms,
        }
    }
}

/// The copy check's outcome for one query: its top candidate against `copy_of`.
fn copy_outcome(catalog: &Catalog, q: &Query, answer: &Lookup) -> copies::CopyOutcome {
    let canonical = |s: &str| std::fs::canonicalize(s).map_or_else(|_| s.to_string(), |p| p.display().to_string());
    let top = answer.copy_ranking.first();
    let top_source = top.and_then(|c| catalog.records().image(c.image_id).ok().flatten()).map(|r| canonical(&r.source));
    let truth = q.copy_of.as_deref().map(canonical);
    copies::CopyOutcome {
        is_copy: truth.is_some(),
        source_first: truth.is_some() && top_source == truth,
        p_copy: top.map_or(0.0, |c| c.p_copy),
        inliers: top.map_or(0, |c| c.inliers),
        correlation: top.and_then(|c| c.correlation),
        coverage: top.map_or(0.0, |c| c.coverage),
        score: top.map_or(f32::MIN, |c| c.score + 1e-3 * c.similarity),
        gate_inliers: match answer.copy_gate {
            Some(crate::search::copy::Gate::Glance { inliers, .. }) => Some(inliers),
            _ => None,
        },
        gate_passed: answer.copy_gate.is_some_and(crate::search::copy::Gate::passed),
    }
}

/// Rows: truth label (or `distractor`) → predicted verdict → count.
fn verdict_confusion(outcomes: &[Outcome]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut table: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for o in outcomes {
        let row = match (&o.truth, o.truth_label) {
            (None, _) => "distractor",
            (Some(_), Some(l)) => l.as_str(),
            (Some(_), None) => "unknown-product",
        };
        *table.entry(row.to_string()).or_default().entry(o.answer.verdict.as_str().to_string()).or_default() += 1;
    }
    table
}

/// The ten most frequent (true product, predicted top-1) confusions.
fn most_confused(outcomes: &[Outcome]) -> Vec<Confusion> {
    let mut confused: HashMap<(String, String), usize> = HashMap::new();
    for o in outcomes {
        if let (Some(t), Some((p, _))) = (&o.truth, o.ranked.first()) {
            if t != p {
                *confused.entry((t.clone(), p.clone())).or_default() += 1;
            }
        }
    }
    let mut out: Vec<Confusion> = confused.into_iter().map(|((truth, predicted), count)| Confusion { truth, predicted, count }).collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.truth.cmp(&b.truth)).then_with(|| a.predicted.cmp(&b.predicted)));
    out.truncate(10);
    out
}

/// Wrong top-1 answers, most confident first (at most 24).
fn mistakes(outcomes: &[Outcome]) -> Vec<Mistake> {
    let mut out: Vec<Mistake> = outcomes
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
                confidence: o.confidence(),
            })
        })
        .collect();
    out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then_with(|| b.similarity.total_cmp(&a.similarity)));
    out.truncate(24);
    out
}

/// What a marketplace decides on: the share of authentic queries called
/// `likely_counterfeit`, of counterfeit queries caught, and of labelled
/// queries with a `likely_*` verdict at all.
fn decision_rates(outcomes: &[Outcome], has_both_labels: bool) -> (Option<f64>, Option<f64>, Option<f64>) {
    if !has_both_labels {
        return (None, None, None);
    }
    let share = |label: Option<Label>, hit: &dyn Fn(VerdictKind) -> bool| {
        let of: Vec<VerdictKind> = outcomes
            .iter()
            .filter(|o| o.truth.is_some() && label.is_none_or(|l| o.truth_label == Some(l)))
            .map(|o| o.answer.verdict)
            .collect();
        (!of.is_empty()).then(|| of.iter().filter(|v| hit(**v)).count() as f64 / of.len() as f64)
    };
    let accused = |v: VerdictKind| v == VerdictKind::LikelyCounterfeit;
    let decided = |v: VerdictKind| matches!(v, VerdictKind::LikelyAuthentic | VerdictKind::LikelyCounterfeit);
    (share(Some(Label::Authentic), &accused), share(Some(Label::Counterfeit), &accused), share(None, &decided))
}

/// (`p_counterfeit`, truly counterfeit) per query of a known product.
fn counterfeit_reliability(outcomes: &[Outcome]) -> (Vec<f32>, Vec<bool>) {
    outcomes.iter().filter_map(|o| o.truth_label.map(|l| (o.answer.p_counterfeit, l == Label::Counterfeit))).unzip()
}

fn compute(outcomes: &[Outcome], has_both_labels: bool, copy_threshold: Option<f32>) -> Metrics {
    let with_truth: Vec<&Outcome> = outcomes.iter().filter(|o| o.truth.is_some()).collect();
    let ranks: Vec<Option<usize>> = with_truth.iter().map(|o| o.ranked.iter().position(|(p, _)| Some(p) == o.truth.as_ref())).collect();
    let aps: Vec<f64> = with_truth.iter().map(|o| average_precision(&o.image_relevant, o.total_relevant_images)).collect();
    let (pos, neg) = pair_scores(outcomes);
    let conf: Vec<f32> = outcomes.iter().map(Outcome::confidence).collect();
    let correct: Vec<bool> = outcomes.iter().map(Outcome::top1_correct).collect();
    let expected = |o: &Outcome| match (&o.truth, o.truth_label) {
        (None, _) => Some(VerdictKind::NoMatch),
        (Some(_), Some(Label::Authentic)) => Some(VerdictKind::LikelyAuthentic),
        (Some(_), Some(Label::Counterfeit)) => Some(VerdictKind::LikelyCounterfeit),
        (Some(_), None) => None,
    };
    let verdict_accuracy = if has_both_labels {
        let judged: Vec<bool> = outcomes.iter().filter_map(|o| expected(o).map(|e| e == o.answer.verdict)).collect();
        (!judged.is_empty()).then(|| judged.iter().filter(|b| **b).count() as f64 / judged.len() as f64)
    } else {
        None
    };
    let distractors: Vec<&Outcome> = outcomes.iter().filter(|o| o.truth.is_none()).collect();
    let distractor_false_match_rate = (!distractors.is_empty())
        .then(|| distractors.iter().filter(|o| o.answer.verdict != VerdictKind::NoMatch).count() as f64 / distractors.len() as f64);
    let (false_accusation_rate, catch_rate, coverage) = decision_rates(outcomes, has_both_labels);
    let (p_fake, is_fake) = counterfeit_reliability(outcomes);
    let ece_counterfeit = (has_both_labels && !p_fake.is_empty()).then(|| ece(&p_fake, &is_fake, 10));
    let ece_counterfeit_check = ece_counterfeit.map(|e| ece_check(&p_fake, e, 10));
    let ece_top = ece(&conf, &correct, 10);
    let distractor_p_no_match = (!distractors.is_empty())
        .then(|| distractors.iter().map(|o| f64::from(o.answer.p_no_match)).sum::<f64>() / distractors.len() as f64);
    let copy_outcomes: Vec<&copies::CopyOutcome> = outcomes.iter().filter_map(|o| o.copy.as_ref()).collect();
    Metrics {
        copies: copies::copy_metrics(&copy_outcomes, copy_threshold),
        ece_counterfeit,
        ece_counterfeit_check,
        distractor_p_no_match,
        false_accusation_rate,
        catch_rate,
        coverage,
        n_queries: outcomes.len(),
        recall_at_1: recall_at_k(&ranks, 1),
        recall_at_5: recall_at_k(&ranks, 5),
        map: if aps.is_empty() { 0.0 } else { aps.iter().sum::<f64>() / aps.len() as f64 },
        mrr: mrr(&ranks),
        auc: roc_auc(&pos, &neg),
        tpr_at_fpr_1pct: tpr_at_fpr(&pos, &neg, 0.01),
        ece: ece_top,
        ece_check: ece_check(&conf, ece_top, 10),
        verdict_accuracy,
        distractor_false_match_rate,
    }
}
