//! Batch indexing of brand catalogs: source → fetch and decode on worker
//! threads → batched inference → one writer committing in transactions.
//!
//! Re-running a source skips images already indexed (same product, same
//! sha256), so an interrupted run resumes where it stopped. A bad image is
//! recorded (summary plus an errors file) and never aborts the batch.

mod error;
mod fetch;
pub mod jobs;
mod queries;
mod source;

pub use error::IngestError;
pub use fetch::{allowed_addrs, fetch, AddrError, FetchOptions};
pub use queries::{read_queries, Query};
pub use source::{is_url, parse_manifest, read_source, ManifestFormat, SourceDefaults, SourceItem};

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use fast_image_resize::Resizer;

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
    /// Where to write the errors file (CSV: `image,product_id,kind,reason`).
    pub errors_file: Option<PathBuf>,
    pub progress: ProgressMode,
    /// Careful mode: items one at a time, each committed before the next, with
    /// this hook called before each item (`Some`) and after its commit (`None`),
    /// so a caller can record which item was in flight if the process dies.
    pub careful: Option<ItemHook>,
}

/// Called around each item in careful mode.
#[derive(Clone)]
pub struct ItemHook(pub std::sync::Arc<ItemHookFn>);

/// What an [`ItemHook`] calls.
pub type ItemHookFn = dyn Fn(Option<&SourceItem>) + Send + Sync;

impl std::fmt::Debug for ItemHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemHook")
    }
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
            careful: None,
        }
    }
}

/// One failed item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemError {
    pub image: String,
    pub product_id: String,
    pub kind: String,
    pub reason: String,
}

/// Counters, also passed to progress callbacks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

/// An image decoded and ready for the model, with what its record needs.
struct Decoded {
    item: SourceItem,
    sha256: String,
    width: u32,
    height: u32,
    thumbnail: Vec<u8>,
    copy_features: Vec<u8>,
}

/// What preparing one item came to before the model.
enum Outcome {
    Embed(Box<Decoded>),
    Skipped,
    Failed(Box<(SourceItem, IngestError)>),
}

impl ItemError {
    fn new(item: SourceItem, e: &IngestError) -> Self {
        ItemError { image: item.image, product_id: item.product.product_id, kind: e.kind().into(), reason: e.cause() }
    }
}

/// What is already in the catalog, so that a re-run skips it.
struct Known {
    hashes: HashSet<(String, String)>,
    sources: HashSet<(String, String)>,
}

/// Fetches, hashes and decodes one item on a worker thread.
fn prepare(item: SourceItem, known: &Known, embedder: &Embedder, opts: &IngestOptions, resizer: &mut Resizer) -> Prepared<Outcome> {
    // Already indexed from this very source (a resumed run): no need to fetch it again.
    if known.sources.contains(&(item.product.product_id.clone(), item.image.clone())) {
        return Prepared::Done(Outcome::Skipped);
    }
    let bytes = match fetch(&item.image, &opts.fetch) {
        Ok(b) => b,
        Err(e) => return Prepared::Done(Outcome::Failed(Box::new((item, e)))),
    };
    let sha256 = sha256_hex(&bytes);
    if known.hashes.contains(&(item.product.product_id.clone(), sha256.clone())) {
        return Prepared::Done(Outcome::Skipped);
    }
    match decode_image(&bytes, &item.image, embedder.limits()) {
        Ok(img) => {
            let tensor = embedder.preprocessor().run(&img.rgb, resizer);
            let d = Decoded {
                item,
                sha256,
                width: img.width(),
                height: img.height(),
                thumbnail: crate::catalog::thumbnail(&img.rgb, resizer),
                copy_features: crate::catalog::copy_features(&img.rgb, resizer),
            };
            Prepared::Tensor(Outcome::Embed(Box::new(d)), tensor)
        }
        Err(e) => Prepared::Done(Outcome::Failed(Box::new((item, e.into())))),
    }
}

/// The writer's side of a run: pending images, counts and errors.
struct Writer<'a> {
    catalog: &'a Catalog,
    pending: Vec<NewImage>,
    counts: IngestCounts,
    errors: Vec<ItemError>,
    last_commit: Instant,
}

impl Writer<'_> {
    fn take(&mut self, outcome: Outcome, result: Option<Result<Vec<f32>, crate::embed::EmbedError>>) {
        match (outcome, result) {
            (Outcome::Skipped, _) => self.counts.skipped += 1,
            (Outcome::Failed(failed), _) => {
                let (item, e) = *failed;
                self.counts.failed += 1;
                self.errors.push(ItemError::new(item, &e));
            }
            (Outcome::Embed(d), Some(Ok(embedding))) => {
                let Decoded { item, sha256, width, height, thumbnail, copy_features } = *d;
                self.pending.push(NewImage {
                    product: item.product,
                    source: item.image,
                    sha256,
                    width,
                    height,
                    embedding,
                    thumbnail: Some(thumbnail),
                    copy_features: Some(copy_features),
                });
            }
            (Outcome::Embed(d), Some(Err(e))) => {
                self.counts.failed += 1;
                self.errors.push(ItemError::new(d.item, &IngestError::Embed(e)));
            }
            (Outcome::Embed(d), None) => {
                self.counts.failed += 1;
                let e = IngestError::Source { path: d.item.image.clone().into(), detail: "the model never saw this image".into() };
                self.errors.push(ItemError::new(d.item, &e));
            }
        }
    }

    fn commit(&mut self) -> Result<(), IngestError> {
        self.last_commit = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        let ids = self.catalog.add_images(&self.pending)?;
        let added = ids.iter().filter(|i| i.is_some()).count();
        self.counts.indexed += added;
        self.counts.skipped += ids.len() - added;
        self.pending.clear();
        Ok(())
    }
}

/// Indexes `items` into `catalog`. `row_errors` (e.g. invalid manifest rows)
/// are counted as failures and written to the errors file. `on_progress` is
/// called after every commit.
pub fn ingest(
    catalog: &Catalog,
    embedder: &Embedder,
    items: Vec<SourceItem>,
    row_errors: &[IngestError],
    opts: &IngestOptions,
    mut on_progress: impl FnMut(&IngestCounts),
) -> Result<IngestReport, IngestError> {
    if embedder.name() != catalog.model() {
        return Err(IngestError::Catalog(crate::catalog::CatalogError::ModelMismatch {
            path: catalog.location().into(),
            found: catalog.model().into(),
            wanted: embedder.name().into(),
        }));
    }
    let started = Instant::now();
    let known = Known { hashes: catalog.records().live_hashes()?, sources: catalog.records().live_sources()? };
    let errors: Vec<ItemError> = row_errors
        .iter()
        .map(|e| match e.item() {
            Some(image) => ItemError { image: image.into(), product_id: String::new(), kind: e.kind().into(), reason: e.cause() },
            None => ItemError { image: String::new(), product_id: String::new(), kind: e.kind().into(), reason: e.to_string() },
        })
        .collect();
    let counts = IngestCounts { total: items.len() + row_errors.len(), failed: errors.len(), ..Default::default() };
    let mut progress = Progress::new(opts.progress, counts.total);
    let mut w = Writer { catalog, pending: Vec::new(), counts, errors, last_commit: Instant::now() };
    match &opts.careful {
        Some(hook) => run_careful(&mut w, items, &known, embedder, opts, hook, &mut on_progress)?,
        None => run_pipelined(&mut w, items, &known, embedder, opts, &mut on_progress, &mut progress)?,
    }
    w.commit()?;
    on_progress(&w.counts);
    progress.finish(&w.counts);
    // The errors file first: whatever happens to the dump, the operator gets the list.
    let errors_file = match (&opts.errors_file, w.errors.is_empty()) {
        (Some(p), false) => {
            write_errors(p, &w.errors)
                .map_err(|e| IngestError::Source { path: p.clone(), detail: format!("cannot write errors file: {e}") })?;
            Some(p.clone())
        }
        _ => None,
    };
    catalog.persist()?;
    Ok(IngestReport { counts: w.counts, seconds: started.elapsed().as_secs_f64(), errors: w.errors, errors_file })
}

/// Fetch and decode on workers, batched inference, one writer (the normal mode).
fn run_pipelined(
    w: &mut Writer<'_>,
    items: Vec<SourceItem>,
    known: &Known,
    embedder: &Embedder,
    opts: &IngestOptions,
    on_progress: &mut dyn FnMut(&IngestCounts),
    progress: &mut Progress,
) -> Result<(), IngestError> {
    let mut fatal: Option<IngestError> = None;
    run_pipeline(
        embedder,
        items,
        &opts.pipeline,
        |item: SourceItem, resizer| prepare(item, known, embedder, opts, resizer),
        |outcome, result| {
            if fatal.is_some() {
                return;
            }
            w.take(outcome, result);
            if w.pending.len() >= opts.commit_every || w.last_commit.elapsed() >= opts.commit_interval {
                if let Err(e) = w.commit() {
                    fatal = Some(e);
                    return;
                }
                on_progress(&w.counts);
            }
            progress.update(&w.counts, w.pending.len());
        },
    );
    fatal.map_or(Ok(()), Err)
}

/// One item at a time, each committed before the next, `hook` around each.
fn run_careful(
    w: &mut Writer<'_>,
    items: Vec<SourceItem>,
    known: &Known,
    embedder: &Embedder,
    opts: &IngestOptions,
    hook: &ItemHook,
    on_progress: &mut dyn FnMut(&IngestCounts),
) -> Result<(), IngestError> {
    let mut resizer = Resizer::new();
    for item in items {
        (hook.0)(Some(&item));
        let (outcome, result) = match prepare(item, known, embedder, opts, &mut resizer) {
            Prepared::Tensor(o, t) => {
                let no_vector =
                    || crate::embed::EmbedError::Io { source_name: "model".into(), error: std::io::Error::other("no vector returned") };
                (o, Some(embedder.embed_tensors(&t, 1).and_then(|v| v.into_iter().next().ok_or_else(no_vector))))
            }
            Prepared::Done(o) => (o, None),
        };
        w.take(outcome, result);
        w.commit()?;
        (hook.0)(None);
        on_progress(&w.counts);
    }
    Ok(())
}

/// The `index` use case: reads each source (manifest or folder) and indexes
/// all their items in one run (`knockoff index`, and `knockoff eval`'s
/// temporary index). Rows that are invalid are counted as failures.
pub fn index_sources(
    catalog: &Catalog,
    embedder: &Embedder,
    sources: &[PathBuf],
    defaults: &SourceDefaults,
    opts: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    let (items, row_errors) = read_sources(sources, defaults)?;
    ingest(catalog, embedder, items, &row_errors, opts, |_| {})
}

/// Reads every source (manifest or folder): their items, and their rows that cannot be used.
pub fn read_sources(sources: &[PathBuf], defaults: &SourceDefaults) -> Result<(Vec<SourceItem>, Vec<IngestError>), IngestError> {
    let (mut items, mut row_errors) = (Vec::new(), Vec::new());
    for source in sources {
        let (i, e) = read_source(source, defaults)?;
        items.extend(i);
        row_errors.extend(e);
    }
    Ok((items, row_errors))
}

fn write_errors(path: &std::path::Path, errors: &[ItemError]) -> std::io::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["image", "product_id", "kind", "reason"])?;
    for e in errors {
        w.write_record([&e.image, &e.product_id, &e.kind, &e.reason])?;
    }
    w.flush()
}

/// The rate so far and the time left, once there is a rate worth the name:
/// after 3 s and a few images (the first image's rate says nothing of a job).
fn pace(done: usize, total: usize, elapsed: Duration) -> Option<String> {
    let secs = elapsed.as_secs_f64();
    if secs < 3.0 || done < 4 {
        return None;
    }
    let rate = done as f64 / secs;
    let left = total.saturating_sub(done) as f64 / rate;
    let eta = if left >= 90.0 { format!("{:.0} min", left / 60.0) } else { format!("{left:.0} s") };
    Some(format!("{rate:.1}/s, ETA {eta}"))
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
                if let Ok(style) =
                    indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} images {msg}")
                {
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
        let pace = pace(done, self.total, self.started.elapsed()).map_or_else(String::new, |p| format!("{p}, "));
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{pace}{} skipped, {} failed", c.skipped, c.failed));
        } else if self.plain && self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            eprintln!("[index] {done}/{} images ({pace}{} skipped, {} failed)", self.total, c.skipped, c.failed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_and_an_eta_only_once_there_is_a_rate() {
        assert_eq!(pace(1, 270, Duration::from_millis(1800)), None, "the first image says nothing of the job");
        assert_eq!(pace(2, 270, Duration::from_secs(10)), None);
        assert_eq!(pace(60, 270, Duration::from_secs(4)).as_deref(), Some("15.0/s, ETA 14 s"));
        assert_eq!(pace(100, 10_100, Duration::from_secs(10)).as_deref(), Some("10.0/s, ETA 17 min"));
    }
}
