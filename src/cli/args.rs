//! Command-line arguments: one struct per subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::catalog::{IndexParams, Label};
use crate::index::IndexSpec;

mod location;
pub use location::{BackupArgs, LocationArgs, MigrateArgs, ModelsArg, RestoreArgs};

#[derive(Debug, Parser)]
#[command(name = "knockoff", version, about = "Counterfeit detector: match listing photos against a brand catalog")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How a command that embeds photos runs its model (only those commands list these options).
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// Folder holding models/<name>/model.toml (default: ./models found from the current or executable's folder).
    #[arg(long, env = "KNOCKOFF_MODELS")]
    pub models: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per inference (default: all cores).
    #[arg(long, env = "KNOCKOFF_THREADS")]
    pub threads: Option<usize>,
    /// Largest image accepted, in pixels (width × height), checked before decoding.
    /// (Default 40,000,000; `knockoff serve` also reads `max_pixels` from its config file.)
    #[arg(long, env = "KNOCKOFF_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
}

impl ModelsArg {
    /// As the model options of a command that embeds nothing.
    #[must_use]
    pub fn global(&self) -> Global {
        Global { models: self.models.clone(), ..Global::default() }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Embed images and print one JSON line per image.
    Embed(EmbedArgs),
    /// List installed models and whether each one loads.
    Models(Global),
    /// Index a catalog: a manifest (CSV / JSON Lines) or a folder with one sub-folder per product.
    Index(IndexCmdArgs),
    /// Find the catalog products nearest to a photo (matches, confidences and verdict).
    Search(SearchArgs),
    /// Serve the HTTP API on the index.
    Serve(ServeArgs),
    /// Evaluate retrieval, calibration and verdicts: index CATALOG, look up every QUERIES photo,
    /// print one JSON object (progress on stderr).
    Eval(EvalArgs),
    /// Fit the confidence calibration of an index from labelled query photos; lookups then use it.
    Calibrate(CalibrateArgs),
    /// Learn a projection from the catalog's own labelled photos (several per product), check it by
    /// cross-validation, apply it to the index and calibrate confidence in the new space.
    Tune(TuneCmdArgs),
    /// Rebuild the vector graph without deleted images.
    Compact(IndexOnly),
    /// Counts, index parameters and disk use.
    Stats(StatsArgs),
    /// Delete a product (all its images) or one image.
    Delete(DeleteArgs),
    /// Copy a catalog between an index folder and the shared backend (PostgreSQL + Milvus), either
    /// way, without re-embedding; resumable; counts are checked at the end.
    Migrate(MigrateArgs),
    /// Back up the catalog (either backend) into a new folder, consistently, while lookups and
    /// indexing go on: records, projection, calibration and a manifest with each file's sha256.
    Backup(BackupArgs),
    /// Restore a backup into an index folder or the shared backend that holds no catalog yet;
    /// refuses a partial, damaged or foreign backup; counts are checked at the end.
    Restore(RestoreArgs),
    /// Benchmark: HNSW build / query / persistence on raw little-endian f32 files (prints JSON).
    #[command(hide = true)]
    BenchAnn(BenchAnnArgs),
    /// Benchmark: library lookup throughput (read + decode + embed + search), no HTTP (prints JSON).
    #[command(hide = true)]
    BenchLookup(BenchLookupArgs),
    /// Benchmark: end-to-end embedding throughput on image files (prints JSON).
    #[command(hide = true)]
    BenchEmbed(BenchEmbedArgs),
    /// Builds a copy-detection protocol from a photo manifest: originals as the
    /// catalog, an edited copy of each (with `copy_of`) and the next photo of the
    /// same product (not a copy) as queries (prints JSON).
    MakeCopies(MakeCopiesArgs),
}

#[derive(Debug, Args)]
pub struct MakeCopiesArgs {
    /// Photo manifest (consecutive rows of one product are consecutive shots).
    pub photos: PathBuf,
    /// Output folder (catalog.csv, queries.csv, copies/).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the edits (the same seed makes the same protocol).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Originals per product.
    #[arg(long, default_value_t = 2)]
    pub per_product: usize,
}

/// Where the index lives and which model it uses.
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    /// Model (a new index uses the default model; an existing one keeps its own).
    #[arg(long)]
    pub model: Option<String>,
    /// HNSW `ef_search` default for queries.
    #[arg(long, default_value_t = IndexParams::default().ef_search)]
    pub ef_search: usize,
    /// Compact by itself when deleted images pass this share of the graph.
    #[arg(long, default_value_t = 0.2)]
    pub auto_compact: f64,
}

impl IndexArgs {
    #[must_use]
    pub fn spec(&self) -> IndexSpec {
        IndexSpec {
            model: self.model.clone(),
            params: IndexParams { ef_search: self.ef_search, ..IndexParams::default() },
            auto_compact: self.auto_compact,
            ..self.location.spec()
        }
    }
}

#[derive(Debug, Args)]
pub struct IndexOnly {
    #[command(flatten)]
    pub index: LocationArgs,
    #[command(flatten)]
    pub models: ModelsArg,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub run: Global,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Model name (see `knockoff models`).
    #[arg(long)]
    pub model: Option<String>,
    /// Print JSON lines (the default; kept for scripts that pass it).
    #[arg(long)]
    pub json: bool,
    /// Images per model call.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct IndexCmdArgs {
    #[command(flatten)]
    pub run: Global,
    /// A manifest (CSV or JSON Lines with `image,product_id,label,brand,name,category`) or a folder with one sub-folder per product.
    pub source: PathBuf,
    #[command(flatten)]
    pub index: IndexArgs,
    /// Label for rows (or folders) that do not give one.
    #[arg(long)]
    pub label: Option<Label>,
    /// Brand for rows (or folders) that do not give one.
    #[arg(long)]
    pub brand: Option<String>,
    /// Images per model call.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Skip the self-calibration that ends indexing (confidence, `p_no_match`
    /// and counterfeit thresholds fitted on the catalog's own photos).
    #[arg(long)]
    pub no_calibrate: bool,
    /// Decode workers (default: half the cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Errors file (CSV); default <index>/ingest-errors.csv (./ingest-errors.csv on the shared backend).
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// HNSW M, for a new index.
    #[arg(long, default_value_t = IndexParams::default().m)]
    pub m: usize,
    /// HNSW `ef_construction`, for a new index.
    #[arg(long, default_value_t = IndexParams::default().ef_construction)]
    pub ef_construction: usize,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub run: Global,
    /// The listing photo.
    pub image: PathBuf,
    #[command(flatten)]
    pub index: IndexArgs,
    /// Number of products.
    #[arg(short, default_value_t = 5)]
    pub k: usize,
    /// HNSW ef for this query.
    #[arg(long)]
    pub ef: Option<usize>,
    /// Only products of this brand.
    #[arg(long)]
    pub brand: Option<String>,
    /// Only products with this label.
    #[arg(long)]
    pub label: Option<Label>,
    /// Only products of this category.
    #[arg(long)]
    pub category: Option<String>,
    /// Also show each product's second-best image.
    #[arg(long)]
    pub second: bool,
    /// Print the answer as JSON, in the shape of `POST /v1/lookup` (without its `query` block).
    #[arg(long)]
    pub json: bool,
    /// Check the photo for copies in full even when the copy check's gate
    /// would stop it (why was this copy not found?).
    #[arg(long)]
    pub no_copy_gate: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub run: Global,
    #[command(flatten)]
    pub index: IndexArgs,
    /// TOML configuration file (flags and KNOCKOFF_* variables override it).
    #[arg(long, env = "KNOCKOFF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080; non-loopback needs API keys).
    #[arg(long, env = "KNOCKOFF_ADDR")]
    pub addr: Option<std::net::SocketAddr>,
    /// API keys: name:role:secret,... (role read or admin). On the command line any local user can read them: prefer the environment or --api-keys-file.
    #[arg(long, env = "KNOCKOFF_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// A file of API keys, one name:role:secret a line (# comments); read again on SIGHUP.
    #[arg(long, env = "KNOCKOFF_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Largest request body in bytes (default 20 MB).
    #[arg(long, env = "KNOCKOFF_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Lookups waiting for inference before new ones get 503 (default 64).
    #[arg(long, env = "KNOCKOFF_QUEUE_DEPTH")]
    pub queue_depth: Option<usize>,
    /// Most photos in one batch lookup (default 32).
    #[arg(long, env = "KNOCKOFF_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Per-request timeout in milliseconds (default 30000).
    #[arg(long, env = "KNOCKOFF_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Let URL lookups and jobs fetch from private, loopback and link-local addresses.
    #[arg(long, env = "KNOCKOFF_ALLOW_PRIVATE_URLS")]
    pub allow_private_urls: Option<bool>,
    /// Start with an empty catalog where none is (otherwise a folder or database that holds no catalog is refused).
    #[arg(long)]
    pub create: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub run: Global,
    /// Catalog manifest(s); rows of several are combined.
    #[arg(long = "catalog", required_unless_present = "use_index")]
    pub catalogs: Vec<PathBuf>,
    /// Query manifest(s); rows with an empty `product_id` are distractors.
    #[arg(long = "queries", required = true)]
    pub queries: Vec<PathBuf>,
    /// Use this existing index instead of indexing --catalog into a temporary one.
    #[arg(long = "index")]
    pub use_index: Option<PathBuf>,
    /// Model for the temporary index (default: the default model; `--index` keeps its own).
    #[arg(long)]
    pub model: Option<String>,
    /// Also write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an HTML report with plots and the worst mistakes (self-contained).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write one JSON line per query here: the answer the service gives (matches, verdict, reason).
    #[arg(long)]
    pub per_query: Option<PathBuf>,
    /// Check every photo for copies in full; the copy check's gate is only
    /// measured (`copy_check.gate_inliers` per query): how `GATE=off scripts/eval_copies.sh` calibrates it.
    #[arg(long)]
    pub no_copy_gate: bool,
    /// Matches considered for the verdict (and recall@k uses 1 and 5).
    #[arg(short, default_value_t = 5)]
    pub k: usize,
    /// Product ranking score: best (best image) or topN (mean of its best N images).
    #[arg(long, default_value = "best")]
    pub product_score: crate::search::ProductScore,
    /// Share of queries expected to show products outside the catalog
    /// (`[verdict] out_of_catalog_share`; default: the 5 % the index was fitted with).
    #[arg(long, value_parser = share)]
    pub out_of_catalog_share: Option<f32>,
    /// Run `knockoff tune` on the temporary index before the lookups (with its options below).
    #[arg(long, conflicts_with = "use_index")]
    pub tune: bool,
    /// Evaluate the temporary index as indexed, without the fitting `knockoff index`
    /// ends with (projection when it helps, self-calibration).
    #[arg(long, conflicts_with_all = ["use_index", "tune"])]
    pub no_fit: bool,
    /// Measure the review loop instead: play the queries as a stream in rounds;
    /// each round a simulated analyst decides this many of its most review-worthy
    /// cases with the truth, then the index refits (prints `review_curve`).
    #[arg(long, conflicts_with_all = ["use_index", "tune", "no_fit"])]
    pub review_budget: Option<usize>,
    /// Rounds the stream is played in (with --review-budget).
    #[arg(long, default_value_t = 5, requires = "review_budget", value_parser = clap::value_parser!(u16).range(1..))]
    pub review_rounds: u16,
    /// Share of each round's reviews drawn at random rather than by review worth (with --review-budget).
    #[arg(long, requires = "review_budget", value_parser = share)]
    pub review_audit_share: Option<f32>,
    /// Measure seller networks instead: this many query photos are each re-posted
    /// by --reposts other sellers with reseller edits, among the other photos
    /// posted once; prints cluster precision and recall (`eval::networks`).
    #[arg(long, conflicts_with_all = ["use_index", "tune", "review_budget"])]
    pub networks: Option<usize>,
    /// Re-posts per network (with --networks).
    #[arg(long, default_value_t = 4, requires = "networks")]
    pub reposts: usize,
    /// Other photos posted once each, at most (with --networks).
    #[arg(long, default_value_t = 400, requires = "networks")]
    pub unrelated: usize,
    /// Earlier cases (random vectors, no photo) recorded before the stream, to time joins at scale (with --networks).
    #[arg(long, default_value_t = 0, requires = "networks")]
    pub filler_cases: usize,
    #[command(flatten)]
    pub tune_args: TuneArgs,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub run: Global,
    /// Query manifest(s) (labelled photos not in the index).
    #[arg(long = "queries", required = true)]
    pub queries: Vec<PathBuf>,
    #[command(flatten)]
    pub index: IndexArgs,
    /// Write here instead of <index>/calibration.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Settings of `knockoff tune` (and `eval --tune`).
#[derive(Debug, Clone, Args)]
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
}

impl TuneArgs {
    #[must_use]
    pub fn options(&self) -> crate::fit::TuneOptions {
        crate::fit::TuneOptions {
            projection: crate::catalog::FitOptions { shrinkage: self.shrinkage, dims: self.dims },
            folds: self.folds,
            cv_lookups: self.cv_lookups,
            force: self.force,
        }
    }
}

#[derive(Debug, Args)]
pub struct TuneCmdArgs {
    #[command(flatten)]
    pub run: Global,
    #[command(flatten)]
    pub index: IndexArgs,
    #[command(flatten)]
    pub tune: TuneArgs,
    /// Remove the projection instead (the graph goes back to the model's own vectors).
    #[arg(long, conflicts_with = "force")]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub models: ModelsArg,
    #[command(flatten)]
    pub index: LocationArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub models: ModelsArg,
    #[command(flatten)]
    pub index: LocationArgs,
    /// Delete this product and all its images.
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    pub product: Option<String>,
    /// Delete this one image (its id, as lookups and the API give it).
    #[arg(long)]
    pub image: Option<i64>,
}

#[derive(Debug, Args)]
pub struct BenchAnnArgs {
    /// Base vectors (n × dim f32).
    pub base: PathBuf,
    /// Query vectors (q × dim f32).
    pub queries: PathBuf,
    /// Exact neighbours (q × 10 i32), for recall@10.
    pub truth: PathBuf,
    /// Vector dimension.
    #[arg(long)]
    pub dim: usize,
    /// HNSW M.
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW `ef_construction`.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// HNSW `ef_search`.
    #[arg(long, default_value_t = 64)]
    pub ef_search: usize,
}

#[derive(Debug, Args)]
pub struct BenchLookupArgs {
    #[command(flatten)]
    pub run: Global,
    /// Photos to look up (cycled through).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub index: IndexArgs,
    /// Concurrent lookups (threads), each with its own single-threaded session.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Lookups in total.
    #[arg(long, default_value_t = 400)]
    pub requests: usize,
    /// Leave out copy detection (the baseline it is measured against).
    #[arg(long)]
    pub no_copies: bool,
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    #[command(flatten)]
    pub run: Global,
    /// Image files to embed.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Model name (see `knockoff models`).
    #[arg(long)]
    pub model: Option<String>,
    /// Images per model call.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Decode/preprocess worker threads for the pipelined run (0: sequential only).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Sessions (and inference threads) for the pipelined run.
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
}

/// A share strictly between 0 and 1.
fn share(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a share strictly between 0 and 1")),
    }
}
