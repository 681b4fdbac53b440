//! What `knockoff serve` logs by default: one line per request (method,
//! route, status, ms, request id, key name — never the secret) and per job
//! start and end; `KNOCKOFF_LOG_FORMAT=json` makes every line one JSON
//! object; no colour codes in a file; other crates only at `warn`. And what
//! `/metrics` shows after a job, a refit and a lookup.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::replica::{free_addr, send, wait_up};
use common::{bin, fixture, make_catalog, root};

const SECRET: &str = "log-test-secret-7f3a";

#[test]
fn serve_logs_and_counts_requests_jobs_and_refits_one_json_line_each_without_secrets() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("serve.log");
    let addr = free_addr();
    let cfg = work.path().join("k.toml");
    std::fs::write(&cfg, "refit_interval_ms = 200\n").unwrap();
    let mut child = Command::new(bin())
        .current_dir(root())
        .args(["serve", "--create", "--index", work.path().join("idx").to_str().unwrap(), "--addr", &addr.to_string()])
        .args(["--config", cfg.to_str().unwrap()])
        .env("KNOCKOFF_API_KEYS", format!("ops:admin:{SECRET}"))
        .env("KNOCKOFF_LOG_FORMAT", "json")
        .env_remove("KNOCKOFF_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_up(addr);
    let at = |p: &str| format!("http://{addr}{p}");
    let auth = format!("Bearer {SECRET}");
    let manifest = make_catalog(&work.path().join("cat"), 6, 2);
    let text = std::fs::read_to_string(&manifest).unwrap().replace("img/", &format!("{}/img/", work.path().join("cat").display()));
    let (st, _, j) = send(ureq::post(&at("/v1/jobs/index")).set("Authorization", &auth), Some(("text/csv", text.as_bytes())));
    assert_eq!(st, 202, "{j}");
    let job = j["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, _, j) = send(ureq::get(&at(&format!("/v1/jobs/{job}"))).set("Authorization", &auth), None);
        if j["status"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "job stuck: {j}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // 12 images and no calibration of its own: the catalog is refitted.
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let (_, _, j) = send(ureq::get(&at("/v1/stats")).set("Authorization", &auth), None);
        if j["refits"]["finished"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no refit: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let photo = std::fs::read(fixture("photos/rocket.jpg")).unwrap();
    let req = ureq::post(&at("/v1/lookup")).set("Authorization", &auth).set("x-request-id", "trace-42");
    assert_eq!(send(req, Some(("image/jpeg", &photo))).0, 200);
    assert_eq!(send(ureq::post(&at("/v1/lookup")), Some(("image/jpeg", &photo))).0, 401);

    let metrics = ureq::get(&at("/metrics")).call().unwrap().into_string().unwrap();
    check_metrics(&metrics);

    // Lines are written as events happen: wait for the last request's line, then stop.
    let lines = || std::fs::read_to_string(&log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines().contains("\"status\":401") {
        assert!(Instant::now() < deadline, "no line for the refused request:\n{}", lines());
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = lines();
    assert!(!text.contains(SECRET), "the key's secret is never logged");
    assert!(!text.contains('\u{1b}'), "no colour codes in a file");
    let events: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"))).collect();
    let find = |what: &dyn Fn(&serde_json::Value) -> bool| events.iter().find(|e| what(e)).cloned();
    let lookup = find(&|e| e["message"] == "request" && e["request_id"] == "trace-42").expect("a line for the lookup");
    assert_eq!(
        (lookup["method"].as_str(), lookup["route"].as_str(), lookup["status"].as_u64()),
        (Some("POST"), Some("/v1/lookup"), Some(200)),
        "{lookup}"
    );
    assert_eq!(lookup["key"], "ops", "{lookup}");
    assert!(lookup["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{lookup}");
    let refused = find(&|e| e["message"] == "request" && e["status"] == 401).unwrap();
    assert_eq!(refused["key"], "-", "{refused}");
    assert!(refused["request_id"].as_str().is_some_and(|id| !id.is_empty()), "a request id is made up when none is sent: {refused}");
    assert!(find(&|e| e["message"] == "job started" && e["job"] == job.as_str()).is_some(), "{text}");
    let done = find(&|e| e["message"] == "job done" && e["job"] == job.as_str()).expect("a line when the job ends");
    assert_eq!(done["indexed"], 12, "{done}");
    assert!(find(&|e| e["message"] == "refit started").is_some(), "{text}");
    // Other crates (the graph library, the HTTP stack) stay below the default level.
    assert!(events.iter().all(|e| e["target"].as_str().is_some_and(|t| t.starts_with("knockoff"))), "{text}");
}

/// The metrics after one job of 12 images, a refit and one lookup.
fn check_metrics(metrics: &str) {
    let value = |series: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("knockoff_jobs_total{outcome=\"done\"}"), 1.0);
    assert_eq!(value("knockoff_job_items_total{outcome=\"indexed\"}"), 12.0);
    assert!(value("knockoff_refits_total{stage=\"finished\"}") >= 1.0);
    assert!(value("knockoff_calibration_age_seconds") >= 0.0);
    let total = |family: &str| -> f64 {
        metrics.lines().filter(|l| l.starts_with(family)).map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum()
    };
    assert_eq!(total("knockoff_lookup_verdicts_total{"), 1.0, "one lookup, one verdict:\n{metrics}");
    assert_eq!(total("knockoff_lookup_copy_checks_total{"), 1.0, "one lookup, one copy check (full or stopped at the gate):\n{metrics}");
    assert!(metrics.contains("knockoff_lookup_copies_found_total"), "{metrics}");
    assert_eq!(value("knockoff_queue_depth"), 0.0);
    assert_eq!(value("knockoff_queue_shed_total"), 0.0);
    assert!(value("knockoff_process_resident_memory_bytes") > 1e6);
    assert!(value("knockoff_process_open_fds") > 3.0);
    assert!(metrics.contains("knockoff_build_info{version=\"") && metrics.contains("model=\"efficientnet-lite0\"} 1"), "{metrics}");
}
