//! Human-readable and JSON printing for the subcommands.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::CatalogStats;
use crate::embed::{EmbedError, EmbedOptions, Embedder, ModelRegistry};
use crate::ingest::IngestReport;
use crate::search::Lookup;

/// Pretty JSON on stdout.
pub fn json(v: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// One JSON object per line, written to `path`.
pub fn json_lines<T: Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in rows {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
    }
    out.flush()?;
    Ok(())
}

/// One line of `knockoff embed` output.
#[derive(Serialize)]
struct EmbeddingLine<'a> {
    image: String,
    model: &'a str,
    dim: usize,
    embedding: &'a [f32],
}

/// JSON lines for the embedded images, errors on stderr; exit 1 if any failed.
pub fn embeddings(embedder: &Embedder, images: &[PathBuf], results: Vec<Result<Vec<f32>, EmbedError>>) -> anyhow::Result<i32> {
    let mut failed = 0;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (path, res) in images.iter().zip(results) {
        match res {
            Ok(v) => {
                let line = EmbeddingLine { image: path.display().to_string(), model: embedder.name(), dim: v.len(), embedding: &v };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        eprintln!("{failed} of {} images failed", images.len());
        return Ok(1);
    }
    Ok(0)
}

/// The installed models and whether each loads; exit 1 when the default model does not.
pub fn models(reg: &ModelRegistry, opts: &EmbedOptions) -> i32 {
    println!("models in {}", reg.dir.display());
    let mut bad = 0;
    for m in &reg.models {
        let status = match Embedder::load(m, opts) {
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
    i32::from(bad > 0 && reg.models.iter().all(|m| m.name != crate::embed::DEFAULT_MODEL_NAME))
}

pub fn ingest_summary(r: &IngestReport) {
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
}

pub fn lookup(answer: &Lookup) {
    if answer.matches.is_empty() {
        println!("no match (the index is empty or nothing passes the filters)");
        return;
    }
    for (i, m) in answer.matches.iter().enumerate() {
        print!(
            "{:>2}. {:<36} {:<11} sim {:.3}  conf {:.2}  image {}",
            i + 1,
            m.product_id,
            m.label.as_str(),
            m.similarity,
            m.confidence,
            m.image_id
        );
        if let Some(s) = &m.second {
            print!("  (2nd image {} sim {:.3})", s.image_id, s.similarity);
        }
        println!("  {}", [m.brand.as_deref(), m.name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" / "));
    }
    println!("verdict: {}: {}", answer.verdict.as_str(), answer.summary);
}

pub fn stats(location: &str, s: &CatalogStats) {
    println!("index      {location}");
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
