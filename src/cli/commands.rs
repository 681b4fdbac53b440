//! The subcommands' bodies: arguments in, one library call, the typed result
//! handed to [`super::print`].

use std::path::PathBuf;

use clap::parser::ValueSource;

use super::args::{
    BackupArgs, CalibrateArgs, DeleteArgs, EmbedArgs, EvalArgs, Global, IndexCmdArgs, IndexOnly, MigrateArgs, RestoreArgs, SearchArgs,
    ServeArgs, StatsArgs, TuneCmdArgs,
};
use super::print;
use crate::catalog::{Filter, IndexParams, OpenReport};
use crate::embed::{EmbedOptions, Embedder, PipelineOptions};
use crate::index::{open_registry, IndexSpec, OpenIndex};
use crate::ingest::{IngestOptions, SourceDefaults};
use crate::search::SearchRequest;

/// How a command runs its model: `sessions` pooled sessions, each with
/// `--threads` intra-op threads (default `intra_default`).
pub(super) fn embed_options(g: &Global, sessions: usize, intra_default: usize) -> EmbedOptions {
    let mut o = EmbedOptions { sessions, intra_threads: g.threads.unwrap_or(intra_default), ..Default::default() };
    o.limits.max_pixels = g.max_pixels.unwrap_or(crate::embed::DEFAULT_MAX_PIXELS);
    o
}

/// Bulk settings: one single-threaded session per core.
fn bulk(g: &Global) -> EmbedOptions {
    embed_options(g, crate::embed::available_cores(), 1)
}

pub(super) fn open(g: &Global, spec: &IndexSpec) -> anyhow::Result<OpenIndex> {
    let opened = crate::index::open(&open_registry(g.models.as_deref())?, spec)?;
    if let OpenReport::Rebuilt { points, reason } = &opened.report {
        if *points > 0 {
            eprintln!("note: {reason}; rebuilt the vector index from the store ({points} vectors)");
        }
    }
    Ok(opened)
}

pub fn embed(g: &Global, a: &EmbedArgs) -> anyhow::Result<i32> {
    let reg = open_registry(g.models.as_deref())?;
    let embedder = Embedder::load(reg.get(a.model.as_deref())?, &embed_options(g, 1, crate::embed::available_cores()))?;
    let results = crate::embed::embed_files(&embedder, &a.images, &PipelineOptions { batch_size: a.batch, ..Default::default() });
    print::embeddings(&embedder, &a.images, results)
}

pub fn models(g: &Global) -> anyhow::Result<i32> {
    let reg = open_registry(g.models.as_deref())?;
    Ok(print::models(&reg, &embed_options(g, 1, crate::embed::available_cores())))
}

pub fn index(g: &Global, a: &IndexCmdArgs) -> anyhow::Result<i32> {
    let mut spec = a.index.spec();
    spec.create = true;
    spec.params = IndexParams { m: a.m, ef_construction: a.ef_construction, ef_search: a.index.ef_search };
    // The source first: one that cannot be read creates no index.
    let defaults = SourceDefaults { label: a.label, brand: a.brand.clone(), ..Default::default() };
    let (items, row_errors) = crate::ingest::read_sources(std::slice::from_ref(&a.source), &defaults)?;
    let opened = open(g, &spec)?;
    let embedder = opened.embedder(&bulk(g))?;
    let mut opts = IngestOptions::default();
    // The operator's own manifest may point at intranet hosts.
    opts.fetch.allow_private = true;
    opts.pipeline.batch_size = a.batch;
    if let Some(w) = a.workers {
        opts.pipeline.workers = w;
    }
    opts.pipeline.inference_threads = crate::embed::available_cores();
    // Beside the index folder; on the shared backend (no folder of its own) in the current one.
    let errors_dir = opened.catalog.folder().map_or_else(std::path::PathBuf::new, std::path::Path::to_path_buf);
    opts.errors_file = Some(a.errors.clone().unwrap_or_else(|| errors_dir.join("ingest-errors.csv")));
    let report = crate::ingest::ingest(&opened.catalog, &embedder, items, &row_errors, &opts, |_| {})?;
    print::ingest_summary(&report);
    if !a.no_calibrate && report.counts.indexed > 0 {
        let _ = crate::fit::fit_index(&opened.catalog, Some(&embedder), &mut |line| eprintln!("{line}"));
    }
    Ok(i32::from(report.counts.failed > 0))
}

pub fn search(g: &Global, a: &SearchArgs) -> anyhow::Result<i32> {
    let opened = open(g, &a.index.spec())?;
    let embedder = opened.embedder(&embed_options(g, 1, crate::embed::available_cores()))?;
    let q = embedder.describe_file(&a.image)?;
    let req = SearchRequest {
        k: a.k,
        ef: a.ef,
        filter: Filter { brand: a.brand.clone(), label: a.label, category: a.category.clone() },
        second_best: a.second,
        ..Default::default()
    };
    let mut verdict = crate::search::calibration::verdict_config(&opened.catalog, &opened.manifest.dir, None);
    if a.no_copy_gate {
        verdict.copy.gate_inliers = None;
    }
    let answer = crate::search::lookup(&opened.catalog, &q, &req, &verdict)?;
    if a.json {
        print::json(
            &serde_json::json!({ "image": a.image.display().to_string(), "model": opened.catalog.model(), "matches": answer.matches, "p_counterfeit": answer.p_counterfeit, "p_authentic": answer.p_authentic, "p_no_match": answer.p_no_match, "verdict": answer.verdict, "summary": answer.summary, "evidence": answer.evidence, "reason": answer.reason, "copies": answer.copies }),
        )?;
    } else {
        print::lookup(&answer);
    }
    Ok(0)
}

/// A setting counts as given when it came from the command line or the
/// environment, not from its default value.
fn given<T: Clone + Send + Sync + 'static>(m: Option<&clap::ArgMatches>, id: &str) -> Option<T> {
    let m = m?;
    match m.value_source(id) {
        Some(ValueSource::CommandLine | ValueSource::EnvVariable) => m.get_one::<T>(id).cloned(),
        _ => None,
    }
}

pub fn serve(g: &Global, a: &ServeArgs, matches: Option<&clap::ArgMatches>) -> anyhow::Result<i32> {
    let file = match &a.config {
        Some(p) => crate::api::ConfigFile::load(p)?,
        None => crate::api::ConfigFile::default(),
    };
    let overrides = crate::api::Overrides {
        index: given::<PathBuf>(matches, "dir"),
        addr: a.addr,
        api_keys: a.api_keys.clone(),
        api_keys_file: a.api_keys_file.clone(),
        max_body_bytes: a.max_body_bytes,
        queue_depth: a.queue_depth,
        max_batch: a.max_batch,
        request_timeout_ms: a.request_timeout_ms,
        allow_private_urls: a.allow_private_urls,
        max_pixels: g.max_pixels,
    };
    if matches.and_then(|m| m.value_source("api_keys")) == Some(ValueSource::CommandLine) {
        tracing::warn!("--api-keys on the command line is visible to every local user (ps): use KNOCKOFF_API_KEYS or --api-keys-file");
    }
    let settings = crate::api::Settings::resolve(overrides, file)?;
    let registry = open_registry(g.models.as_deref())?;
    let spec = IndexSpec { create: a.create, ..a.index.spec() };
    let (state, resumed) = crate::api::start(&settings, &registry, &spec, g.threads)?;
    if resumed > 0 {
        tracing::info!("resuming {resumed} unfinished indexing job(s)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(settings.addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {} ({e}): another process has it, or use --addr / KNOCKOFF_ADDR", settings.addr),
            )
        })?;
        let (addr, model) = (listener.local_addr()?, state.embedder.name().to_string());
        tracing::info!("knockoff serving on http://{addr} (index {}, model {model})", state.catalog.location());
        crate::api::serve(listener, state).await
    })?;
    tracing::info!("knockoff stopped; index persisted");
    Ok(0)
}

pub fn eval(g: &Global, a: &EvalArgs) -> anyhow::Result<i32> {
    let tmp = tempfile::tempdir()?;
    let dir = a.use_index.clone().unwrap_or_else(|| tmp.path().join("index"));
    let opened = open(g, &IndexSpec { model: a.model.clone(), create: a.use_index.is_none(), ..IndexSpec::new(dir) })?;
    let embedder = opened.embedder(&bulk(g))?;
    let catalog = &opened.catalog;
    if a.use_index.is_none() {
        let mut opts = IngestOptions::default();
        opts.fetch.allow_private = true;
        opts.pipeline.inference_threads = crate::embed::available_cores();
        let r = crate::ingest::index_sources(catalog, &embedder, &a.catalogs, &SourceDefaults::default(), &opts)?;
        eprintln!("[eval] indexed {} catalog images ({} failed)", r.counts.indexed + r.counts.skipped, r.counts.failed);
        if a.tune {
            // A catalog without several photos per product cannot be tuned: evaluate it as is.
            match crate::fit::tune(catalog, Some(&embedder), &a.tune_args.options(), &mut |line| eprintln!("[tune] {line}")) {
                Ok(report) => eprintln!("[eval] tune: {}", serde_json::to_string(&report)?),
                Err(e) => eprintln!("[eval] tune: not applied: {e}"),
            }
        } else if !a.no_fit {
            // What `knockoff index` does at its end.
            let _ = crate::fit::fit_index(catalog, Some(&embedder), &mut |line| eprintln!("[eval] {line}"));
        }
    }
    let queries = read_queries(&a.queries)?;
    eprintln!("[eval] looking up {} queries", queries.len());
    let stated = crate::search::VerdictConfig { out_of_catalog_share: a.out_of_catalog_share, ..Default::default() };
    let mut verdict = crate::search::calibration::verdict_config(catalog, &opened.manifest.dir, Some(&stated));
    if a.no_copy_gate {
        verdict.copy.gate_inliers = None;
    }
    let opts = crate::eval::EvalOptions { k: a.k, verdict, concurrency: crate::embed::available_cores(), product_score: a.product_score };
    if let Some(networks) = a.networks {
        let o =
            crate::eval::networks::NetworkOptions { networks, reposts: a.reposts, unrelated: a.unrelated, filler: a.filler_cases, seed: 1 };
        let report = crate::eval::networks::measure(catalog, &embedder, &queries, &opts.verdict, &o, &mut |l| eprintln!("[eval] {l}"))?;
        let text = serde_json::to_string_pretty(&report)?;
        if let Some(p) = &a.json {
            std::fs::write(p, &text)?;
        }
        println!("{text}");
        return Ok(0);
    }
    if let Some(budget) = a.review_budget {
        let verdicts = || crate::search::calibration::verdict_config(catalog, &opened.manifest.dir, Some(&stated));
        let budget = crate::eval::review_loop::Budget { per_round: budget, audit: f64::from(a.review_audit_share.unwrap_or(0.0)) };
        let rounds = (budget, usize::from(a.review_rounds));
        let curve =
            crate::eval::review_loop::simulate(catalog, &embedder, &queries, &opts, rounds, &verdicts, &mut |l| eprintln!("[eval] {l}"))?;
        return print_review_curve(a, &curve, embedder.name());
    }
    let report = crate::eval::evaluate(catalog, &embedder, &queries, &opts)?;
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &a.json {
        std::fs::write(p, &text)?;
    }
    if let Some(p) = &a.per_query {
        print::json_lines(p, &report.records)?;
    }
    if let Some(p) = &a.report {
        std::fs::write(p, crate::eval::report::render(&report, catalog))?;
        eprintln!("[eval] report written to {}", p.display());
    }
    println!("{text}");
    Ok(0)
}

/// `eval --review-budget`'s output: `{"review_curve": [...]}` on stdout and in `--json`, the plot in `--report`.
fn print_review_curve(a: &EvalArgs, curve: &[crate::eval::review_loop::Round], model: &str) -> anyhow::Result<i32> {
    let text =
        serde_json::to_string_pretty(&serde_json::json!({ "model": model, "review_budget": a.review_budget, "review_curve": curve }))?;
    if let Some(p) = &a.json {
        std::fs::write(p, &text)?;
    }
    if let Some(p) = &a.report {
        let title = format!("review loop: {} reviews a round, {model}", a.review_budget.unwrap_or(0));
        std::fs::write(p, crate::eval::review_loop::render(curve, &title))?;
        eprintln!("[eval] report written to {}", p.display());
    }
    println!("{text}");
    Ok(0)
}

/// Query manifests for eval and calibrate; unreadable rows are reported and skipped.
fn read_queries(paths: &[PathBuf]) -> anyhow::Result<Vec<crate::ingest::Query>> {
    let (queries, errors) = crate::ingest::read_queries(paths)?;
    for e in errors {
        eprintln!("skipped query row: {e}");
    }
    Ok(queries)
}

pub fn calibrate(g: &Global, a: &CalibrateArgs) -> anyhow::Result<i32> {
    let opened = open(g, &a.index.spec())?;
    let embedder = opened.embedder(&bulk(g))?;
    let skipped = &mut |e| eprintln!("skipped query row: {e}");
    let cal = crate::fit::calibrate(&opened.catalog, &embedder, &a.queries, a.out.as_deref(), skipped)?;
    match &a.out {
        Some(out) => eprintln!("wrote {}", out.display()),
        None => eprintln!("wrote {}/{}", opened.catalog.location(), crate::catalog::files::CALIBRATION_FILE),
    }
    print::json(&cal)?;
    Ok(0)
}

pub fn tune(g: &Global, a: &TuneCmdArgs) -> anyhow::Result<i32> {
    let opened = open(g, &a.index.spec())?;
    if a.off {
        let removed = opened.catalog.clear_projection()?;
        eprintln!("{}", if removed { "projection removed; graph rebuilt from the model's vectors" } else { "no projection to remove" });
        return Ok(0);
    }
    // The model makes synthetic views when the catalog's photos copy one another;
    // without it (not installed) such a catalog is fitted on its halves.
    let embedder = opened
        .embedder(&bulk(g))
        .map_err(|e| eprintln!("[tune] model not at hand ({e}): a catalog whose photos copy one another is fitted on its halves"))
        .ok();
    let report = crate::fit::tune(&opened.catalog, embedder.as_ref(), &a.tune.options(), &mut |line| eprintln!("[tune] {line}"))?;
    print::json(&report)?;
    Ok(i32::from(!report.applied))
}

pub fn compact(g: &Global, a: &IndexOnly) -> anyhow::Result<i32> {
    let opened = open(g, &a.index.spec())?;
    let purged = opened.catalog.compact()?;
    eprintln!("compacted: removed {purged} deleted images; graph now holds {} vectors", opened.catalog.stats()?.graph_points);
    Ok(0)
}

pub fn stats(g: &Global, a: &StatsArgs) -> anyhow::Result<i32> {
    let opened = open(g, &a.index.spec())?;
    let s = opened.catalog.stats()?;
    let calibration = crate::search::calibration::describe(&opened.catalog, &opened.manifest.dir);
    if a.json {
        let mut v = serde_json::to_value(&s)?;
        v["calibration"] = serde_json::to_value(&calibration)?;
        print::json(&v)?;
    } else {
        print::stats(&opened.catalog.location(), &s);
        match &calibration {
            Some(c) => {
                println!("calibration {} (fitted {}: {})", c.file, c.fitted_at, c.fitted_on);
                println!("thresholds {}", c.thresholds);
            }
            None => println!("calibration none (the logistic default applies)"),
        }
    }
    Ok(0)
}

pub fn migrate(g: &Global, a: &MigrateArgs) -> anyhow::Result<i32> {
    let registry = open_registry(g.models.as_deref())?;
    if a.passwords_in_argv() {
        eprintln!("warning: engine passwords on the command line are visible to every local user (ps): use --from-shared / --to-shared with KNOCKOFF_STORE and KNOCKOFF_VECTORS");
    }
    let (from, to) = (a.source()?, a.target()?);
    eprintln!("[migrate] {from} -> {to}");
    let report = crate::index::migrate(&registry, &from, &to, &mut |line| eprintln!("[migrate] {line}"))?;
    print::json(&report)?;
    Ok(0)
}

pub fn backup(a: &BackupArgs) -> anyhow::Result<i32> {
    let from = a.from.location()?;
    eprintln!("[backup] {from} -> {}", a.dest.display());
    let manifest = crate::catalog::backup::backup(&from, &a.dest, &mut |n| {
        if n % 5000 < 500 {
            eprintln!("[backup] {n} images copied");
        }
    })?;
    print::json(&manifest)?;
    Ok(0)
}

pub fn restore(g: &Global, a: &RestoreArgs) -> anyhow::Result<i32> {
    let registry = open_registry(g.models.as_deref())?;
    let to = a.to.location()?;
    eprintln!("[restore] {} -> {to}", a.src.display());
    let report = crate::index::restore(&registry, &a.src, &to, &mut |line| eprintln!("[restore] {line}"))?;
    print::json(&report)?;
    Ok(0)
}

pub fn delete(g: &Global, a: &DeleteArgs) -> anyhow::Result<i32> {
    let opened = open(g, &a.index.spec())?;
    if let Some(p) = &a.product {
        // Deleted before (a retried delete): nothing to do, and no failure.
        match opened.catalog.delete_product(p) {
            Ok(n) => eprintln!("deleted product {p} ({n} images)"),
            Err(crate::catalog::CatalogError::ProductDeleted(_)) => eprintln!("product {p} was deleted already: nothing to do"),
            Err(e) => return Err(e.into()),
        }
    } else if let Some(id) = a.image {
        opened.catalog.delete_image(id)?;
        eprintln!("deleted image {id}");
    }
    Ok(0)
}

pub fn make_copies(a: &super::args::MakeCopiesArgs) -> anyhow::Result<i32> {
    let (items, errors) = crate::ingest::read_source(&a.photos, &crate::ingest::SourceDefaults::default())?;
    if let Some(e) = errors.first() {
        anyhow::bail!("{} rows of {} cannot be used, first: {e}", errors.len(), a.photos.display());
    }
    let summary = crate::eval::protocol::make_protocol(&items, &a.out, a.seed, a.per_product)?;
    print::json(&summary)?;
    Ok(0)
}
