//! The `knockoff` command line: parses arguments and calls the library.
//! Each subcommand is a thin wrapper; the work lives in the modules.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    #[arg(long, global = true, env = "KNOCKOFF_MAX_PIXELS", default_value_t = embed::decode_default_max_pixels())]
    pub max_pixels: u64,
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
    o.limits.max_pixels = cli.max_pixels;
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
        println!(
            "  {:<22} {:>4}-d  {}x{} {:?}  licence {}  {}",
            m.name, m.output.dim, m.input.width, m.input.height, m.input.resize, m.licence, status
        );
    }
    for (p, e) in &reg.broken {
        bad += 1;
        println!("  {}: BROKEN MANIFEST: {e}", p.display());
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
        pipelined = serde_json::json!({ "images": n, "seconds": s, "images_per_s": n as f64 / s, "workers": workers, "sessions": sessions });
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
