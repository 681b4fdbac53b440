//! Bulk indexing jobs over HTTP. A job's manifest is stored in the index's
//! SQLite store before the id is returned; one worker thread runs jobs in
//! order; progress is written back after every commit. At start-up, jobs
//! that were queued or running are queued again, and since indexing skips
//! what is already committed, they resume rather than restart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use crossbeam_channel::{unbounded, Sender};
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::ingest::{ingest, parse_manifest, IngestCounts, IngestOptions, ProgressMode, SourceDefaults};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    /// `{total, indexed, skipped, failed}`.
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    /// Per-item errors `[{image, product_id, kind, reason}]` (first 1000).
    #[schema(value_type = Vec<Object>)]
    pub errors: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub struct Jobs {
    tx: Sender<String>,
    live: Arc<Mutex<HashMap<String, IngestCounts>>>,
}

const MAX_STORED_ERRORS: usize = 1000;

impl Jobs {
    /// Starts the worker thread. It holds only a weak reference to the state.
    pub fn start(state: Weak<AppState>) -> Jobs {
        let (tx, rx) = unbounded::<String>();
        let live: Arc<Mutex<HashMap<String, IngestCounts>>> = Default::default();
        let live2 = live.clone();
        std::thread::Builder::new()
            .name("knockoff-jobs".into())
            .spawn(move || {
                for id in rx {
                    let Some(state) = state.upgrade() else { break };
                    run_job(&state, &id, &live2);
                }
            })
            .expect("spawn job thread");
        Jobs { tx, live }
    }

    /// Queues jobs left unfinished by an earlier run.
    pub fn resume(&self, state: &AppState) -> Result<usize, ApiError> {
        let ids = state.catalog.with_store(|s| s.unfinished_jobs())?;
        for id in &ids {
            let _ = self.tx.send(id.clone());
        }
        Ok(ids.len())
    }

    /// Validates and stores a manifest, queues it, and returns the job id.
    pub fn submit(&self, state: &AppState, format: &str, text: String) -> Result<String, ApiError> {
        let (items, _) = parse_manifest(&text, Path::new("upload"), None, format == "jsonl", &SourceDefaults::default())
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let _ = items;
        let id = new_id();
        state.catalog.with_store(|s| s.create_job(&id, format, &text))?;
        let _ = self.tx.send(id.clone());
        Ok(id)
    }

    pub fn view(&self, state: &AppState, id: &str) -> Result<JobView, ApiError> {
        let row = state.catalog.with_store(|s| s.job(id))?.ok_or_else(|| ApiError::NotFound(format!("unknown job '{id}'")))?;
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        let counts = match live {
            Some(c) if row.status == "running" => serde_json::to_value(c).unwrap_or_default(),
            _ => serde_json::from_str(&row.counts).unwrap_or_default(),
        };
        Ok(JobView {
            id: row.id,
            status: row.status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            counts,
            errors: serde_json::from_str(&row.errors).unwrap_or_default(),
            message: row.message,
        })
    }
}

fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let seed = format!("{t}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    format!("job-{}", &crate::util::sha256_hex(seed.as_bytes())[..16])
}

fn run_job(state: &AppState, id: &str, live: &Mutex<HashMap<String, IngestCounts>>) {
    let set = |status: &str, counts: &IngestCounts, errors: &str, msg: Option<&str>| {
        let c = serde_json::to_string(counts).unwrap_or_default();
        if let Err(e) = state.catalog.with_store(|s| s.update_job(id, status, &c, errors, msg)) {
            tracing::error!("job {id}: cannot record progress: {e}");
        }
    };
    let row = match state.catalog.with_store(|s| s.job(id)) {
        Ok(Some(r)) => r,
        _ => return,
    };
    let parsed = parse_manifest(&row.source, Path::new("upload"), None, row.format == "jsonl", &SourceDefaults::default());
    let (items, row_errors) = match parsed {
        Ok(v) => v,
        Err(e) => {
            set("failed", &IngestCounts::default(), "[]", Some(&e.to_string()));
            return;
        }
    };
    set("running", &IngestCounts { total: items.len() + row_errors.len(), ..Default::default() }, "[]", None);
    let mut opts = IngestOptions { progress: ProgressMode::Quiet, ..Default::default() };
    opts.fetch.allow_private = state.config.allow_private_urls;
    opts.fetch.max_bytes = state.config.max_body_bytes as u64;
    opts.pipeline.inference_threads = state.config.inference_threads;
    let result = ingest(&state.catalog, &state.embedder, items, row_errors, &opts, |c| {
        live.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), c.clone());
        set("running", c, "[]", None);
    });
    live.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    match result {
        Ok(r) => {
            let errors: Vec<_> = r.errors.iter().take(MAX_STORED_ERRORS).collect();
            set("done", &r.counts, &serde_json::to_string(&errors).unwrap_or_default(), None);
        }
        Err(e) => set("failed", &IngestCounts::default(), "[]", Some(&e.to_string())),
    }
}
