//! The review loop, measured: `knockoff eval --review-budget N
//! [--review-rounds R]` plays the queries as a marketplace stream in `R`
//! rounds (in a fixed shuffled order). Each round's lookups become cases
//! ([`crate::review::record`]); a simulated analyst decides the `N` cases of
//! the round most worth reviewing ([`crate::review::priority`]) with the
//! truth from the query manifest, through the same call as the HTTP
//! decision ([`crate::review::decide`]); the index refits (as the service's
//! background refit does); the next round is looked up.
//!
//! Per round, of that round's answers (before its reviews):
//! - `recall_at_1`, `ece` (top-1 confidence against correctness; a
//!   distractor's top match is never correct), `model_coverage` (answers
//!   other than `uncertain`);
//! - `coverage`: lookups that end decided — by the model (not `uncertain`)
//!   or by the analyst;
//! - `catch_rate`: counterfeit listings called `likely_counterfeit` or
//!   reviewed; `false_accusation_rate`: authentic listings called
//!   `likely_counterfeit` (null without both labels).

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, Label};
use crate::embed::Embedder;
use crate::ingest::Query;
use crate::review::{self, Decision, DecisionInput, ListingContext, Seen};
use crate::search::batch::{look_up_all, Looked};
use crate::search::{VerdictConfig, VerdictKind};

use super::EvalOptions;

/// What one round measured.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: usize,
    pub lookups: usize,
    /// Reviews decided before this round was looked up.
    pub reviews_before: usize,
    /// Reviews decided by the end of this round.
    pub reviews_so_far: usize,
    pub recall_at_1: f64,
    pub ece: f64,
    /// Mean top-1 confidence, against `top1_accuracy` (ECE's direction: above is overconfident).
    pub mean_confidence: f64,
    /// Share of lookups whose top match is their product (distractors count as wrong).
    pub top1_accuracy: f64,
    /// As `ece`, `mean_confidence` and `top1_accuracy`, over the listings of catalogued products only.
    pub catalogued: Calibration,
    /// Listings of products the catalog lacks: their mean top-1 confidence (every top match is wrong) and mean `p_no_match`.
    pub elsewhere_mean_confidence: Option<f64>,
    pub elsewhere_mean_p_no_match: Option<f64>,
    pub model_coverage: f64,
    pub coverage: f64,
    pub catch_rate: Option<f64>,
    pub false_accusation_rate: Option<f64>,
    /// Lookups that failed (unreadable photos), not counted above.
    pub failed: usize,
}

/// How well one group of a round's answers is calibrated (top-1 confidence against its hit rate).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Calibration {
    pub ece: f64,
    pub mean_confidence: f64,
    pub top1_accuracy: f64,
}

/// The stream in rounds: queries in a fixed order that mixes products (by the sha256 of their image names).
fn rounds(queries: &[Query], n: usize) -> Vec<Vec<&Query>> {
    let mut order: Vec<&Query> = queries.iter().collect();
    order.sort_by_cached_key(|q| crate::util::sha256_hex(q.image.as_bytes()));
    let n = n.clamp(1, order.len().max(1));
    (0..n).map(|r| order[r * order.len() / n..(r + 1) * order.len() / n].to_vec()).collect()
}

/// What the simulated analyst reviews each round: `per_round` cases, of
/// which the share `audit` drawn at random (a fixed pseudo-random order)
/// and the rest the most review-worthy.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub per_round: usize,
    pub audit: f64,
}

/// One looked-up query of a round, with what it truly shows.
struct Seen1<'a> {
    query: &'a Query,
    looked: Looked,
    truth_label: Option<Label>,
    reviewed: bool,
}

/// Plays `queries` as `rounds` rounds with `budget` reviews each (see the
/// module doc); `verdicts` gives the verdict settings in force (read again
/// after each refit).
pub fn simulate(
    catalog: &Catalog,
    embedder: &Embedder,
    queries: &[Query],
    opts: &EvalOptions,
    (budget, n_rounds): (Budget, usize),
    verdicts: &dyn Fn() -> VerdictConfig,
    log: &mut dyn FnMut(String),
) -> Result<Vec<Round>, CatalogError> {
    let mut out = Vec::new();
    let mut reviews = 0;
    for (r, round) in rounds(queries, n_rounds).into_iter().enumerate() {
        let opts = EvalOptions { verdict: verdicts(), ..opts.clone() };
        let photos: Vec<&str> = round.iter().map(|q| q.image.as_str()).collect();
        let mut seen = Vec::new();
        let mut failed = 0;
        for (q, looked) in round.iter().zip(look_up_all(catalog, embedder, &photos, &opts)?) {
            let Ok(looked) = looked else {
                failed += 1;
                continue;
            };
            let truth_label = q.product_id.as_deref().and_then(|p| looked.label_of(p));
            seen.push(Seen1 { query: q, looked, truth_label, reviewed: false });
        }
        let reviews_before = reviews;
        reviews += review_round(catalog, embedder, &mut seen, budget)?;
        let _ = crate::fit::fit_index(catalog, Some(embedder), &mut |l| log(format!("refit: {l}")));
        let m = measure(r + 1, &seen, reviews_before, reviews, failed);
        log(format!(
            "round {}: {} lookups, {} reviews so far; R@1 {:.3}, ECE {:.3} (mean confidence {:.3}, top-1 right {:.3}), coverage {:.3} (model alone {:.3}), catch {:?}, false accusations {:?}",
            m.round, m.lookups, m.reviews_so_far, m.recall_at_1, m.ece, m.mean_confidence, m.top1_accuracy, m.coverage, m.model_coverage, m.catch_rate, m.false_accusation_rate
        ));
        out.push(m);
    }
    Ok(out)
}

/// Records the round's lookups as cases and decides the `budget` most worth
/// reviewing with the truth; returns how many were decided.
fn review_round(catalog: &Catalog, embedder: &Embedder, seen: &mut [Seen1<'_>], budget: Budget) -> Result<usize, CatalogError> {
    let fetch = crate::ingest::FetchOptions { allow_private: true, ..Default::default() };
    let mut cases = Vec::with_capacity(seen.len());
    for (i, s) in seen.iter().enumerate() {
        let Ok(photo) = crate::ingest::fetch(&s.query.image, &fetch) else { continue };
        let sha256 = crate::util::sha256_hex(&photo);
        let context = ListingContext { listing_id: Some(s.query.image.clone()), ..Default::default() };
        let model = embedder.name();
        let case = Seen {
            photo: &photo,
            sha256: &sha256,
            embedding: &s.looked.vector,
            regions: &[],
            model,
            answer: &s.looked.answer,
            context: &context,
            calibration: None,
        };
        let id = review::record(catalog, &case).map_err(review_error)?;
        cases.push((review::priority(&s.looked.answer), i, id));
    }
    // The audit share first, at random (by a hash of the photo's name), then the most review-worthy of the rest.
    let audit = ((budget.per_round as f64) * budget.audit.clamp(0.0, 1.0)).round() as usize;
    cases.sort_by_cached_key(|c| crate::util::sha256_hex(seen[c.1].query.image.as_bytes()));
    let mut rest = cases.split_off(audit.min(cases.len()));
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    cases.extend(rest);
    let mut decided = 0;
    for (_, i, id) in cases.into_iter().take(budget.per_round) {
        let s = &mut seen[i];
        let (decision, product_id) = match (s.truth_label, &s.query.product_id) {
            (Some(Label::Authentic), Some(p)) => (Decision::Authentic, Some(p.clone())),
            (Some(Label::Counterfeit), Some(p)) => (Decision::Counterfeit, Some(p.clone())),
            _ => (Decision::NotInCatalog, None),
        };
        let input = DecisionInput { decision, product_id, note: Some("simulated analyst".into()) };
        review::decide(catalog, embedder.limits(), id, 1, Some("simulation"), &input).map_err(review_error)?;
        s.reviewed = true;
        decided += 1;
    }
    Ok(decided)
}

fn review_error(e: review::ReviewError) -> CatalogError {
    match e {
        review::ReviewError::Catalog(c) => c,
        other => CatalogError::Engine { engine: "review simulation", detail: other.to_string() },
    }
}

/// The mean, `None` for no values.
fn mean(v: &[f32]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().map(|x| f64::from(*x)).sum::<f64>() / v.len() as f64)
}

impl Calibration {
    fn of(confidence: &[f32], correct: &[bool]) -> Self {
        Calibration {
            ece: crate::metrics::ece(confidence, correct, 10),
            mean_confidence: mean(confidence).unwrap_or(0.0),
            top1_accuracy: share(correct.iter().filter(|c| **c).count(), correct.len()).unwrap_or(0.0),
        }
    }
}

fn share(n: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

fn measure(round: usize, seen: &[Seen1<'_>], reviews_before: usize, reviews_so_far: usize, failed: usize) -> Round {
    let top_right = |s: &Seen1<'_>| {
        s.query.product_id.is_some() && s.looked.answer.matches.first().map(|m| &m.product_id) == s.query.product_id.as_ref()
    };
    let catalogued: Vec<&Seen1<'_>> = seen.iter().filter(|s| s.truth_label.is_some()).collect();
    let confidence: Vec<f32> = seen.iter().map(|s| s.looked.answer.matches.first().map_or(0.0, |m| m.confidence)).collect();
    let correct: Vec<bool> = seen.iter().map(top_right).collect();
    let decisive = |s: &Seen1<'_>| s.looked.answer.verdict != VerdictKind::Uncertain;
    let accuses = |s: &Seen1<'_>| s.looked.answer.verdict == VerdictKind::LikelyCounterfeit;
    let of = |l: Label| seen.iter().filter(move |s| s.truth_label == Some(l));
    let both = of(Label::Authentic).next().is_some() && of(Label::Counterfeit).next().is_some();
    let (inside, outside): (Vec<usize>, Vec<usize>) = (0..seen.len()).partition(|&i| seen[i].query.product_id.is_some());
    let pick = |ix: &[usize], v: &[f32]| -> Vec<f32> { ix.iter().map(|&i| v[i]).collect() };
    let all = Calibration::of(&confidence, &correct);
    let r_in: Vec<bool> = inside.iter().map(|&i| correct[i]).collect();
    let p_none: Vec<f32> = outside.iter().map(|&i| seen[i].looked.answer.p_no_match).collect();
    Round {
        round,
        lookups: seen.len(),
        reviews_before,
        reviews_so_far,
        recall_at_1: share(catalogued.iter().filter(|s| top_right(s)).count(), catalogued.len()).unwrap_or(0.0),
        ece: all.ece,
        mean_confidence: all.mean_confidence,
        top1_accuracy: all.top1_accuracy,
        catalogued: Calibration::of(&pick(&inside, &confidence), &r_in),
        elsewhere_mean_confidence: mean(&pick(&outside, &confidence)),
        elsewhere_mean_p_no_match: mean(&p_none),
        model_coverage: share(seen.iter().filter(|s| decisive(s)).count(), seen.len()).unwrap_or(0.0),
        coverage: share(seen.iter().filter(|s| decisive(s) || s.reviewed).count(), seen.len()).unwrap_or(0.0),
        catch_rate: share(of(Label::Counterfeit).filter(|s| accuses(s) || s.reviewed).count(), of(Label::Counterfeit).count())
            .filter(|_| both),
        false_accusation_rate: share(of(Label::Authentic).filter(|s| accuses(s)).count(), of(Label::Authentic).count()).filter(|_| both),
        failed,
    }
}

/// The learning curves as an HTML page (one inline SVG plot).
#[must_use]
pub fn render(curve: &[Round], title: &str) -> String {
    use plotters::prelude::*;
    use std::fmt::Write as _;
    type Series = (&'static str, RGBColor, fn(&Round) -> f64);
    let series: [Series; 4] = [
        ("coverage", BLUE, |r| r.coverage),
        ("catch rate", RED, |r| r.catch_rate.unwrap_or(f64::NAN)),
        ("R@1", GREEN, |r| r.recall_at_1),
        ("ECE", BLACK, |r| r.ece),
    ];
    let max_x = curve.iter().map(|r| r.reviews_before).max().unwrap_or(1).max(1) as f64;
    let plot = super::report::svg(640, 400, |root| {
        let mut ch = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..max_x, 0f64..1f64)
            .map_err(|e| e.to_string())?;
        ch.configure_mesh().x_desc("reviews decided before the round").y_desc("share").draw().map_err(|e| e.to_string())?;
        for (name, colour, f) in series {
            let pts: Vec<(f64, f64)> = curve.iter().map(|r| (r.reviews_before as f64, f(r))).filter(|p| p.1.is_finite()).collect();
            ch.draw_series(LineSeries::new(pts, colour))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        ch.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())?;
        Ok(())
    });
    let mut rows = String::new();
    for r in curve {
        let opt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"));
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            r.round,
            r.lookups,
            r.reviews_before,
            r.recall_at_1,
            r.ece,
            r.model_coverage,
            r.coverage,
            opt(r.catch_rate),
            opt(r.false_accusation_rate)
        );
    }
    format!(
        "<!doctype html><meta charset=utf-8><title>{title}</title><body style='font-family:sans-serif'><h1>{title}</h1>{plot}\
         <table border=1 cellpadding=4><tr><th>round</th><th>lookups</th><th>reviews before</th><th>R@1</th><th>ECE</th><th>model coverage</th><th>coverage</th><th>catch rate</th><th>false accusations</th></tr>{rows}</table></body>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_cut_into_rounds_in_a_fixed_mixed_order() {
        let qs: Vec<Query> =
            (0..10).map(|i| Query { image: format!("q{i}.jpg"), product_id: None, category: None, copy_of: None }).collect();
        let r = rounds(&qs, 3);
        assert_eq!(r.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 4]);
        let again = rounds(&qs, 3);
        assert_eq!(r.iter().flatten().map(|q| &q.image).collect::<Vec<_>>(), again.iter().flatten().map(|q| &q.image).collect::<Vec<_>>());
        assert_ne!(
            r[0].iter().map(|q| q.image.as_str()).collect::<Vec<_>>(),
            ["q0.jpg", "q1.jpg", "q2.jpg"],
            "mixed, not in manifest order"
        );
    }
}
