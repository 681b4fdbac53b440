//! `knockoff eval` on a small generated catalog: the JSON has the promised
//! keys with values in range, and the numbers react to the data.

mod common;

use std::process::Command;

use common::*;

/// Generates `products` × `per` images and writes `cat.csv` and `q.csv`, putting
/// each row whose image name satisfies `is_query` in the queries.
fn split_catalog(dir: &std::path::Path, products: usize, per: usize, is_query: impl Fn(&str) -> bool, extra_queries: &[String]) {
    let manifest = make_catalog(dir, products, per);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (mut cat, mut qs) = (vec![header.to_string()], vec![header.to_string()]);
    for l in lines {
        if is_query(l) {
            qs.push(l.to_string());
        } else {
            cat.push(l.to_string());
        }
    }
    qs.extend(extra_queries.iter().cloned());
    std::fs::write(dir.join("cat.csv"), cat.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("q.csv"), qs.join("\n") + "\n").unwrap();
}

#[test]
fn eval_reports_every_metric_in_range() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("img")).unwrap();
    // Two distractors: pictures of nothing in the catalog, no product_id.
    let mut distractors = Vec::new();
    for (i, seed) in [3u32, 7].iter().enumerate() {
        let img = image::RgbImage::from_fn(160, 120, |x, y| {
            image::Rgb([((x * seed) % 256) as u8, ((y * 3 + x) % 256) as u8, ((x ^ y) * seed % 256) as u8])
        });
        img.save(work.path().join(format!("img/noise-{i}.png"))).unwrap();
        distractors.push(format!("img/noise-{i}.png,,,,,"));
    }
    // Image 03 of each product is the query; 00..02 are the catalog.
    split_catalog(work.path(), 12, 4, |l| l.contains("-03.jpg"), &distractors);
    let json_file = work.path().join("report.json");
    let out = Command::new(bin())
        .current_dir(root())
        .args(["eval", "--catalog"])
        .arg(work.path().join("cat.csv"))
        .arg("--queries")
        .arg(work.path().join("q.csv"))
        .arg("--json")
        .arg(&json_file)
        .arg("--report")
        .arg(work.path().join("report.html"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r, serde_json::from_slice::<serde_json::Value>(&std::fs::read(&json_file).unwrap()).unwrap());
    for key in [
        "recall_at_1",
        "recall_at_5",
        "map",
        "mrr",
        "auc",
        "tpr_at_fpr_1pct",
        "ece",
        "verdict_accuracy",
        "distractor_false_match_rate",
        "ece_counterfeit",
        "distractor_p_no_match",
    ] {
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
    // The decision rates agree with the verdict matrix.
    let cell = |row: &str, col: &str| vc[row][col].as_u64().unwrap_or(0) as f64;
    let total = |row: &str| vc[row].as_object().unwrap().values().map(|v| v.as_u64().unwrap() as f64).sum::<f64>();
    let close = |key: &str, want: f64| assert!((r[key].as_f64().unwrap() - want).abs() < 1e-9, "{key}: {} vs {want}", r[key]);
    close("false_accusation_rate", cell("authentic", "likely_counterfeit") / total("authentic"));
    close("catch_rate", cell("counterfeit", "likely_counterfeit") / total("counterfeit"));
    let decided: f64 = ["authentic", "counterfeit"].iter().map(|row| cell(row, "likely_authentic") + cell(row, "likely_counterfeit")).sum();
    close("coverage", decided / (total("authentic") + total("counterfeit")));
    // The HTML report: self-contained, three plots, the gallery.
    let html = std::fs::read_to_string(work.path().join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "reliability, p_counterfeit reliability, ROC, histograms");
    assert!(html.contains("Reliability diagram") && html.contains("Reliability of p_counterfeit") && html.contains("ROC"));
    assert!(html.contains("Worst mistakes"));
    for external in ["src=\"http", "href=\"http", "<link", "<script"] {
        assert!(!html.contains(external), "no external resources ({external})");
    }
}

#[test]
fn calibration_round_trips_through_the_index_folder_and_is_used() {
    let work = tempfile::tempdir().unwrap();
    split_catalog(work.path(), 8, 4, |l| !(l.contains("-00.jpg") || l.contains("-01.jpg")), &[]);
    let idx = work.path().join("idx");
    let run = |args: &[&str]| {
        let out = Command::new(bin()).current_dir(root()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    run(&["index", work.path().join("cat.csv").to_str().unwrap(), "--index", idx.to_str().unwrap()]);
    let printed: serde_json::Value = serde_json::from_slice(&run(&[
        "calibrate",
        "--index",
        idx.to_str().unwrap(),
        "--queries",
        work.path().join("q.csv").to_str().unwrap(),
    ]))
    .unwrap();
    let stored = knockoff::search::Calibration::load(&idx.join("calibration.json")).expect("calibration.json in the index folder");
    assert_eq!(serde_json::to_value(&stored).unwrap(), printed);
    assert_eq!(stored.model, "efficientnet-lite0");
    assert_eq!(stored.n_queries, 16);
    assert!(stored.heldout_ece.contains_key("logistic") && stored.heldout_ece.contains_key("isotonic"));
    // The generated catalog has both labels: the counterfeit thresholds are fitted on the same lookups.
    let v = stored.verdict.as_ref().expect("verdict thresholds fitted by calibrate");
    assert_eq!((v.counterfeit.len(), v.authentic.len()), (knockoff::fit::RISK_LEVELS.len(), knockoff::fit::RISK_LEVELS.len()), "{v:?}");
    assert!(v.n_authentic > 0 && v.n_authentic + v.n_counterfeit <= 16, "{v:?}");
    // 8 products with 2 photos: too few for `index` to calibrate itself, so no presence model to keep.
    assert!(stored.presence.is_none());
    // The index's own calibration wins over the model's shipped default.
    let (found, path) = knockoff::search::Calibration::find(&idx, &root().join("models/efficientnet-lite0")).unwrap();
    assert_eq!(path, idx.join("calibration.json"));
    assert_eq!(found, stored);
    // ...and eval on that index uses it: its ECE is that of the fitted mapping.
    let r: serde_json::Value =
        serde_json::from_slice(&run(&["eval", "--index", idx.to_str().unwrap(), "--queries", work.path().join("q.csv").to_str().unwrap()]))
            .unwrap();
    assert!(r["ece"].as_f64().unwrap() <= 0.25, "{r}");
    // A calibrate on a folder that holds no catalog is a clear error, and creates nothing there.
    let out = Command::new(bin())
        .current_dir(root())
        .args(["calibrate", "--index", work.path().join("empty").to_str().unwrap(), "--queries", "q.csv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("holds no catalog"), "{said}");
    assert!(!work.path().join("empty").exists());
}

#[test]
fn a_catalog_with_one_photo_per_product_calibrates_itself_on_synthetic_views() {
    let work = tempfile::tempdir().unwrap();
    let manifest = make_catalog(work.path(), 12, 1);
    let index = |name: &str| {
        let idx = work.path().join(name);
        let out = Command::new(bin()).current_dir(root()).args(["index"]).arg(&manifest).arg("--index").arg(&idx).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        (knockoff::search::Calibration::load(&idx.join("calibration.json")), said, idx)
    };
    let (cal, said, idx) = index("a");
    let cal = cal.expect("a single-photo catalog of 12 products fits its own calibration");
    assert!(said.contains("96 synthetic listing photos"), "{said}");
    assert!(cal.queries[0].starts_with("self-calibration") && cal.queries[0].contains("synthetic"), "{:?}", cal.queries);
    // 8 views of each of the 12 images; the mapping and p_no_match are fitted on them.
    assert_eq!(cal.n_queries, 96);
    assert!(cal.n_correct > 0 && cal.n_correct <= 96);
    assert!(cal.presence.is_some(), "{cal:?}");
    // The catalog has both labels: thresholds from the views, which may only make a verdict more cautious.
    let t = cal.verdict.as_ref().expect("thresholds on a catalog with both labels");
    assert!(t.on_views && t.n_counterfeit > 0, "{t:?}");
    assert!(cal.queries[0].contains("verdict thresholds from them only where stricter"), "{:?}", cal.queries);
    // 24 views of 3 counterfeit products cannot show 10 % counterfeits passed: never `likely_authentic`, and the log says so.
    assert!(said.contains("likely_authentic at p_authentic never (too few lookups"), "{said}");
    let mut cfg = knockoff::search::VerdictConfig::default();
    cfg.apply(&cal);
    assert_eq!(cfg.thresholds, knockoff::search::ThresholdBasis::StricterOnViews);
    let defaults = knockoff::search::VerdictConfig::default();
    assert!(cfg.counterfeit_threshold >= defaults.counterfeit_threshold && cfg.authentic_threshold >= defaults.authentic_threshold);
    let presence = cal.presence.as_ref().unwrap();
    assert!(presence.apply(0.95, 0.2) > presence.apply(0.3, 0.01), "a close, clear match is more likely in the catalog: {presence:?}");
    let shipped = knockoff::search::Calibration::load(&root().join("models/efficientnet-lite0/calibration.json")).unwrap();
    assert_ne!(cal.mapping, shipped.mapping);
    // The mapping reads the margin against the ranking's own neighbourhood: a wider
    // margin over the same next products raises the confidence, and shifting every
    // similarity (another make-up) does not change it.
    assert!(matches!(cal.mapping, knockoff::search::Mapping::RelativeMargin { .. }), "{:?}", cal.mapping);
    let p = |sims: &[f32]| cal.mapping.apply_to(&knockoff::search::TopOfRanking::of(sims));
    let next = [0.55, 0.52, 0.5, 0.49, 0.47, 0.45, 0.44, 0.42, 0.4];
    let with_top = |top: f32, shift: f32| std::iter::once(top).chain(next).map(|s| s - shift).collect::<Vec<f32>>();
    assert!(p(&with_top(0.7, 0.0)) > p(&with_top(0.57, 0.0)), "{:?}", cal.mapping);
    assert!((p(&with_top(0.7, 0.0)) - p(&with_top(0.7, 0.2))).abs() < 1e-4);
    // The views are seeded: indexing the same catalog again fits the same mapping.
    let (again, _, _) = index("b");
    assert_eq!(again.unwrap().mapping, cal.mapping);
    let stats: serde_json::Value = serde_json::from_slice(
        &Command::new(bin()).current_dir(root()).args(["stats", "--json", "--index"]).arg(&idx).output().unwrap().stdout,
    )
    .unwrap();
    assert!(stats["calibration"]["fitted_on"].as_str().unwrap_or("").contains("synthetic"), "{stats}");
    // …and which thresholds lookups use, from where: here "never" for likely_authentic.
    let t = &stats["calibration"]["thresholds"];
    assert_eq!(t["basis"], "stricter_on_views", "{stats}");
    assert!(t["likely_authentic"].as_f64().unwrap() > 1.0 && t["likely_counterfeit"].as_f64().unwrap() >= 0.95, "{stats}");
    // The named-product threshold (#29) is fitted on the views with their product
    // removed, never under 0.5, and in force at the stated 1 %.
    let identity = cal.identity.as_ref().expect("a named-product threshold fitted on the views' none-cases");
    assert!(identity.on_views && identity.n_nones == 96, "{identity:?}");
    assert!(cfg.identity_threshold >= 0.5, "{cfg:?}");
    assert_eq!(t["max_false_authentication"].as_f64().map(|r| (r * 1000.0).round()), Some(10.0), "{stats}");
    assert!((t["named_product"].as_f64().unwrap() - f64::from(cfg.identity_threshold)).abs() < 1e-6, "{stats}");
}

#[test]
fn the_demo_catalog_refuses_photos_unlike_every_product_and_still_recognises_its_own() {
    // `run.sh`'s 4-product demo: too small to fit itself, so no presence model.
    let work = tempfile::tempdir().unwrap();
    let idx = work.path().join("idx");
    let run = |args: &[&str]| Command::new(bin()).current_dir(root()).args(args).output().unwrap();
    let out = run(&["index", "scripts/demo-catalog.csv", "--index", idx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let search = |img: image::RgbImage, name: &str| {
        let path = work.path().join(name);
        img.save(&path).unwrap();
        let out = run(&["search", "--index", idx.to_str().unwrap(), "--json", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["verdict"].as_str().unwrap().to_string(), v["p_no_match"].as_f64().unwrap(), v["matches"][0]["product_id"].clone(), v)
    };
    // Pictures of nothing in the catalog (before: `likely_authentic`, `p_no_match` 0.0004).
    let stripes = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([((x * 7) % 256) as u8, ((y * 3 + x) % 256) as u8, ((x ^ y) * 5 % 256) as u8])
    });
    let checks =
        image::RgbImage::from_fn(
            320,
            240,
            |x, y| if (x / 40 + y / 40) % 2 == 1 { image::Rgb([200, 60, 40]) } else { image::Rgb([30, 90, 200]) },
        );
    for (img, name) in [(stripes, "stripes.png"), (checks, "checks.png")] {
        let (verdict, p_no_match, _, v) = search(img, name);
        assert!(verdict == "no_match" && p_no_match > 0.9, "{name}: {v}");
    }
    // Its own products, cropped: still theirs, with their labels' verdicts.
    for (photo, product, verdict) in
        [("coffee", "demo-coffee-cup", "likely_authentic"), ("rocket", "demo-rocket-toy", "likely_counterfeit")]
    {
        let img = image::open(fixture(&format!("photos/{photo}.jpg"))).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        let crop = image::imageops::crop_imm(&img, w / 10, h / 8, w * 8 / 10, h * 3 / 4).to_image();
        let got = search(crop, &format!("{photo}-crop.png"));
        assert!(got.0 == verdict && got.2 == product && got.1 < 0.1, "{photo}: {}", got.3);
    }
}

#[test]
fn a_small_brand_catalog_with_several_photos_per_product_calibrates_itself_without_a_projection() {
    let work = tempfile::tempdir().unwrap();
    let index = |products: usize, per: usize| {
        let dir = work.path().join(format!("{products}x{per}"));
        let manifest = make_shots(&dir, products, per);
        let idx = dir.join("index");
        let out = Command::new(bin()).current_dir(root()).args(["index"]).arg(&manifest).arg("--index").arg(&idx).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (knockoff::search::Calibration::load(&idx.join("calibration.json")), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // 4 products × 14 photos: held-out halves (56 photos ≥ 50), not the shipped
    // map (which has no p_no_match: anything would match), and no projection
    // (fitted on so few products it learns the shoot).
    let (cal, said) = index(4, 14);
    let cal = cal.unwrap_or_else(|| panic!("a 4-product catalog with 14 photos each fits itself\n{said}"));
    assert!(said.contains("fitted on 56 held-out lookups") && said.contains("projection not applied"), "{said}");
    assert!(cal.queries[0].contains("other half") && cal.projection.is_none(), "{cal:?}");
    let presence = cal.presence.as_ref().expect("a presence model: p_no_match means something");
    assert!(presence.apply(0.95, 0.2) > 0.9 && presence.apply(0.3, 0.01) < presence.apply(0.95, 0.2) - 0.3, "{presence:?}");
    // Too few photos to hold out: the shipped calibration, and the reason said.
    let (cal, said) = index(4, 6);
    assert!(cal.is_none(), "{cal:?}");
    assert!(said.contains("4 products: fitting needs") && said.contains("50 photos"), "{said}");
}

#[test]
fn photos_of_a_product_that_copy_one_another_calibrate_on_synthetic_views_not_on_halves() {
    let work = tempfile::tempdir().unwrap();
    let index = |manifest: std::path::PathBuf| {
        let idx = manifest.with_file_name("index");
        let out = Command::new(bin()).current_dir(root()).args(["index"]).arg(&manifest).arg("--index").arg(&idx).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cal = knockoff::search::Calibration::load(&idx.join("calibration.json")).expect("the catalog calibrates itself");
        (cal, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Crops of one shot per product: a held-out photo would find its own copy, far
    // easier than any listing, so the index makes listing photos up instead.
    let (cal, said) = index(make_catalog(&work.path().join("copies"), 12, 4));
    assert!(said.contains("synthetic listing photos") && said.contains("copies of one another"), "{said}");
    // Thresholds from the views (the catalog has both labels), marked: they only make verdicts more cautious.
    assert!(cal.queries[0].contains("copies of one another") && cal.presence.is_some(), "{cal:?}");
    assert!(cal.verdict.as_ref().is_some_and(|t| t.on_views), "{cal:?}");
    // The same in a small catalog: too few products for views, and the reason said.
    let idx = work.path().join("few-copies/index");
    let manifest = make_catalog(&work.path().join("few-copies"), 4, 14);
    let out = Command::new(bin()).current_dir(root()).args(["index"]).arg(&manifest).arg("--index").arg(&idx).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("4 products whose photos are copies of one another"), "{said}");
    assert!(knockoff::search::Calibration::load(&idx.join("calibration.json")).is_none(), "{said}");
    // Different shots of each product (no tile where another shot has it): held-out halves.
    let (cal, said) = index(make_shots(&work.path().join("shots"), 12, 4));
    assert!(said.contains("fitted on 48 held-out lookups"), "{said}");
    assert!(cal.queries[0].contains("other half") && cal.verdict.as_ref().is_some_and(|t| !t.on_views), "{cal:?}");
}

#[test]
fn shipped_default_calibration_loads_for_the_default_model() {
    let (cal, _) =
        knockoff::search::Calibration::find(std::path::Path::new("/nonexistent"), &root().join("models/efficientnet-lite0")).unwrap();
    assert_eq!(cal.model, "efficientnet-lite0");
    // Monotone in similarity and within [0, 1].
    let ps: Vec<f32> = (0..=20).map(|i| cal.mapping.apply(i as f32 / 20.0, 0.05)).collect();
    assert!(ps.windows(2).all(|w| w[1] >= w[0] - 1e-6) && ps.iter().all(|p| (0.0..=1.0).contains(p)), "{ps:?}");
    assert!(ps[20] > ps[0]);
}

#[test]
fn tune_cross_validates_applies_a_projection_with_its_own_calibration_and_can_be_undone() {
    let work = tempfile::tempdir().unwrap();
    split_catalog(work.path(), 10, 5, |l| l.contains("-04.jpg"), &[]);
    let idx = work.path().join("idx");
    let idx_s = idx.to_str().unwrap();
    let run = |args: &[&str]| Command::new(bin()).current_dir(root()).args(args).output().unwrap();
    let out = run(&["index", work.path().join("cat.csv").to_str().unwrap(), "--index", idx_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let default_cal = knockoff::search::Calibration::load(&root().join("models/efficientnet-lite0/calibration.json")).unwrap();
    // `index` ended by calibrating the index (10 products, 4 photos each): its photos of a
    // product are crops of one shot, copies of one another, so on synthetic views.
    let own = knockoff::search::Calibration::load(&idx.join("calibration.json")).expect("index calibrates itself");
    assert!(own.queries[0].contains("copies of one another") && own.presence.is_some(), "{own:?}");
    assert!(own.verdict.as_ref().is_some_and(|t| t.on_views), "{own:?}");
    assert_eq!(own.projection, None);

    let out = run(&["tune", "--index", idx_s, "--folds", "4", "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["applied"], true);
    assert_eq!(s["cross_validation"]["n_queries"], 40, "every catalog photo looked up once: {s}");
    for key in ["top1_raw", "top1_projected"] {
        let v = s["cross_validation"][key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    let id = s["projection"]["id"].as_str().unwrap().to_string();
    assert_eq!(s["projection"]["n_products"], 10);
    assert_eq!(s["projection"]["out_dim"], 128, "max(products - 1, 128)");
    // The calibration is the projection's own, and it replaces the model default: fitted,
    // like `index`'s, on synthetic views (its halves would be copies of one another).
    let cal = knockoff::search::Calibration::load(&idx.join("calibration.json")).unwrap();
    assert_eq!(cal.projection.as_deref(), Some(id.as_str()));
    assert_eq!(s["self_calibration"]["evidence"], "synthetic_views_over_copies", "{s}");
    assert!(cal.queries[0].contains("copies of one another") && cal.presence.is_some(), "{cal:?}");
    assert!(cal.verdict.as_ref().is_some_and(|t| t.on_views), "{cal:?}");
    let (found, _) =
        knockoff::search::Calibration::find_matching(&idx, &root().join("models/efficientnet-lite0"), "efficientnet-lite0", Some(&id))
            .unwrap();
    assert_eq!(found, cal);
    assert_ne!(found.mapping, default_cal.mapping);
    let stats: serde_json::Value = serde_json::from_slice(&run(&["stats", "--index", idx_s, "--json"]).stdout).unwrap();
    assert_eq!(stats["projection"]["id"], id.as_str());
    // Lookups go through the projection and still find the held-out photos' products.
    let out = run(&["eval", "--index", idx_s, "--queries", work.path().join("q.csv").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["recall_at_5"].as_f64().unwrap() >= 0.8, "{r}");

    // Undo: the projection goes, and its calibration no longer applies.
    assert!(run(&["tune", "--index", idx_s, "--off"]).status.success());
    assert!(!idx.join("projection.json").exists());
    let stats: serde_json::Value = serde_json::from_slice(&run(&["stats", "--index", idx_s, "--json"]).stdout).unwrap();
    assert!(stats["projection"].is_null());
    let (found, path) =
        knockoff::search::Calibration::find_matching(&idx, &root().join("models/efficientnet-lite0"), "efficientnet-lite0", None).unwrap();
    assert_eq!(path, root().join("models/efficientnet-lite0/calibration.json"), "the stale projected calibration is skipped");
    assert_eq!(found.mapping, default_cal.mapping);

    // Different shots of each product (not copies): tuned on its held-out halves, in the
    // projected space, every photo looked up; both labels, so counterfeit thresholds too.
    let shots_dir = work.path().join("shots");
    let shots = make_shots(&shots_dir, 10, 4);
    let shots_idx = shots_dir.join("idx");
    assert!(run(&["index", shots.to_str().unwrap(), "--index", shots_idx.to_str().unwrap()]).status.success());
    let out = run(&["tune", "--index", shots_idx.to_str().unwrap(), "--folds", "4", "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&s["applied"], &s["self_calibration"]["evidence"]), (&true.into(), &"held_out_halves".into()), "{s}");
    assert_eq!(s["self_calibration"]["n_lookups"], 40, "{s}");
    let cal = knockoff::search::Calibration::load(&shots_idx.join("calibration.json")).unwrap();
    assert_eq!(cal.projection.as_deref(), s["projection"]["id"].as_str());
    assert!(cal.queries[0].starts_with("self-calibration") && cal.presence.is_some(), "{:?}", cal.queries);
    let v = cal.verdict.as_ref().expect("verdict thresholds fitted");
    assert_eq!((v.counterfeit.len(), v.authentic.len()), (knockoff::fit::RISK_LEVELS.len(), knockoff::fit::RISK_LEVELS.len()), "{v:?}");

    // One photo per product: nothing to learn from, a clear refusal.
    let single = work.path().join("single");
    let head_rows: Vec<&str> = std::fs::read_to_string(work.path().join("q.csv")).unwrap().leak().lines().collect();
    std::fs::write(work.path().join("one.csv"), head_rows.join("\n") + "\n").unwrap();
    assert!(run(&["index", work.path().join("one.csv").to_str().unwrap(), "--index", single.to_str().unwrap()]).status.success());
    let out = run(&["tune", "--index", single.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("several photos per product"), "{}", String::from_utf8_lossy(&out.stderr));
}
