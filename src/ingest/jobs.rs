//! Indexing jobs: a manifest is stored in the catalog's store before its id
//! is returned; a worker thread per process claims jobs in order (on the
//! shared backend `FOR UPDATE SKIP LOCKED`, so each job runs on one replica)
//! and writes progress back after every commit. A job whose runner died is
//! taken up again (the embedded backend at start-up, the shared one when the
//! runner's lease lapses), and since indexing skips what is already
//! committed, it resumes rather than restarts. The HTTP API's `/v1/jobs`
//! only translates.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use serde::Serialize;

use super::{
    ingest, parse_manifest, FetchOptions, IngestCounts, IngestError, IngestOptions, ItemError, ItemHook, ManifestFormat, ProgressMode,
    SourceDefaults, SourceItem,
};
use crate::catalog::{Catalog, CatalogError, JobStatus, JobSummary, Page};
use crate::embed::Embedder;

/// At most this many items in one job (a bigger catalog is several jobs, or `knockoff index`).
pub const MAX_JOB_ITEMS: usize = 100_000;

/// Lines in `text` (the last one need not end with a newline).
fn bytecount_lines(text: &str) -> usize {
    text.bytes().filter(|b| *b == b'\n').count() + usize::from(!text.ends_with('\n'))
}

/// At most this many per-item errors are kept with a job.
const MAX_STORED_ERRORS: usize = 1000;

/// How jobs fetch and embed.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub fetch: FetchOptions,
    pub inference_threads: usize,
}

/// A job as stored, with live counts while it runs.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub status: JobStatus,
    pub created_at: String,
    pub updated_at: String,
    pub counts: IngestCounts,
    /// Per-item errors (the first 1000).
    pub errors: Vec<ItemError>,
    pub message: Option<String>,
    /// The replica that runs or ran it (shared backend).
    pub runner: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Invalid(IngestError),
    #[error("the request was given up before the job was stored")]
    Abandoned,
    #[error("unknown job '{0}'")]
    Unknown(String),
    #[error("a job holds at most {MAX_JOB_ITEMS} items (this one has more): split the manifest, or index it with `knockoff index`")]
    TooMany,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl JobStatus {
    /// How a job whose items all ran ended: `failed` when none was indexed
    /// (or found already there) though some were tried, `done_with_errors`
    /// when some failed, else `done`; with a message for the first two.
    #[must_use]
    pub fn of_finished(c: &IngestCounts) -> (JobStatus, Option<&'static str>) {
        if c.failed == 0 {
            (JobStatus::Done, None)
        } else if c.indexed + c.skipped == 0 {
            (JobStatus::Failed, Some("no item could be indexed: see errors"))
        } else {
            (JobStatus::DoneWithErrors, Some("some items could not be indexed: see errors"))
        }
    }
}

type Live = Arc<Mutex<HashMap<String, IngestCounts>>>;

/// How often an idle worker looks for jobs submitted elsewhere (another replica).
const POLL: Duration = Duration::from_millis(500);

/// The job queue and its worker thread (which ends when the queue is dropped).
pub struct JobQueue {
    /// Wakes the worker when a job was submitted here.
    tx: Sender<()>,
    live: Live,
    catalog: Arc<Catalog>,
}

/// This process's name as a job runner: host and process id.
fn runner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "host".into(), |h| h.trim().to_string());
    format!("{host}:{}", std::process::id())
}

impl JobQueue {
    /// Starts the worker, which also takes up the jobs an earlier run left
    /// unfinished; returns the queue and how many of those there were.
    pub fn start(catalog: Arc<Catalog>, embedder: Arc<Embedder>, settings: JobSettings) -> Result<(JobQueue, usize), JobError> {
        let resumed = catalog.recover_jobs()?;
        let (tx, rx) = unbounded::<()>();
        let live: Live = Arc::default();
        let (live2, catalog2) = (live.clone(), catalog.clone());
        std::thread::Builder::new()
            .name("knockoff-jobs".into())
            .spawn(move || {
                let me = runner_name();
                loop {
                    match catalog2.records().claim_job(&me) {
                        Ok(Some(id)) => {
                            run_claimed(&catalog2, &embedder, &settings, &id, &live2, &me);
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!("jobs: cannot claim the next job: {e}"),
                    }
                    if let Err(RecvTimeoutError::Disconnected) = rx.recv_timeout(POLL) {
                        return;
                    }
                }
            })
            .map_err(|e| CatalogError::Io { path: catalog.location().into(), error: e })?;
        Ok((JobQueue { tx, live, catalog }, resumed))
    }

    /// Validates and stores a manifest, queues it, and returns the job id.
    /// Stores a job for `text` (at most [`MAX_JOB_ITEMS`] rows, counted
    /// before anything is parsed) and wakes the runner; `still_wanted` is
    /// asked just before the job is stored, so a request given up meanwhile
    /// (timed out, client gone) leaves no job behind.
    pub fn submit(&self, format: ManifestFormat, text: &str, still_wanted: &dyn Fn() -> bool) -> Result<String, JobError> {
        // A row is a line at most (a quoted CSV field may span lines): an upper bound, no allocation.
        if bytecount_lines(text) > MAX_JOB_ITEMS + 1 {
            return Err(JobError::TooMany);
        }
        parse_manifest(text.as_bytes(), Path::new("upload"), None, format, &SourceDefaults::default()).map_err(JobError::Invalid)?;
        if !still_wanted() {
            return Err(JobError::Abandoned);
        }
        let id = new_id();
        self.catalog.records().create_job(&id, format.as_str(), text)?;
        // Given up while it was being stored (storing a large manifest takes a while): take it back
        // before any runner hears of it, so that a job exists only when its id was returned.
        if !still_wanted() && self.catalog.records().withdraw_job(&id)? {
            return Err(JobError::Abandoned);
        }
        let _ = self.tx.send(());
        Ok(id)
    }

    /// A job's state (live counts while it runs).
    /// One page of the stored jobs, newest first, after the job `starting_after` (`""`: from the newest).
    pub fn page(&self, starting_after: &str, limit: usize) -> Result<Page<JobSummary>, JobError> {
        let rows = self.catalog.records().jobs_page(starting_after, limit.saturating_add(1))?;
        Ok(Page::of(rows.ok_or_else(|| JobError::Unknown(starting_after.into()))?, limit))
    }

    pub fn get(&self, id: &str) -> Result<JobRecord, JobError> {
        let row = self.catalog.records().job(id)?.ok_or_else(|| JobError::Unknown(id.into()))?;
        let live = self.live.lock().get(id).cloned();
        let counts = match live {
            Some(c) if row.status == JobStatus::Running => c,
            _ => serde_json::from_str(&row.counts).unwrap_or_default(),
        };
        Ok(JobRecord {
            id: row.id,
            status: row.status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            counts,
            errors: serde_json::from_str(&row.errors).unwrap_or_default(),
            message: row.message,
            runner: row.runner,
        })
    }
}

fn new_id() -> String {
    // Job ids keep their historical shape, `job-<16 hex>`.
    let id = crate::util::new_id("job");
    format!("job-{}", &id[4..20])
}

/// The items and row errors of a stored job; items that crashed the process
/// before (the quarantine, plus the one in flight at the last crash) become
/// errors. `Err` when the job's manifest cannot be read at all.
fn job_items(catalog: &Catalog, row: &crate::catalog::JobRow) -> Result<(Vec<SourceItem>, Vec<IngestError>), IngestError> {
    let format = row.format.parse::<ManifestFormat>().map_err(|detail| IngestError::Source { path: "upload".into(), detail })?;
    let (items, mut row_errors) = parse_manifest(row.source.as_bytes(), Path::new("upload"), None, format, &SourceDefaults::default())?;
    let mut quarantined: Vec<String> = serde_json::from_str(&row.quarantined).unwrap_or_default();
    if let (Some(poison), true) = (&row.in_flight, row.crashes > 0) {
        tracing::warn!("job {}: {poison} was in flight when the process died: quarantined", row.id);
        catalog.records().quarantine_job_in_flight(&row.id)?;
        quarantined.push(poison.clone());
    }
    let (bad, items): (Vec<SourceItem>, Vec<SourceItem>) = items.into_iter().partition(|it| quarantined.contains(&it.image));
    row_errors.extend(bad.into_iter().map(|it| IngestError::Crashed { source_name: it.image }));
    Ok((items, row_errors))
}

/// Runs a claimed job while telling the other replicas, every third of the
/// lease, that this one still runs it.
fn run_claimed(
    catalog: &Arc<Catalog>,
    embedder: &Embedder,
    settings: &JobSettings,
    id: &str,
    live: &Mutex<HashMap<String, IngestCounts>>,
    me: &str,
) {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let every = crate::catalog::store::job_lease() / 3;
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if let Err(e) = catalog.records().renew_job(id, me) {
                    tracing::warn!("job {id}: cannot renew its lease: {e}");
                }
            }
        });
        run_job(catalog, embedder, settings, id, live);
        drop(stop);
    });
}

fn run_job(catalog: &Arc<Catalog>, embedder: &Embedder, settings: &JobSettings, id: &str, live: &Mutex<HashMap<String, IngestCounts>>) {
    let set = |status: JobStatus, counts: &IngestCounts, errors: &str, msg: Option<&str>| {
        let c = serde_json::to_string(counts).unwrap_or_default();
        if let Err(e) = catalog.records().update_job(id, status, &c, errors, msg) {
            tracing::error!("job {id}: cannot record progress: {e}");
        }
    };
    let Ok(Some(row)) = catalog.records().job(id) else { return };
    let (items, row_errors) = match job_items(catalog, &row) {
        Ok(v) => v,
        Err(e) => {
            TOTALS.count(false, &IngestCounts::default());
            tracing::warn!(job = id, error = %e, "job failed: its manifest cannot be read");
            return set(JobStatus::Failed, &IngestCounts::default(), "[]", Some(&e.to_string()));
        }
    };
    set(JobStatus::Running, &IngestCounts { total: items.len() + row_errors.len(), ..Default::default() }, "[]", None);
    tracing::info!(job = id, items = items.len() + row_errors.len(), resumed = row.crashes > 0, "job started");
    let started = std::time::Instant::now();
    let mut opts = IngestOptions { progress: ProgressMode::Quiet, fetch: settings.fetch.clone(), ..Default::default() };
    opts.pipeline.inference_threads = settings.inference_threads;
    if row.crashes > 0 {
        // The process died while this job ran: go carefully, one item at a
        // time, recording the one in flight, so that an item that kills the
        // process again is quarantined on the next start instead of replayed.
        let (catalog, id) = (catalog.clone(), id.to_string());
        opts.careful = Some(ItemHook(Arc::new(move |item: Option<&SourceItem>| {
            if let Err(e) = catalog.records().set_job_in_flight(&id, item.map(|i| i.image.as_str())) {
                tracing::error!("job {id}: cannot record the item in flight: {e}");
            }
        })));
    }
    let result = ingest(catalog, embedder, items, &row_errors, &opts, |c| {
        live.lock().insert(id.to_string(), c.clone());
        set(JobStatus::Running, c, "[]", None);
    });
    live.lock().remove(id);
    match result {
        Ok(r) => {
            let errors: Vec<_> = r.errors.iter().take(MAX_STORED_ERRORS).map(redacted).collect();
            let (status, message) = JobStatus::of_finished(&r.counts);
            set(status, &r.counts, &serde_json::to_string(&errors).unwrap_or_default(), message);
            let c = &r.counts;
            TOTALS.count(true, c);
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                job = id,
                status = status.as_str(),
                indexed = c.indexed,
                skipped = c.skipped,
                failed = c.failed,
                secs,
                "job done"
            );
        }
        Err(e) => {
            set(JobStatus::Failed, &IngestCounts::default(), "[]", Some(&e.to_string()));
            TOTALS.count(false, &IngestCounts::default());
            tracing::warn!(job = id, error = %e, "job failed");
        }
    }
}

/// Jobs and items this process ran to the end, by outcome (for metrics).
#[derive(Debug, Default)]
pub struct JobTotals {
    done: AtomicUsize,
    failed: AtomicUsize,
    indexed: AtomicUsize,
    skipped: AtomicUsize,
    items_failed: AtomicUsize,
}

static TOTALS: JobTotals = JobTotals {
    done: AtomicUsize::new(0),
    failed: AtomicUsize::new(0),
    indexed: AtomicUsize::new(0),
    skipped: AtomicUsize::new(0),
    items_failed: AtomicUsize::new(0),
};

impl JobTotals {
    fn count(&self, done: bool, c: &IngestCounts) {
        let _ = if done { &self.done } else { &self.failed }.fetch_add(1, Ordering::Relaxed);
        self.indexed.fetch_add(c.indexed, Ordering::Relaxed);
        self.skipped.fetch_add(c.skipped, Ordering::Relaxed);
        self.items_failed.fetch_add(c.failed, Ordering::Relaxed);
    }
}

/// Counts by outcome name.
pub type Counts<const N: usize> = [(&'static str, u64); N];

/// Jobs (done, failed) and job items (indexed, skipped, failed) this process ran so far.
#[must_use]
pub fn job_totals() -> (Counts<2>, Counts<3>) {
    let n = |a: &AtomicUsize| a.load(Ordering::Relaxed) as u64;
    let t = &TOTALS;
    (
        [("done", n(&t.done)), ("failed", n(&t.failed))],
        [("indexed", n(&t.indexed)), ("skipped", n(&t.skipped)), ("failed", n(&t.items_failed))],
    )
}

/// A job's item error as stored and shown over HTTP: for a file on the
/// server, the same words whether it is missing, unreadable or not an image,
/// so that an uploaded manifest cannot probe the server's file system.
fn redacted(e: &ItemError) -> ItemError {
    if super::is_url(&e.image) || matches!(e.kind.as_str(), "manifest-row" | "crashed" | "catalog") {
        return e.clone();
    }
    ItemError {
        kind: "unreadable".into(),
        reason: "cannot be read as an image on the server (missing, unreadable or not an image)".into(),
        ..e.clone()
    }
}
