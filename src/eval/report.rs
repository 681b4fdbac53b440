//! The HTML report of `knockoff eval --report`: one self-contained file
//! (inline SVG plots drawn with `plotters`, thumbnails as data URIs, no CDN).

use std::fmt::Write;

use base64::Engine;
use plotters::prelude::*;

use super::EvalReport;
use crate::catalog::Catalog;

pub(super) fn svg(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        if let Err(e) = draw(&root) {
            return format!("<p>plot failed: {e}</p>");
        }
        let _ = root.present();
    }
    out
}

fn reliability_svg(points: &[(f32, bool)], title: &str, x_desc: &str, y_desc: &str) -> String {
    let bins = 10;
    let mut acc = vec![(0.0f64, 0.0f64, 0usize); bins];
    for (c, ok) in points {
        let b = ((f64::from(*c) * bins as f64) as usize).min(bins - 1);
        acc[b].0 += f64::from(*c);
        acc[b].1 += f64::from(u8::from(*ok));
        acc[b].2 += 1;
    }
    svg(420, 360, |root| {
        let mut ch = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(|e| e.to_string())?;
        ch.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(|e| e.to_string())?;
        ch.draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(|e| e.to_string())?;
        let pts: Vec<(f64, f64)> = acc.iter().filter(|b| b.2 > 0).map(|b| (b.0 / b.2 as f64, b.1 / b.2 as f64)).collect();
        ch.draw_series(LineSeries::new(pts.clone(), &BLUE)).map_err(|e| e.to_string())?;
        ch.draw_series(pts.iter().map(|p| Circle::new(*p, 4, BLUE.filled()))).map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn roc_svg(pos: &[f32], neg: &[f32]) -> String {
    let mut all: Vec<(f32, bool)> = pos.iter().map(|s| (*s, true)).chain(neg.iter().map(|s| (*s, false))).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (np, nn) = (pos.len().max(1) as f64, neg.len().max(1) as f64);
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut curve = vec![(0.0, 0.0)];
    for (_, p) in all {
        if p {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        curve.push((fp / nn, tp / np));
    }
    svg(420, 360, |root| {
        let mut ch = ChartBuilder::on(root)
            .caption("ROC: same vs different product", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(|e| e.to_string())?;
        ch.configure_mesh().x_desc("false positive rate").y_desc("true positive rate").draw().map_err(|e| e.to_string())?;
        ch.draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(|e| e.to_string())?;
        ch.draw_series(LineSeries::new(curve, &RED)).map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn histogram_svg(pos: &[f32], neg: &[f32]) -> String {
    let bins = 40usize;
    let hist = |v: &[f32]| {
        let mut h = vec![0f64; bins];
        for s in v {
            h[((s.clamp(0.0, 0.9999) * bins as f32) as usize).min(bins - 1)] += 1.0;
        }
        let n = v.len().max(1) as f64;
        h.iter().map(|c| c / n).collect::<Vec<f64>>()
    };
    let (hp, hn) = (hist(pos), hist(neg));
    let ymax = hp.iter().chain(&hn).copied().fold(0.0, f64::max).max(0.01) * 1.1;
    svg(420, 360, |root| {
        let mut ch = ChartBuilder::on(root)
            .caption("Similarity: same (blue) vs different (red)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..1f64, 0f64..ymax)
            .map_err(|e| e.to_string())?;
        ch.configure_mesh().x_desc("similarity").y_desc("share of pairs").draw().map_err(|e| e.to_string())?;
        for (h, color) in [(&hn, RED), (&hp, BLUE)] {
            let pts: Vec<(f64, f64)> = h.iter().enumerate().map(|(i, v)| ((i as f64 + 0.5) / bins as f64, *v)).collect();
            ch.draw_series(AreaSeries::new(pts, 0.0, color.mix(0.25)).border_style(color)).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn data_uri(jpeg: &[u8]) -> String {
    format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(jpeg))
}

/// Renders the report; query thumbnails are made from the query files.
pub fn render(report: &EvalReport, catalog: &Catalog) -> String {
    let m = &report.overall;
    let f = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"));
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>knockoff evaluation</title><style>\
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left}}\
.plots{{display:flex;flex-wrap:wrap;gap:1rem}}.gallery{{display:flex;flex-wrap:wrap;gap:1rem}}.mistake{{border:1px solid #ddd;border-radius:6px;padding:.5rem;width:300px}}\
.mistake img{{width:140px;height:140px;object-fit:cover}}</style></head><body>\
<h1>knockoff evaluation — {}</h1><p>{} queries, {} catalog images, {} failed queries.</p>",
        esc(&report.model),
        m.n_queries,
        report.n_catalog_images,
        report.n_failed_queries
    );
    h.push_str("<h2>Metrics</h2><table><tr><th>group</th><th>queries</th><th>R@1</th><th>R@5</th><th>mAP</th><th>MRR</th><th>AUC</th><th>TPR@1%FPR</th><th>ECE (a calibrated model: median, p)</th><th>verdict acc.</th><th>distractor false match</th></tr>");
    let row = |name: &str, m: &super::Metrics| {
        format!(
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{:.3} ({:.3}, p {:.2})</td><td>{}</td><td>{}</td></tr>",
            esc(name), m.n_queries, m.recall_at_1, m.recall_at_5, m.map, m.mrr, f(m.auc), f(m.tpr_at_fpr_1pct), m.ece, m.ece_check.if_calibrated, m.ece_check.p_value, f(m.verdict_accuracy), f(m.distractor_false_match_rate)
        )
    };
    h.push_str(&row("all", m));
    for (g, gm) in &report.by_group {
        h.push_str(&row(g, gm));
    }
    h.push_str("</table><h2>Plots</h2><div class=\"plots\">");
    h.push_str(&reliability_svg(&report.reliability, "Reliability diagram", "confidence", "accuracy"));
    if !report.counterfeit_reliability.is_empty() && report.overall.ece_counterfeit.is_some() {
        h.push_str(&reliability_svg(&report.counterfeit_reliability, "Reliability of p_counterfeit", "p_counterfeit", "share counterfeit"));
    }
    h.push_str(&roc_svg(&report.pair_scores.0, &report.pair_scores.1));
    h.push_str(&histogram_svg(&report.pair_scores.0, &report.pair_scores.1));
    h.push_str("</div><h2>Verdicts</h2><table><tr><th>truth</th><th>verdicts</th></tr>");
    for (truth, cols) in &report.verdict_confusion {
        let cells: Vec<String> = cols.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(truth), esc(&cells.join(", ")));
    }
    h.push_str("</table><h2>Latency (ms)</h2><table><tr><th>stage</th><th>p50</th><th>p95</th><th>p99</th></tr>");
    for (stage, l) in &report.latency {
        let _ = write!(h, "<tr><td>{stage}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>", l.p50_ms, l.p95_ms, l.p99_ms);
    }
    h.push_str("</table><h2>Most confused products</h2><table><tr><th>true</th><th>answered</th><th>times</th></tr>");
    for c in &report.most_confused {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&c.truth), esc(&c.predicted), c.count);
    }
    h.push_str("</table><h2>Worst mistakes (most confident wrong answers)</h2><div class=\"gallery\">");
    for mk in &report.mistakes {
        let query_thumb = std::fs::read(&mk.query_image)
            .ok()
            .and_then(|b| image::load_from_memory(&b).ok())
            .map(|img| crate::catalog::thumbnail(&img.to_rgb8(), &mut fast_image_resize::Resizer::new()));
        let cat_thumb = catalog.records().thumbnail(mk.predicted_image).ok().flatten();
        let img = |t: Option<Vec<u8>>| t.map(|t| format!("<img src=\"{}\">", data_uri(&t))).unwrap_or_default();
        let _ = write!(
            h,
            "<div class=\"mistake\">{}{}<br>truth <b>{}</b><br>answered <b>{}</b><br>similarity {:.3}, confidence {:.2}</div>",
            img(query_thumb),
            img(cat_thumb),
            esc(mk.truth.as_deref().unwrap_or("(distractor)")),
            esc(&mk.predicted),
            mk.similarity,
            mk.confidence
        );
    }
    h.push_str("</div></body></html>\n");
    h
}
