//! The `knockoff` command line: parses arguments and calls the library.
//! Each subcommand is a thin wrapper; the work lives in the modules.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::catalog::{Catalog, CatalogOptions, Filter, IndexParams, Label, Store};
use crate::embed::{self, EmbedError, EmbedOptions, Embedder, ModelRegistry, PipelineOptions, Prepared};

#[derive(Debug, Parser)]
#[command(name = "knockoff", version, about = "Counterfeit detector: match listing photos against a brand catalog")]
pub struct Cli {
    /// Folder holding models/<name>/model.toml (default: ./models found from the current or executable's folder).
    #[arg(long, global = true, env = "KNOCKOFF_MODELS")]
    pub models: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per inference (default: all cores).
    #[arg(long, global = true, env = "KNOCKOFF_THREADS")]
    pub threads: Option<usize>,
    /// Largest image accepted, in pixels (width × height), checked before decoding.
    /// (Default 40,000,000; `knockoff serve` also reads `max_pixels` from its config file.)
    #[arg(long, global = true, env = "KNOCKOFF_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Embed images and print one JSON line per image.
    Embed {
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Model name (see `knockoff models`).
        #[arg(long)]
        model: Option<String>,
        /// Print JSON lines (the default; kept for scripts that pass it).
        #[arg(long)]
        json: bool,
        /// Images per model call.
        #[arg(long, default_value_t = 16)]
        batch: usize,
    },
    /// List installed models and whether each one loads.
    Models,
    /// Index a catalog: a manifest (CSV / JSON Lines) or a folder with one sub-folder per product.
    Index {
        source: PathBuf,
        #[command(flatten)]
        index: IndexArgs,
        /// Label for rows (or folders) that do not give one.
        #[arg(long)]
        label: Option<Label>,
        /// Brand for rows (or folders) that do not give one.
        #[arg(long)]
        brand: Option<String>,
        /// Images per model call.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Decode workers (default: half the cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Errors file (CSV); default <index>/ingest-errors.csv.
        #[arg(long)]
        errors: Option<PathBuf>,
        /// HNSW M, for a new index.
        #[arg(long, default_value_t = IndexParams::default().m)]
        m: usize,
        /// HNSW ef_construction, for a new index.
        #[arg(long, default_value_t = IndexParams::default().ef_construction)]
        ef_construction: usize,
    },
    /// Find the catalog products nearest to a photo.
    Search {
        image: PathBuf,
        #[command(flatten)]
        index: IndexArgs,
        /// Number of products.
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// HNSW ef for this query.
        #[arg(long)]
        ef: Option<usize>,
        #[arg(long)]
        brand: Option<String>,
        #[arg(long)]
        label: Option<Label>,
        #[arg(long)]
        category: Option<String>,
        /// Also show each product's second-best image.
        #[arg(long)]
        second: bool,
        #[arg(long)]
        json: bool,
    },
    /// Serve the HTTP API on the index.
    Serve {
        #[command(flatten)]
        index: IndexArgs,
        /// TOML configuration file (flags and KNOCKOFF_* variables override it).
        #[arg(long, env = "KNOCKOFF_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:8080; non-loopback needs API keys).
        #[arg(long, env = "KNOCKOFF_ADDR")]
        addr: Option<std::net::SocketAddr>,
        /// API keys: name:role:secret,... (role read or admin).
        #[arg(long, env = "KNOCKOFF_API_KEYS", hide_env_values = true)]
        api_keys: Option<String>,
        /// Largest request body in bytes (default 20 MB).
        #[arg(long, env = "KNOCKOFF_MAX_BODY_BYTES")]
        max_body_bytes: Option<usize>,
        /// Lookups waiting for inference before new ones get 503 (default 64).
        #[arg(long, env = "KNOCKOFF_QUEUE_DEPTH")]
        queue_depth: Option<usize>,
        /// Most photos in one batch lookup (default 32).
        #[arg(long, env = "KNOCKOFF_MAX_BATCH")]
        max_batch: Option<usize>,
        /// Per-request timeout in milliseconds (default 30000).
        #[arg(long, env = "KNOCKOFF_REQUEST_TIMEOUT_MS")]
        request_timeout_ms: Option<u64>,
        /// Let URL lookups and jobs fetch from private, loopback and link-local addresses.
        #[arg(long, env = "KNOCKOFF_ALLOW_PRIVATE_URLS")]
        allow_private_urls: Option<bool>,
    },
    /// Evaluate retrieval, calibration and verdicts: index CATALOG, look up every QUERIES photo,
    /// print one JSON object (progress on stderr).
    Eval {
        /// Catalog manifest(s); rows of several are combined.
        #[arg(long = "catalog", required_unless_present = "use_index")]
        catalogs: Vec<PathBuf>,
        /// Query manifest(s); rows with an empty product_id are distractors.
        #[arg(long = "queries", required = true)]
        queries: Vec<PathBuf>,
        /// Use this existing index instead of indexing --catalog into a temporary one.
        #[arg(long = "index")]
        use_index: Option<PathBuf>,
        /// Model for the temporary index (default: the default model; `--index` keeps its own).
        #[arg(long)]
        model: Option<String>,
        /// Also write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an HTML report with plots and the worst mistakes (self-contained).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Matches considered for the verdict (and recall@k uses 1 and 5).
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// Product ranking score: best (best image) or topN (mean of its best N images).
        #[arg(long, default_value = "best")]
        product_score: crate::search::ProductScore,
        /// Run `knockoff tune` on the temporary index before the lookups.
        #[arg(long, conflicts_with = "use_index")]
        tune: bool,
        #[command(flatten)]
        tune_args: TuneArgs,
    },
    /// Fit the confidence calibration of an index from labelled query photos; lookups then use it.
    Calibrate {
        /// Query manifest(s) (labelled photos not in the index).
        #[arg(long = "queries", required = true)]
        queries: Vec<PathBuf>,
        #[command(flatten)]
        index: IndexArgs,
        /// Write here instead of <index>/calibration.json.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Cost of an `uncertain` verdict relative to a wrong one (1), for fitting the verdict margin.
        #[arg(long, default_value_t = 0.5)]
        uncertain_cost: f64,
    },
    /// Learn a projection from the catalog's own labelled photos (several per product), check it by
    /// cross-validation, apply it to the index and calibrate confidence in the new space.
    Tune {
        #[command(flatten)]
        index: IndexArgs,
        #[command(flatten)]
        tune: TuneArgs,
        /// Remove the projection instead (the graph goes back to the model's own vectors).
        #[arg(long, conflicts_with = "force")]
        off: bool,
    },
    /// Rebuild the vector graph without deleted images.
    Compact {
        #[command(flatten)]
        index: IndexArgs,
    },
    /// Counts, index parameters and disk use.
    Stats {
        #[command(flatten)]
        index: IndexArgs,
        #[arg(long)]
        json: bool,
    },
    /// Delete a product (all its images) or one image.
    Delete {
        #[command(flatten)]
        index: IndexArgs,
        #[arg(long, conflicts_with = "image", required_unless_present = "image")]
        product: Option<String>,
        #[arg(long)]
        image: Option<i64>,
    },
    /// Benchmark: HNSW build / query / persistence on raw little-endian f32 files (prints JSON).
    #[command(hide = true)]
    BenchAnn {
        /// Base vectors (n × dim f32).
        base: PathBuf,
        /// Query vectors (q × dim f32).
        queries: PathBuf,
        /// Exact neighbours (q × 10 i32), for recall@10.
        truth: PathBuf,
        #[arg(long)]
        dim: usize,
        #[arg(long, default_value_t = 16)]
        m: usize,
        #[arg(long, default_value_t = 200)]
        ef_construction: usize,
        #[arg(long, default_value_t = 64)]
        ef_search: usize,
    },
    /// Benchmark: library lookup throughput (read + decode + embed + search), no HTTP (prints JSON).
    #[command(hide = true)]
    BenchLookup {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        index: IndexArgs,
        /// Concurrent lookups (threads), each with its own single-threaded session.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Lookups in total.
        #[arg(long, default_value_t = 400)]
        requests: usize,
    },
    /// Benchmark: end-to-end embedding throughput on image files (prints JSON).
    #[command(hide = true)]
    BenchEmbed {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Decode/preprocess worker threads for the pipelined run (0: sequential only).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Sessions (and inference threads) for the pipelined run.
        #[arg(long, default_value_t = 1)]
        sessions: usize,
    },
}

/// Where the index lives and which model it uses.
#[derive(Debug, Clone, clap::Args)]
pub struct IndexArgs {
    /// Index folder.
    #[arg(long = "index", env = "KNOCKOFF_INDEX", default_value = "index")]
    pub dir: PathBuf,
    /// Model (a new index uses the default model; an existing one keeps its own).
    #[arg(long)]
    pub model: Option<String>,
    /// HNSW ef_search default for queries.
    #[arg(long, default_value_t = IndexParams::default().ef_search)]
    pub ef_search: usize,
    /// Compact by itself when deleted images pass this share of the graph.
    #[arg(long, default_value_t = 0.2)]
    pub auto_compact: f64,
}

/// Settings of `knockoff tune` (and `eval --tune`).
#[derive(Debug, Clone, clap::Args)]
pub struct TuneArgs {
    /// Shrinkage of the within-product covariance towards the identity.
    #[arg(long, default_value_t = crate::catalog::FitOptions::default().shrinkage)]
    pub shrinkage: f64,
    /// Output dimensions (default: max(products - 1, 128), at most the model's).
    #[arg(long)]
    pub dims: Option<usize>,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// At most this many cross-validation lookups (spread evenly over the folds).
    #[arg(long, default_value_t = 5000)]
    pub cv_lookups: usize,
    /// Apply the projection even when cross-validation says it does not help.
    #[arg(long)]
    pub force: bool,
    /// Cost of an `uncertain` verdict relative to a wrong one (1), for fitting the verdict margin.
    #[arg(long, default_value_t = 0.5)]
    pub uncertain_cost: f64,
}

pub fn main() -> i32 {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KNOCKOFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ort=error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Opens the models folder named on the command line or found next to the project.
pub fn open_registry(models: &Option<PathBuf>) -> Result<ModelRegistry, EmbedError> {
    let dir = match models {
        Some(d) => d.clone(),
        None => crate::util::find_project_dir("models").ok_or_else(|| EmbedError::Manifest {
            path: PathBuf::from("models"),
            detail: "no models/ folder found; pass --models DIR or run from the project folder".into(),
        })?,
    };
    ModelRegistry::open(&dir)
}

fn embed_options(cli: &Cli) -> EmbedOptions {
    let mut o = EmbedOptions::default();
    if let Some(t) = cli.threads {
        o.intra_threads = t;
    }
    o.limits.max_pixels = cli.max_pixels.unwrap_or(embed::decode_default_max_pixels());
    o
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Embed { images, model, json: _, batch } => {
            let reg = open_registry(&cli.models)?;
            let manifest = reg.get(model.as_deref())?;
            let embedder = Embedder::load(manifest, &embed_options(&cli))?;
            cmd_embed(&embedder, images, *batch)
        }
        Command::Models => cmd_models(&cli),
        Command::Index { source, index, label, brand, batch, workers, errors, m, ef_construction } => {
            let params = IndexParams { m: *m, ef_construction: *ef_construction, ef_search: index.ef_search };
            let (catalog, embedder) = open_catalog(&cli, index, params, true)?;
            let embedder = embedder.expect("asked for an embedder");
            let defaults = crate::ingest::SourceDefaults { label: *label, brand: brand.clone(), ..Default::default() };
            let (items, row_errors) = crate::ingest::read_source(source, &defaults)?;
            let mut opts = crate::ingest::IngestOptions::default();
            // The operator's own manifest may point at intranet hosts.
            opts.fetch.allow_private = true;
            opts.pipeline.batch_size = *batch;
            if let Some(w) = workers {
                opts.pipeline.workers = *w;
            }
            opts.pipeline.inference_threads = embedder_sessions();
            opts.errors_file = Some(errors.clone().unwrap_or_else(|| index.dir.join("ingest-errors.csv")));
            let r = crate::ingest::ingest(&catalog, &embedder, items, row_errors, &opts, |_| {})?;
            eprintln!(
                "indexed {} new images, skipped {} already indexed, {} failed, in {:.1}s ({:.1} images/s)",
                r.counts.indexed,
                r.counts.skipped,
                r.counts.failed,
                r.seconds,
                (r.counts.indexed + r.counts.skipped) as f64 / r.seconds.max(1e-9)
            );
            for e in r.errors.iter().take(10) {
                eprintln!("  failed: {}", e.reason);
            }
            if let Some(f) = &r.errors_file {
                eprintln!("all {} errors are listed in {}", r.errors.len(), f.display());
            }
            Ok(if r.counts.failed > 0 { 1 } else { 0 })
        }
        Command::Search { image, index, k, ef, brand, label, category, second, json } => {
            let (catalog, embedder) = open_catalog(&cli, index, IndexParams::default(), true)?;
            let embedder = embedder.expect("asked for an embedder");
            let q = embedder.embed_file(image)?;
            let req = crate::search::SearchRequest {
                k: *k,
                ef: *ef,
                filter: Filter { brand: brand.clone(), label: *label, category: category.clone() },
                second_best: *second,
                ..Default::default()
            };
            let matches = crate::search::search_products(&catalog, &q, &req);
            if *json {
                println!(
                    "{}",
                    serde_json::to_string(
                        &serde_json::json!({ "image": image.display().to_string(), "model": catalog.model(), "matches": matches })
                    )?
                );
            } else if matches.is_empty() {
                println!("no match (the index is empty or nothing passes the filters)");
            } else {
                for (i, m) in matches.iter().enumerate() {
                    let p = &m.product;
                    print!(
                        "{:>2}. {:<36} {:<11} sim {:.3}  image {}",
                        i + 1,
                        p.product_id,
                        p.label.as_str(),
                        m.best.similarity,
                        m.best.image_id
                    );
                    if let Some(s) = &m.second {
                        print!("  (2nd image {} sim {:.3})", s.image_id, s.similarity);
                    }
                    println!("  {}", [p.brand.as_deref(), p.name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" / "));
                }
            }
            Ok(0)
        }
        Command::Serve {
            index,
            config,
            addr,
            api_keys,
            max_body_bytes,
            queue_depth,
            max_batch,
            request_timeout_ms,
            allow_private_urls,
        } => {
            let file = match config {
                Some(p) => crate::api::config::ConfigFile::load(p).map_err(anyhow::Error::msg)?,
                None => Default::default(),
            };
            let mut keys = crate::api::Keys::from_env_value(api_keys.as_deref().unwrap_or("")).map_err(anyhow::Error::msg)?;
            for k in &file.api_keys {
                keys.add_hashed(&k.name, &k.role, &k.sha256).map_err(anyhow::Error::msg)?;
            }
            let addr = addr.or(file.addr).unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8080)));
            crate::api::check_bind(&addr, &keys).map_err(anyhow::Error::msg)?;
            let d = crate::api::ServiceConfig::default();
            let config = crate::api::ServiceConfig {
                max_body_bytes: max_body_bytes.or(file.max_body_bytes).unwrap_or(d.max_body_bytes),
                queue_depth: queue_depth.or(file.queue_depth).unwrap_or(d.queue_depth),
                max_batch: max_batch.or(file.max_batch).unwrap_or(d.max_batch),
                request_timeout: request_timeout_ms
                    .or(file.request_timeout_ms)
                    .map(std::time::Duration::from_millis)
                    .unwrap_or(d.request_timeout),
                allow_private_urls: allow_private_urls.or(file.allow_private_urls).unwrap_or(d.allow_private_urls),
                verdict: file.verdict.clone().unwrap_or(d.verdict.clone()),
                ..d
            };
            let mut index = index.clone();
            if let (Some(dir), true) =
                (&file.index, std::env::var_os("KNOCKOFF_INDEX").is_none() && index.dir == std::path::Path::new("index"))
            {
                index.dir = dir.clone();
            }
            let (catalog, _) = open_catalog(&cli, &index, IndexParams::default(), false)?;
            let reg = open_registry(&cli.models)?;
            let threads = config.inference_threads;
            let mut opts = EmbedOptions { sessions: threads, intra_threads: cli.threads.unwrap_or(1), ..embed_options(&cli) };
            if let (None, Some(p)) = (cli.max_pixels, file.max_pixels) {
                opts.limits.max_pixels = p;
            }
            let embedder = std::sync::Arc::new(Embedder::load(reg.get(Some(catalog.model()))?, &opts)?);
            let mut config = config;
            // Fitted thresholds apply unless the config file sets its own [verdict].
            let fitted = verdict_for(&catalog, embedder.manifest());
            match file.verdict {
                Some(_) => config.verdict.calibration = fitted.calibration,
                None => config.verdict = fitted,
            }
            let pool = crate::api::InferencePool::new(embedder.clone(), threads, config.queue_depth);
            let state = std::sync::Arc::new(crate::api::AppState {
                catalog: std::sync::Arc::new(catalog),
                embedder,
                pool,
                keys,
                config,
                metrics: Default::default(),
                jobs: Default::default(),
            });
            let resumed = state.start_jobs()?;
            if resumed > 0 {
                eprintln!("resuming {resumed} unfinished indexing job(s)");
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                eprintln!(
                    "knockoff serving on http://{} (index {}, model {})",
                    listener.local_addr()?,
                    index.dir.display(),
                    state.embedder.name()
                );
                crate::api::serve(listener, state).await
            })?;
            eprintln!("knockoff stopped; index persisted");
            Ok(0)
        }
        Command::Tune { index, tune, off } => {
            let (catalog, _) = open_catalog(&cli, index, IndexParams::default(), false)?;
            if *off {
                let removed = catalog.clear_projection()?;
                eprintln!(
                    "{}",
                    if removed { "projection removed; graph rebuilt from the model's vectors" } else { "no projection to remove" }
                );
                return Ok(0);
            }
            let summary = run_tune(&catalog, tune)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(if summary["applied"] == serde_json::Value::Bool(true) { 0 } else { 1 })
        }
        Command::Eval { catalogs, queries, use_index, model, json, report: html, k, product_score, tune, tune_args } => {
            let tmp = tempfile::tempdir()?;
            let args = IndexArgs {
                dir: use_index.clone().unwrap_or_else(|| tmp.path().join("index")),
                model: model.clone(),
                ef_search: IndexParams::default().ef_search,
                auto_compact: 0.2,
            };
            let (catalog, embedder) = open_catalog(&cli, &args, IndexParams::default(), true)?;
            let embedder = embedder.expect("asked for an embedder");
            if use_index.is_none() {
                let (mut items, mut errs) = (Vec::new(), Vec::new());
                for c in catalogs {
                    let (i, e) = crate::ingest::read_source(c, &Default::default())?;
                    items.extend(i);
                    errs.extend(e);
                }
                let mut opts = crate::ingest::IngestOptions::default();
                opts.fetch.allow_private = true;
                opts.pipeline.inference_threads = embedder_sessions();
                let r = crate::ingest::ingest(&catalog, &embedder, items, errs, &opts, |_| {})?;
                eprintln!("[eval] indexed {} catalog images ({} failed)", r.counts.indexed + r.counts.skipped, r.counts.failed);
                if *tune {
                    // A catalog without several photos per product cannot be tuned: evaluate it as is.
                    match run_tune(&catalog, tune_args) {
                        Ok(summary) => eprintln!("[eval] tune: {summary}"),
                        Err(e) => eprintln!("[eval] tune: not applied: {e}"),
                    }
                }
            }
            let qs = read_queries(queries)?;
            eprintln!("[eval] looking up {} queries", qs.len());
            let verdict = verdict_for(&catalog, embedder.manifest());
            let opts = crate::eval::EvalOptions { k: *k, verdict, concurrency: embedder_sessions(), product_score: *product_score };
            let report = crate::eval::evaluate(&catalog, &embedder, &qs, &opts)?;
            let text = serde_json::to_string_pretty(&report)?;
            if let Some(p) = json {
                std::fs::write(p, &text)?;
            }
            if let Some(p) = html {
                std::fs::write(p, crate::eval::report::render(&report, &catalog))?;
                eprintln!("[eval] report written to {}", p.display());
            }
            println!("{text}");
            Ok(0)
        }
        Command::Calibrate { queries, index, out, uncertain_cost } => {
            let (catalog, embedder) = open_catalog(&cli, index, IndexParams::default(), true)?;
            let embedder = embedder.expect("asked for an embedder");
            if catalog.stats()?.counts.images == 0 {
                anyhow::bail!("index {} is empty: index a catalog first", index.dir.display());
            }
            let qs = read_queries(queries)?;
            let opts = crate::eval::EvalOptions {
                k: 5,
                verdict: Default::default(),
                concurrency: embedder_sessions(),
                product_score: Default::default(),
            };
            let report = crate::eval::evaluate(&catalog, &embedder, &qs, &opts)?;
            let mut label_of = std::collections::HashMap::new();
            for (truth, top) in &report.lookups {
                for id in std::iter::once(truth).chain(top.iter().map(|(id, _)| id)) {
                    if !label_of.contains_key(id) {
                        if let Some(p) = catalog.product(id)? {
                            label_of.insert(id.clone(), p.label);
                        }
                    }
                }
            }
            let path = out.clone().unwrap_or_else(|| index.dir.join(crate::search::calibration::CALIBRATION_FILE));
            let cal = fit_and_save_calibration(
                &catalog,
                &report.samples,
                |mapping| crate::eval::fit_verdict_from_lookups(&report.lookups, &label_of, mapping, *uncertain_cost),
                queries.iter().map(|q| q.display().to_string()).collect(),
                &path,
            )?;
            eprintln!("wrote {}", path.display());
            println!("{}", serde_json::to_string_pretty(&cal)?);
            Ok(0)
        }
        Command::Compact { index } => {
            let (catalog, _) = open_catalog(&cli, index, IndexParams::default(), false)?;
            let purged = catalog.compact()?;
            eprintln!("compacted: removed {purged} deleted images; graph now holds {} vectors", catalog.stats()?.graph_points);
            Ok(0)
        }
        Command::Stats { index, json } => {
            let (catalog, _) = open_catalog(&cli, index, IndexParams::default(), false)?;
            let s = catalog.stats()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("index      {}", catalog.dir().display());
                println!("model      {} ({}-d)", s.model, s.dim);
                println!("products   {}", s.counts.products);
                println!("images     {} (graph {}, tombstones {})", s.counts.images, s.graph_points, s.counts.tombstones);
                for (l, n) in &s.counts.per_label {
                    println!("  {l:<12} {n} products");
                }
                for (b, n) in s.counts.per_brand.iter().take(20) {
                    println!("  brand {:<20} {n} products", if b.is_empty() { "(none)" } else { b });
                }
                println!("hnsw       M {} ef_construction {} ef_search {}", s.params.m, s.params.ef_construction, s.params.ef_search);
                match &s.projection {
                    Some(p) => println!(
                        "projection {} ({} → {} dims), fitted {} on {} photos of {} products",
                        p.id, p.in_dim, p.out_dim, p.fitted_at, p.n_images, p.n_products
                    ),
                    None => println!("projection none (knockoff tune learns one from several photos per product)"),
                }
                println!("disk       {:.1} MB", s.disk_bytes as f64 / 1e6);
            }
            Ok(0)
        }
        Command::Delete { index, product, image } => {
            let (catalog, _) = open_catalog(&cli, index, IndexParams::default(), false)?;
            match (product, image) {
                (Some(p), _) => {
                    let n = catalog.delete_product(p)?;
                    eprintln!("deleted product {p} ({n} images)");
                }
                (None, Some(id)) => {
                    catalog.delete_image(*id)?;
                    eprintln!("deleted image {id}");
                }
                (None, None) => unreachable!("clap requires one"),
            }
            Ok(0)
        }
        Command::BenchAnn { base, queries, truth, dim, m, ef_construction, ef_search } => {
            let params = IndexParams { m: *m, ef_construction: *ef_construction, ef_search: *ef_search };
            let report = crate::catalog::vectors::bench_ann(base, queries, truth, *dim, params)?;
            println!("{report}");
            Ok(0)
        }
        Command::BenchLookup { images, index, concurrency, requests } => {
            let (catalog, _) = open_catalog(&cli, index, IndexParams::default(), false)?;
            let reg = open_registry(&cli.models)?;
            let c = (*concurrency).max(1);
            let opts = EmbedOptions { sessions: c, intra_threads: cli.threads.unwrap_or(1), ..embed_options(&cli) };
            let embedder = Embedder::load(reg.get(Some(catalog.model()))?, &opts)?;
            let bodies: Vec<Vec<u8>> = images.iter().map(std::fs::read).collect::<Result<_, _>>()?;
            let next = std::sync::atomic::AtomicUsize::new(0);
            let t0 = std::time::Instant::now();
            let per: Vec<f64> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..c)
                    .map(|_| {
                        sc.spawn(|| {
                            let mut lat = Vec::new();
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                if i >= *requests {
                                    break lat;
                                }
                                let t = std::time::Instant::now();
                                if let Ok(v) = embedder.embed_bytes(&bodies[i % bodies.len()], "bench") {
                                    let _ = crate::search::search_products(&catalog, &v, &Default::default());
                                }
                                lat.push(t.elapsed().as_secs_f64());
                            }
                        })
                    })
                    .collect();
                hs.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
            });
            let secs = t0.elapsed().as_secs_f64();
            let mut sorted = per.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "{}",
                serde_json::json!({ "concurrency": c, "requests": per.len(), "per_s": per.len() as f64 / secs,
                    "p50_ms": sorted.get(sorted.len() / 2).copied().unwrap_or(0.0) * 1e3,
                    "mean_ms": per.iter().sum::<f64>() / per.len().max(1) as f64 * 1e3 })
            );
            Ok(0)
        }
        Command::BenchEmbed { images, model, batch, workers, sessions } => {
            let reg = open_registry(&cli.models)?;
            let opts = EmbedOptions { sessions: *sessions, ..embed_options(&cli) };
            let embedder = Embedder::load(reg.get(model.as_deref())?, &opts)?;
            cmd_bench_embed(&embedder, images, *batch, *workers, *sessions)
        }
    }
}

/// One line of `knockoff embed` output.
#[derive(serde::Serialize)]
struct EmbeddingLine<'a> {
    image: String,
    model: &'a str,
    dim: usize,
    embedding: &'a [f32],
}

fn cmd_embed(embedder: &Embedder, images: &[PathBuf], batch: usize) -> anyhow::Result<i32> {
    let mut results: Vec<Option<Result<Vec<f32>, EmbedError>>> = (0..images.len()).map(|_| None).collect();
    let opts = PipelineOptions { batch_size: batch, ..Default::default() };
    embed::run_pipeline(
        embedder,
        images.iter().enumerate(),
        &opts,
        |(i, path), resizer| {
            let name = path.display().to_string();
            let prepared = std::fs::read(path)
                .map_err(|error| EmbedError::Io { source_name: name.clone(), error })
                .and_then(|bytes| embedder.prepare(&bytes, &name, resizer));
            match prepared {
                Ok(t) => Prepared::Tensor((i, None), t),
                Err(e) => Prepared::Done((i, Some(e))),
            }
        },
        |(i, err), res| {
            results[i] = Some(match (err, res) {
                (Some(e), _) => Err(e),
                (None, Some(r)) => r,
                (None, None) => unreachable!("prepared items always reach the model"),
            });
        },
    );
    let mut failed = 0;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (path, res) in images.iter().zip(results) {
        match res {
            Some(Ok(v)) => {
                let line = EmbeddingLine { image: path.display().to_string(), model: embedder.name(), dim: v.len(), embedding: &v };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
            Some(Err(e)) => {
                failed += 1;
                eprintln!("error: {e}");
            }
            None => unreachable!("every item reaches the sink"),
        }
    }
    out.flush()?;
    if failed > 0 {
        eprintln!("{failed} of {} images failed", images.len());
        return Ok(1);
    }
    Ok(0)
}

fn cmd_models(cli: &Cli) -> anyhow::Result<i32> {
    let reg = open_registry(&cli.models)?;
    println!("models in {}", reg.dir.display());
    let mut bad = 0;
    for m in &reg.models {
        let status = match Embedder::load(m, &EmbedOptions { sessions: 1, ..embed_options(cli) }) {
            Ok(_) => "ok".to_string(),
            Err(e) => {
                bad += 1;
                format!("NOT LOADED: {e}")
            }
        };
        let input = match &m.input {
            Some(i) => format!("{}x{} {:?}", i.width, i.height, i.resize),
            None => format!("fused: {}", m.parts.iter().map(|(p, w)| format!("{} x{w:.2}", p.name)).collect::<Vec<_>>().join(" + ")),
        };
        println!("  {:<22} {:>4}-d  {input}  licence {}  {}", m.name, m.output.dim, m.licence, status);
    }
    for (p, e) in &reg.broken {
        bad += 1;
        println!("  {}: NOT AVAILABLE: {e}", p.display());
    }
    Ok(if bad > 0 && reg.models.iter().all(|m| m.name != crate::embed::DEFAULT_MODEL_NAME) { 1 } else { 0 })
}

/// Sequential run (read + decode + preprocess, then the model, batch by batch)
/// to split the time, then a pipelined run for throughput.
fn cmd_bench_embed(embedder: &Embedder, images: &[PathBuf], batch: usize, workers: usize, sessions: usize) -> anyhow::Result<i32> {
    use std::time::Instant;
    let batch = batch.max(1);
    // Warm-up: first inferences allocate.
    let warm = std::fs::read(&images[0])?;
    for _ in 0..2 {
        embedder.embed_bytes(&warm, "warm-up")?;
    }
    let mut resizer = fast_image_resize::Resizer::new();
    let (mut prep_s, mut infer_s) = (0.0f64, 0.0f64);
    let t0 = Instant::now();
    for chunk in images.chunks(batch) {
        let t = Instant::now();
        let mut buf = Vec::with_capacity(chunk.len() * embedder.preprocessor().tensor_len());
        for p in chunk {
            let bytes = std::fs::read(p)?;
            buf.extend(embedder.prepare(&bytes, &p.display().to_string(), &mut resizer)?);
        }
        let t2 = Instant::now();
        embedder.embed_tensors(&buf, chunk.len())?;
        prep_s += (t2 - t).as_secs_f64();
        infer_s += t2.elapsed().as_secs_f64();
    }
    let seq_s = t0.elapsed().as_secs_f64();
    let mut pipelined = serde_json::Value::Null;
    if workers > 0 {
        let t0 = Instant::now();
        let mut n = 0usize;
        let opts = PipelineOptions { workers, batch_size: batch, inference_threads: sessions };
        embed::run_pipeline(
            embedder,
            images.iter(),
            &opts,
            |p, r| match std::fs::read(p).map_err(anyhow::Error::from).and_then(|b| Ok(embedder.prepare(&b, "", r)?)) {
                Ok(t) => Prepared::Tensor((), t),
                Err(_) => Prepared::Done(()),
            },
            |_, r| n += matches!(r, Some(Ok(_))) as usize,
        );
        let s = t0.elapsed().as_secs_f64();
        pipelined =
            serde_json::json!({ "images": n, "seconds": s, "images_per_s": n as f64 / s, "workers": workers, "sessions": sessions });
    }
    let report = serde_json::json!({
        "model": embedder.name(),
        "batch": batch,
        "images": images.len(),
        "sequential": { "seconds": seq_s, "images_per_s": images.len() as f64 / seq_s, "preprocess_share": prep_s / (prep_s + infer_s), "infer_s": infer_s },
        "pipelined": pipelined,
    });
    println!("{report}");
    Ok(0)
}

/// Query manifests for eval / calibrate (rows without product_id are distractors).
fn read_queries(paths: &[PathBuf]) -> anyhow::Result<Vec<crate::eval::Query>> {
    let defaults = crate::ingest::SourceDefaults { allow_missing_product: true, ..Default::default() };
    let mut qs = Vec::new();
    for q in paths {
        let (items, errs) = crate::ingest::read_source(q, &defaults)?;
        for e in errs {
            eprintln!("skipped query row: {e}");
        }
        qs.extend(items.into_iter().map(|it| crate::eval::Query {
            image: it.image,
            product_id: Some(it.product.product_id).filter(|p| !p.is_empty()),
            category: it.product.category,
        }));
    }
    Ok(qs)
}

/// Fits the confidence mapping on `samples` (and, with it, the verdict
/// thresholds), tags it with the index's model and projection, and writes it
/// atomically to `path`: what `calibrate` and `tune` both store.
fn fit_and_save_calibration(
    catalog: &Catalog,
    samples: &[(f32, f32, bool)],
    fit_verdict: impl FnOnce(&crate::search::Mapping) -> Option<crate::search::VerdictThresholds>,
    queries: Vec<String>,
    path: &std::path::Path,
) -> anyhow::Result<crate::search::Calibration> {
    let (mapping, heldout_ece) = crate::eval::fit_calibration(samples);
    let verdict = fit_verdict(&mapping);
    let cal = crate::search::Calibration {
        mapping,
        model: catalog.model().to_string(),
        fitted_at: crate::catalog::store::now(),
        n_queries: samples.len(),
        n_correct: samples.iter().filter(|s| s.2).count(),
        heldout_ece,
        queries,
        projection: catalog.projection().map(|p| p.info.id.clone()),
        verdict,
    };
    crate::catalog::vectors::write_atomic(path, &serde_json::to_vec_pretty(&cal)?)?;
    Ok(cal)
}

/// Cross-validates a projection on the catalog's own photos; when it beats
/// the model's own vectors (or `--force`), applies it and stores the
/// confidence calibration fitted on the cross-validated lookups.
fn run_tune(catalog: &Catalog, args: &TuneArgs) -> anyhow::Result<serde_json::Value> {
    let opts = crate::catalog::FitOptions { shrinkage: args.shrinkage, dims: args.dims };
    let labelled = catalog.labelled_vectors()?;
    let t0 = std::time::Instant::now();
    let cv = crate::eval::cross_validate_projection(&labelled, catalog.model(), opts, args.folds, args.cv_lookups, |f, n| {
        if f < n {
            eprintln!("[tune] cross-validation fold {}/{n}", f + 1);
        }
    })?;
    eprintln!(
        "[tune] {} photos looked up against the other folds: top-1 {:.3} with the projection, {:.3} without ({:.1}s)",
        cv.n_queries,
        cv.top1_projected,
        cv.top1_raw,
        t0.elapsed().as_secs_f64()
    );
    let helps = cv.top1_projected > cv.top1_raw;
    let mut summary = serde_json::json!({ "cross_validation": cv, "applied": false });
    if !helps && !args.force {
        eprintln!("[tune] the projection does not help on this catalog: not applied (--force applies it anyway)");
        return Ok(summary);
    }
    let info = catalog.fit_projection(opts)?;
    let path = catalog.dir().join(crate::search::calibration::CALIBRATION_FILE);
    let cal = fit_and_save_calibration(
        catalog,
        &cv.samples,
        |mapping| crate::eval::fit_verdict_thresholds(&cv.ranked, &catalog.product_labels(), mapping, args.uncertain_cost),
        vec![format!("{}-fold cross-validation of the catalog's own photos (knockoff tune)", cv.folds)],
        &path,
    )?;
    if let Some(v) = &cal.verdict {
        eprintln!("[tune] verdict margin {:.2} (expected cost per lookup by margin: {:?})", v.margin, v.cost_by_margin);
    }
    eprintln!(
        "[tune] projection {} ({} → {} dims, {} products, {} photos) applied; calibration written to {}",
        info.id,
        info.in_dim,
        info.out_dim,
        info.n_products,
        info.n_images,
        path.display()
    );
    summary["applied"] = true.into();
    summary["projection"] = serde_json::to_value(&info)?;
    summary["calibration_heldout_ece"] = serde_json::to_value(&cal.heldout_ece)?;
    summary["verdict"] = serde_json::to_value(&cal.verdict)?;
    Ok(summary)
}

/// Verdict settings with the index's calibration (or the model's shipped default).
fn verdict_for(catalog: &Catalog, manifest: &crate::embed::ModelManifest) -> crate::search::VerdictConfig {
    let mut v = crate::search::VerdictConfig::default();
    let projection = catalog.projection().map(|p| p.info.id.clone());
    if let Some((cal, path)) =
        crate::search::Calibration::find_matching(catalog.dir(), &manifest.dir, catalog.model(), projection.as_deref())
    {
        tracing::info!("confidence calibration from {}", path.display());
        v.calibration = Some(cal.mapping);
        if let Some(t) = cal.verdict {
            v.min_confidence = t.min_confidence as f32;
            v.margin = t.margin as f32;
        }
    }
    v
}

fn embedder_sessions() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Opens the catalog in `args.dir`. The model is the one the index was built
/// with (an explicit `--model` must agree), or `--model` / the default for a
/// new index. With `with_embedder`, also loads that model (bulk settings:
/// one single-threaded session per core).
pub fn open_catalog(cli: &Cli, args: &IndexArgs, params: IndexParams, with_embedder: bool) -> anyhow::Result<(Catalog, Option<Embedder>)> {
    let existing = if args.dir.join(crate::catalog::store::STORE_FILE).exists() { Store::open(&args.dir)?.meta("model")? } else { None };
    let model = match (&existing, &args.model) {
        (Some(found), Some(wanted)) if found != wanted => {
            return Err(crate::catalog::CatalogError::ModelMismatch {
                path: args.dir.clone(),
                found: found.clone(),
                wanted: wanted.clone(),
            }
            .into());
        }
        (Some(found), _) => Some(found.clone()),
        (None, m) => m.clone(),
    };
    let reg = open_registry(&cli.models)?;
    let manifest = reg.get(model.as_deref())?;
    let embedder = if with_embedder {
        let opts = EmbedOptions { sessions: embedder_sessions(), intra_threads: cli.threads.unwrap_or(1), ..embed_options(cli) };
        Some(Embedder::load(manifest, &opts)?)
    } else {
        None
    };
    let opts = CatalogOptions {
        fingerprint: Some(manifest.fingerprint()),
        model: manifest.name.clone(),
        dim: manifest.output.dim,
        params: IndexParams { ef_search: args.ef_search, ..params },
        auto_compact_share: args.auto_compact,
    };
    let (catalog, report) = Catalog::open(&args.dir, opts)?;
    if let crate::catalog::OpenReport::Rebuilt { points, reason } = &report {
        if *points > 0 {
            eprintln!("note: {reason}; rebuilt the vector index from the store ({points} vectors)");
        }
    }
    Ok((catalog, embedder))
}
