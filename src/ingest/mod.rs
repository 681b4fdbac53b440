//! Batch indexing of brand catalogs: source → fetch and decode on worker
//! threads → batched inference → one writer committing in transactions.
//!
//! Re-running a source skips images already indexed (same product, same
//! sha256), so an interrupted run resumes where it stopped. A bad image is
//! recorded (summary plus an errors file) and never aborts the batch.

mod error;
mod fetch;
mod source;

pub use error::IngestError;
pub use fetch::{fetch, FetchOptions};
pub use source::{is_url, parse_manifest, read_source, SourceDefaults, SourceItem};

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::{Catalog, NewImage};
use crate::embed::{decode_image, run_pipeline, Embedder, PipelineOptions, Prepared};
use crate::util::sha256_hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A progress bar on a terminal, plain periodic lines otherwise.
    Auto,
    Quiet,
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub pipeline: PipelineOptions,
    /// Commit at least this often (images).
    pub commit_every: usize,
    /// ... or after this long.
    pub commit_interval: Duration,
    pub fetch: FetchOptions,
    /// Where to write the errors file (CSV: image,product_id,kind,reason).
    pub errors_file: Option<PathBuf>,
    pub progress: ProgressMode,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            pipeline: PipelineOptions::default(),
            commit_every: 64,
            commit_interval: Duration::from_secs(1),
            fetch: FetchOptions::default(),
            errors_file: None,
            progress: ProgressMode::Auto,
        }
    }
}

/// One failed item.
#[derive(Debug, Clone, Serialize)]
pub struct ItemError {
    pub image: String,
    pub product_id: String,
    pub kind: String,
    pub reason: String,
}

/// Counters, also passed to progress callbacks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestCounts {
    pub total: usize,
    pub indexed: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl IngestCounts {
    pub fn done(&self) -> usize {
        self.indexed + self.skipped + self.failed
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    #[serde(flatten)]
    pub counts: IngestCounts,
    pub seconds: f64,
    pub errors: Vec<ItemError>,
    pub errors_file: Option<PathBuf>,
}

enum Outcome {
    Embed(SourceItem, String, u32, u32, Vec<u8>),
    Skipped,
    Failed(SourceItem, IngestError),
}

/// Indexes `items` into `catalog`. `row_errors` (e.g. invalid manifest rows)
/// are counted as failures and written to the errors file. `on_progress` is
/// called after every commit.
pub fn ingest(
    catalog: &Catalog,
    embedder: &Embedder,
    items: Vec<SourceItem>,
    row_errors: Vec<IngestError>,
    opts: &IngestOptions,
    mut on_progress: impl FnMut(&IngestCounts),
) -> Result<IngestReport, IngestError> {
    if embedder.name() != catalog.model() {
        return Err(IngestError::Catalog(crate::catalog::CatalogError::ModelMismatch {
            path: catalog.dir().into(),
            found: catalog.model().into(),
            wanted: embedder.name().into(),
        }));
    }
    let started = Instant::now();
    let known: HashSet<(String, String)> = catalog.live_hashes()?;
    let known_sources: HashSet<(String, String)> = catalog.live_sources()?;
    let mut counts = IngestCounts { total: items.len() + row_errors.len(), ..Default::default() };
    let mut errors: Vec<ItemError> = row_errors
        .iter()
        .map(|e| ItemError { image: String::new(), product_id: String::new(), kind: e.kind().into(), reason: e.to_string() })
        .collect();
    counts.failed = errors.len();
    let mut progress = Progress::new(opts.progress, counts.total);
    let mut pending: Vec<NewImage> = Vec::new();
    let mut last_commit = Instant::now();
    let mut fatal: Option<IngestError> = None;
    let pre = embedder.preprocessor();

    let commit = |pending: &mut Vec<NewImage>, counts: &mut IngestCounts| -> Result<(), IngestError> {
        if pending.is_empty() {
            return Ok(());
        }
        let ids = catalog.add_images(pending)?;
        let added = ids.iter().filter(|i| i.is_some()).count();
        counts.indexed += added;
        counts.skipped += ids.len() - added;
        pending.clear();
        Ok(())
    };

    run_pipeline(
        embedder,
        items,
        &opts.pipeline,
        |item: SourceItem, resizer| {
            // Already indexed from this very source (a resumed run): no need to fetch it again.
            if known_sources.contains(&(item.product.product_id.clone(), item.image.clone())) {
                return Prepared::Done(Outcome::Skipped);
            }
            let bytes = match fetch(&item.image, &opts.fetch) {
                Ok(b) => b,
                Err(e) => return Prepared::Done(Outcome::Failed(item, e)),
            };
            let sha = sha256_hex(&bytes);
            if known.contains(&(item.product.product_id.clone(), sha.clone())) {
                return Prepared::Done(Outcome::Skipped);
            }
            match decode_image(&bytes, &item.image, embedder.limits()) {
                Ok(img) => {
                    let (w, h) = (img.width(), img.height());
                    let t = pre.run(&img.rgb, resizer);
                    let thumb = crate::catalog::thumbnail(&img.rgb);
                    Prepared::Tensor(Outcome::Embed(item, sha, w, h, thumb), t)
                }
                Err(e) => Prepared::Done(Outcome::Failed(item, e.into())),
            }
        },
        |outcome, result| {
            if fatal.is_some() {
                return;
            }
            match (outcome, result) {
                (Outcome::Skipped, _) => counts.skipped += 1,
                (Outcome::Failed(item, e), _) => {
                    counts.failed += 1;
                    errors.push(ItemError {
                        image: item.image,
                        product_id: item.product.product_id,
                        kind: e.kind().into(),
                        reason: e.to_string(),
                    });
                }
                (Outcome::Embed(item, sha256, width, height, thumb), Some(Ok(embedding))) => {
                    pending.push(NewImage {
                        product: item.product,
                        source: item.image,
                        sha256,
                        width,
                        height,
                        embedding,
                        thumbnail: Some(thumb),
                    });
                }
                (Outcome::Embed(item, ..), Some(Err(e))) => {
                    counts.failed += 1;
                    errors.push(ItemError {
                        image: item.image,
                        product_id: item.product.product_id,
                        kind: e.kind().into(),
                        reason: e.to_string(),
                    });
                }
                (Outcome::Embed(..), None) => unreachable!("tensors always reach the model"),
            }
            if pending.len() >= opts.commit_every || last_commit.elapsed() >= opts.commit_interval {
                if let Err(e) = commit(&mut pending, &mut counts) {
                    fatal = Some(e);
                    return;
                }
                last_commit = Instant::now();
                on_progress(&counts);
            }
            progress.update(&counts, pending.len());
        },
    );
    if let Some(e) = fatal {
        return Err(e);
    }
    commit(&mut pending, &mut counts)?;
    on_progress(&counts);
    progress.finish(&counts);
    catalog.persist()?;

    let errors_file = match (&opts.errors_file, errors.is_empty()) {
        (Some(p), false) => {
            write_errors(p, &errors)
                .map_err(|e| IngestError::Source { path: p.clone(), detail: format!("cannot write errors file: {e}") })?;
            Some(p.clone())
        }
        _ => None,
    };
    Ok(IngestReport { counts, seconds: started.elapsed().as_secs_f64(), errors, errors_file })
}

fn write_errors(path: &std::path::Path, errors: &[ItemError]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["image", "product_id", "kind", "reason"])?;
    for e in errors {
        w.write_record([&e.image, &e.product_id, &e.kind, &e.reason])?;
    }
    w.flush()
}

/// A progress bar on a terminal; otherwise one line every few seconds.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    started: Instant,
    last_line: Instant,
    total: usize,
}

impl Progress {
    fn new(mode: ProgressMode, total: usize) -> Self {
        let (bar, plain) = match mode {
            ProgressMode::Quiet => (None, false),
            ProgressMode::Auto if std::io::stderr().is_terminal() => {
                let bar = indicatif::ProgressBar::new(total as u64);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} images ({per_sec}, ETA {eta}) {msg}",
                ) {
                    bar.set_style(style);
                }
                (Some(bar), false)
            }
            ProgressMode::Auto => (None, true),
        };
        Progress { bar, plain, started: Instant::now(), last_line: Instant::now(), total }
    }

    fn update(&mut self, c: &IngestCounts, pending: usize) {
        let done = c.done() + pending;
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{} skipped, {} failed", c.skipped, c.failed));
        } else if self.plain && self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1e-9);
            eprintln!("[index] {done}/{} images ({rate:.1}/s, ETA {eta:.0}s), {} skipped, {} failed", self.total, c.skipped, c.failed);
            let _ = std::io::stderr().flush();
        }
    }

    fn finish(&mut self, c: &IngestCounts) {
        if let Some(bar) = &self.bar {
            bar.set_position(c.done() as u64);
            bar.finish_and_clear();
        }
    }
}
