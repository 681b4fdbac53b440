//! Webhooks: events reach loopback receivers signed as Standard Webhooks
//! (checked with the reference library), in order per case, at least once,
//! across a receiver that is down, one that answers 410 Gone, two senders
//! on one store, and a `knockoff serve` killed with SIGKILL and started again.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use knockoff::catalog::Catalog;
use knockoff::embed::Described;
use knockoff::review::{self, Decision, DecisionInput, ListingContext, Seen};
use knockoff::search::{lookup, SearchRequest, VerdictConfig};
use knockoff::webhooks::{self, Dispatcher, SendOptions, Target, WebhookConfig};

mod common;

use common::receiver::Receiver;
use common::replica::{free_addr, send, wait_up};
use common::synth::{images, near, opts};
use common::{backends, bin, eventually, fixture, root};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ALL: &[&str] = &["case.created", "case.decided", "job.finished", "catalog.refitted"];

fn target(name: &str, r: &Receiver, events: &[&str]) -> Target {
    let c = WebhookConfig {
        name: Some(name.into()),
        url: r.url(),
        secret: SECRET.into(),
        events: events.iter().map(|e| (*e).to_string()).collect(),
        min_p_counterfeit: None,
    };
    webhooks::targets(&[c], true).unwrap().remove(0)
}

fn quick() -> SendOptions {
    SendOptions { allow_private: true, timeout: Duration::from_secs(5), retry_base: Duration::from_millis(100), ..Default::default() }
}

/// Opens `b` with three products of three images, once it answers lookups (a shared catalog
/// on an engine that has just started may take a while to come into sync).
fn catalog(b: &common::Backend) -> Arc<Catalog> {
    let (cat, _) = b.open(opts()).unwrap();
    cat.add_images(&images(3, 3)).unwrap();
    let d = Described { vector: near(0, 1), copy: None, regions: Vec::new() };
    eventually("the catalog answers", || lookup(&cat, &d, &SearchRequest::default(), &VerdictConfig::default()).is_ok());
    Arc::new(cat)
}

/// Records a case for a listing photo near product `p`; returns its id.
fn record(cat: &Catalog, p: u64, seed: u64) -> i64 {
    let bytes = std::fs::read(fixture("photos/coffee.jpg")).unwrap();
    let v = near(p, seed);
    let d = Described { vector: v.clone(), copy: None, regions: Vec::new() };
    let answer = lookup(cat, &d, &SearchRequest::default(), &VerdictConfig::default()).unwrap();
    let context = ListingContext { listing_id: Some(format!("l-{seed}")), seller_id: Some("s1".into()), ..Default::default() };
    let sha = knockoff::util::sha256_hex(&bytes);
    let seen = Seen {
        photo: &bytes,
        sha256: &sha,
        embedding: &v,
        regions: &[],
        model: "test-model",
        answer: &answer,
        context: &context,
        calibration: None,
    };
    review::record(cat, &seen).unwrap()
}

/// Waits until the store knows `t` (its sender ran once: it subscribes from the newest event on).
fn registered(cat: &Catalog, t: &Target) {
    eventually("the sender registers its target", || cat.records().target_state(&t.name).unwrap().is_some());
}

/// (type, case id) of each delivered event, in delivery order, each event once.
fn delivered_events(r: &Receiver) -> Vec<(String, i64, String)> {
    let mut seen = HashSet::new();
    r.delivered()
        .into_iter()
        .filter(|d| seen.insert(d.id().to_string()))
        .map(|d| (d.kind(), d.json()["data"]["case_id"].as_i64().unwrap_or(-1), d.id().to_string()))
        .collect()
}

#[test]
fn events_reach_receivers_signed_in_order_while_another_is_down_or_gone() {
    for b in backends("webhooks") {
        let cat = catalog(&b);
        let (down, up) = (Receiver::start(503), Receiver::start(200));
        let (ta, tb) = (target("down", &down, ALL), target("up", &up, &["case.created", "case.decided"]));
        let _senders = Dispatcher::start(&cat, &[ta.clone(), tb.clone()], &quick());
        registered(&cat, &ta);
        registered(&cat, &tb);

        let cases: Vec<i64> = (0..3).map(|i| record(&cat, i, 50 + i)).collect();
        let decided = review::decide(
            &cat,
            knockoff::embed::DecodeLimits::default(),
            cases[1],
            1,
            Some("ana"),
            &DecisionInput { decision: Decision::Skip, product_id: None, note: None },
        )
        .unwrap();
        assert_eq!(decided.version, 2, "{}", b.name());

        // The healthy receiver gets all four while the other one is down.
        eventually("the healthy receiver gets every event", || delivered_events(&up).len() == 4);
        eventually("the down receiver is retried", || down.received().len() >= 3);
        assert!(down.delivered().is_empty());
        down.set_status(200);
        eventually("the receiver that came back gets every event", || delivered_events(&down).len() == 4);
        for r in [&up, &down] {
            let got = delivered_events(r);
            let created = got.iter().position(|e| e.0 == "case.created" && e.1 == cases[1]).unwrap();
            let decided = got.iter().position(|e| e.0 == "case.decided" && e.1 == cases[1]).unwrap();
            assert!(created < decided, "a case's events arrive in order: {got:?}");
        }
        // One id per event, the same on every attempt and at every receiver.
        let ids = |r: &Receiver| delivered_events(r).into_iter().map(|e| e.2).collect::<HashSet<_>>();
        assert_eq!(ids(&up), ids(&down));
        assert!(down.received().iter().all(|d| ids(&down).contains(d.id())), "a retry keeps its event's id");
        let body = up.delivered()[0].json();
        assert_eq!(body["data"]["listing"]["listing_id"], "l-50", "{body}");
        assert_eq!(body["data"]["url"], format!("/v1/cases/{}", cases[0]));

        // 410 Gone disables the target; enabling it sends what waited, in order.
        down.set_status(410);
        let late = record(&cat, 2, 99);
        eventually("a 410 disables the target", || {
            cat.records().target_state("down").unwrap().is_some_and(|s| s.disabled_at.is_some() && s.pending == 1)
        });
        assert!(webhooks::totals().iter().any(|(o, n)| *o == "disabled" && *n >= 1));
        down.set_status(200);
        assert!(webhooks::enable(&cat, std::slice::from_ref(&ta), "down").unwrap());
        eventually("an enabled target gets what waited", || delivered_events(&down).iter().any(|e| e.1 == late));
        assert!(!webhooks::enable(&cat, std::slice::from_ref(&ta), "nobody").unwrap());

        up.verify_all(SECRET);
        down.verify_all(SECRET);
    }
}

#[test]
fn a_case_created_below_a_targets_risk_is_not_sent_to_it() {
    let b = backends("webhooks_risk").remove(0);
    let cat = catalog(&b);
    let (all, risky) = (Receiver::start(200), Receiver::start(200));
    let mut high = target("risky", &risky, &["case.created", "case.decided"]);
    high.min_risk = Some(0.999);
    let every = target("all", &all, &["case.created"]);
    let _senders = Dispatcher::start(&cat, &[every.clone(), high.clone()], &quick());
    let low = record(&cat, 1, 7);
    let p = review::get(&cat, low).unwrap().p_counterfeit;
    assert!(p < 0.999, "{p}");
    eventually("the target without a minimum gets it", || delivered_events(&all).len() == 1);
    // Events are copied in order: once the decision arrives, the creation was passed over.
    let skip = DecisionInput { decision: Decision::Skip, product_id: None, note: None };
    review::decide(&cat, knockoff::embed::DecodeLimits::default(), low, 1, None, &skip).unwrap();
    eventually("the risky target gets the decision", || delivered_events(&risky).len() == 1);
    assert_eq!(delivered_events(&risky)[0].0, "case.decided");
    assert_eq!(risky.received().len(), 1);

    // Upkeep drops what every target has (the newest event stays); what comes next still goes out.
    let head = cat.records().events_head().unwrap();
    assert_eq!(cat.records().purge_events(0).unwrap(), 1, "the creation goes, the decision (the newest) stays");
    assert_eq!(cat.records().events_head().unwrap(), head);
    let next = record(&cat, 1, 8);
    eventually("an event after the purge is sent", || delivered_events(&all).iter().any(|e| e.1 == next));
    assert!(cat.records().events_head().unwrap() > head, "event numbers go on from where they were");
}

#[test]
fn a_slow_receiver_is_cut_off_and_retried_without_holding_up_another() {
    let b = backends("webhooks_slow").remove(0);
    let cat = catalog(&b);
    let (slow, quick_one) = (Receiver::start(200), Receiver::start(200));
    slow.set_delay_ms(3_000);
    let (ts, tq) = (target("slow", &slow, &["case.created"]), target("quick", &quick_one, &["case.created"]));
    let opts = SendOptions { timeout: Duration::from_millis(500), ..quick() };
    let _senders = Dispatcher::start(&cat, &[ts, tq], &opts);
    let cases: Vec<i64> = (0..3).map(|i| record(&cat, i, 400 + i)).collect();
    eventually("the quick receiver gets every event", || delivered_events(&quick_one).len() == 3);
    eventually("the slow one is tried again after its timeout", || slow.received().len() >= 2);
    let state = cat.records().target_state("slow").unwrap().unwrap();
    assert!(state.last_error.as_deref().is_some_and(|e| e.contains("timed out") || e.contains("Timeout")), "{state:?}");
    slow.set_delay_ms(0);
    eventually("the slow receiver gets them once it answers in time", || {
        cat.records().target_state("slow").unwrap().is_some_and(|s| s.pending == 0 && s.delivered == 3)
    });
    let got = delivered_events(&slow);
    assert!(cases.iter().all(|c| got.iter().any(|e| e.1 == *c)), "{got:?}");
}

#[test]
fn a_target_the_address_rules_refuse_stops_the_service_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("k.toml");
    std::fs::write(&cfg, format!("[[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"{SECRET}\"\nevents = [\"case.created\"]\n"))
        .unwrap();
    let out = Command::new(bin())
        .current_dir(root())
        .args(["serve", "--create", "--index"])
        .arg(dir.path().join("idx"))
        .args(["--addr", &free_addr().to_string(), "--config"])
        .arg(&cfg)
        .env_remove("KNOCKOFF_API_KEYS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("webhooks[0].url") && err.contains("loopback"), "{err}");
}

#[test]
fn two_senders_on_one_shared_store_deliver_each_event_once() {
    let Some(db) = common::SharedDb::create("webhooks_two") else { return };
    let b = common::Backend::Shared(db);
    let first = catalog(&b);
    let (second, _) = b.open(opts()).unwrap();
    let second = Arc::new(second);
    let d = Described { vector: near(0, 1), copy: None, regions: Vec::new() };
    eventually("the second replica answers", || lookup(&second, &d, &SearchRequest::default(), &VerdictConfig::default()).is_ok());
    let r = Receiver::start(200);
    let t = target("one", &r, &["case.created"]);
    let _a = Dispatcher::start(&first, std::slice::from_ref(&t), &quick());
    let _b = Dispatcher::start(&second, std::slice::from_ref(&t), &quick());
    registered(&first, &t);
    for i in 0..12 {
        record(if i % 2 == 0 { &first } else { &second }, i % 3, 300 + i);
    }
    eventually("every event is delivered", || delivered_events(&r).len() == 12);
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for d in r.received() {
        *per_id.entry(d.id().to_string()).or_default() += 1;
    }
    assert!(per_id.values().all(|n| *n == 1), "each event sent once: {per_id:?}");
}

/// Indexes the four fixture photos into `dir/idx` and writes a config with one webhook to `r`.
fn service_files(dir: &std::path::Path, r: &Receiver) -> (std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| fixture(&format!("photos/{n}.jpg")).display().to_string();
    let manifest = dir.join("m.csv");
    std::fs::write(
        &manifest,
        format!(
            "image,product_id,label,brand\n{},coffee-cup,authentic,Acme\n{},cat-poster,counterfeit,Acme\n{},astro-print,authentic,Nasa\n",
            p("coffee"),
            p("chelsea"),
            p("astronaut")
        ),
    )
    .unwrap();
    let idx = dir.join("idx");
    let out = Command::new(bin()).current_dir(root()).args(["index", manifest.to_str().unwrap(), "--index"]).arg(&idx).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg = dir.join("k.toml");
    let events = ALL.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        &cfg,
        format!("allow_private_urls = true\n[[webhooks]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nevents = [{events}]\n", r.url()),
    )
    .unwrap();
    (idx, cfg)
}

#[test]
fn no_event_is_lost_when_the_service_is_killed_and_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start(503);
    let (idx, cfg) = service_files(dir.path(), &r);
    let addr = free_addr();
    let serve = || {
        Command::new(bin())
            .current_dir(root())
            .args(["serve", "--index", idx.to_str().unwrap(), "--addr", &addr.to_string(), "--config", cfg.to_str().unwrap()])
            .env_remove("KNOCKOFF_API_KEYS")
            .env("KNOCKOFF_WEBHOOK_RETRY_MS", "200")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = serve();
    wait_up(addr);
    let at = |path: &str| format!("http://{addr}{path}");
    let (st, _, hooks) = send(ureq::get(&at("/v1/webhooks")), None);
    assert_eq!(st, 200, "{hooks}");
    assert_eq!(hooks[0]["events"].as_array().map(Vec::len), Some(4), "{hooks}");
    assert!(!hooks.to_string().contains("MfKQ"), "the secret is never shown");
    let rocket = std::fs::read(fixture("photos/rocket.jpg")).unwrap();
    let mut cases = Vec::new();
    for i in 0..3 {
        let (st, _, j) = send(ureq::post(&at(&format!("/v1/lookup?listing_id=l{i}&seller_id=s{i}"))), Some(("image/jpeg", &rocket)));
        assert_eq!(st, 200, "{j}");
        cases.push(j["case_id"].as_i64().unwrap_or_else(|| panic!("a case id: {j}")));
    }
    let (st, _, job) = send(ureq::post(&at("/v1/jobs/index")), Some(("text/csv", b"image,product_id,label\nnot-there.jpg,x,authentic\n")));
    assert_eq!(st, 202, "{job}");
    eventually("the job ends", || send(ureq::get(&at(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))), None).2["status"] == "failed");
    eventually("the receiver is tried while it is down", || r.received().len() >= 2);

    // SIGKILL with every event still waiting in the outbox; the receiver comes back; so does the service.
    child.kill().unwrap();
    child.wait().unwrap();
    r.set_status(200);
    let mut child = serve();
    wait_up(addr);
    eventually("every event arrives after the restart", || delivered_events(&r).len() >= 4);
    let got = delivered_events(&r);
    let kinds: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
    for c in &cases {
        assert!(got.iter().any(|e| e.0 == "case.created" && e.1 == *c), "case {c} created: {kinds:?}");
    }
    let finished: Vec<_> = r.delivered().into_iter().filter(|d| d.kind() == "job.finished").collect();
    assert_eq!(finished[0].json()["data"]["job_id"], job["id"], "{kinds:?}");
    assert_eq!(finished[0].json()["data"]["status"], "failed");
    // Retries before the crash carried the ids delivered after it: the receiver de-duplicates by them.
    let ids: HashSet<String> = got.iter().map(|e| e.2.clone()).collect();
    assert!(r.received().iter().all(|d| ids.contains(d.id())), "an event keeps its id across the restart");
    let metrics = ureq::get(&at("/metrics")).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("knockoff_webhook_deliveries_total{outcome=\"delivered\"}"), "{metrics}");
    r.verify_all(SECRET);
    child.kill().unwrap();
    child.wait().unwrap();
}
