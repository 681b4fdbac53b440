//! `knockoff eval` on a small generated catalog: the JSON has the promised
//! keys with values in range, and the numbers react to the data.

mod common;

use std::process::Command;

use common::*;

#[test]
fn eval_reports_every_metric_in_range() {
    let work = tempfile::tempdir().unwrap();
    let manifest = make_catalog(work.path(), 12, 4);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (mut cat, mut qs) = (vec![header.to_string()], vec![header.to_string()]);
    for l in lines {
        // Image 03 of each product is the query; 00..02 are the catalog.
        if l.contains("-03.jpg") { qs.push(l.to_string()) } else { cat.push(l.to_string()) }
    }
    // Two distractors: pictures of nothing in the catalog, no product_id.
    for (i, seed) in [3u32, 7].iter().enumerate() {
        let img = image::RgbImage::from_fn(160, 120, |x, y| image::Rgb([((x * seed) % 256) as u8, ((y * 3 + x) % 256) as u8, ((x ^ y) * seed % 256) as u8]));
        let p = work.path().join(format!("img/noise-{i}.png"));
        img.save(&p).unwrap();
        qs.push(format!("img/noise-{i}.png,,,,,"));
    }
    std::fs::write(work.path().join("cat.csv"), cat.join("\n") + "\n").unwrap();
    std::fs::write(work.path().join("q.csv"), qs.join("\n") + "\n").unwrap();
    let json_file = work.path().join("report.json");
    let out = Command::new(bin())
        .current_dir(root())
        .args(["eval", "--catalog"])
        .arg(work.path().join("cat.csv"))
        .arg("--queries")
        .arg(work.path().join("q.csv"))
        .arg("--json")
        .arg(&json_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r, serde_json::from_slice::<serde_json::Value>(&std::fs::read(&json_file).unwrap()).unwrap());
    for key in ["recall_at_1", "recall_at_5", "map", "mrr", "auc", "tpr_at_fpr_1pct", "ece", "verdict_accuracy", "distractor_false_match_rate"] {
        let v = r[key].as_f64().unwrap_or_else(|| panic!("{key} missing or null: {r}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(r["n_queries"], 14);
    assert_eq!(r["n_catalog_images"], 36);
    assert_eq!(r["model"], "efficientnet-lite0");
    // Queries are near-copies of catalog crops: retrieval is easy here.
    assert!(r["recall_at_1"].as_f64().unwrap() >= 0.9, "{r}");
    assert!(r["recall_at_5"].as_f64().unwrap() >= r["recall_at_1"].as_f64().unwrap());
    assert!(r["auc"].as_f64().unwrap() > 0.9);
    assert!(r["latency"]["embed"]["p50_ms"].as_f64().unwrap() > 0.0);
    let vc = &r["verdict_confusion"];
    assert_eq!(vc["distractor"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 2);
    assert!(vc["counterfeit"].is_object() && vc["authentic"].is_object(), "{vc}");
}
