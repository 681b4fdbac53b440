//! Inference off the async runtime: dedicated threads, each owning a turn
//! at the embedder, fed by a bounded queue. A full queue is a 503, never a
//! blocked runtime.

use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{bounded, Sender, TrySendError};
use tokio::sync::oneshot;

use super::error::ApiError;
use crate::embed::{Described, EmbedError, Embedder};

/// What a job wants: the vector only (indexing an upload), or the vector and
/// the copy-detection features (a lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Vector,
    Query,
}

type Job = (Vec<u8>, String, Want, oneshot::Sender<Result<Described, EmbedError>>);

#[derive(Clone)]
pub struct InferencePool {
    tx: Sender<Job>,
}

impl InferencePool {
    pub fn new(embedder: &Arc<Embedder>, threads: usize, queue: usize) -> Self {
        let (tx, rx) = bounded::<Job>(queue.max(1));
        for i in 0..threads.max(1) {
            let (rx, embedder) = (rx.clone(), embedder.clone());
            std::thread::Builder::new()
                .name(format!("knockoff-infer-{i}"))
                .spawn(move || {
                    for (bytes, name, want, reply) in rx {
                        let out = match want {
                            Want::Vector => {
                                embedder.embed_bytes(&bytes, &name).map(|vector| Described { vector, local: None, regions: Vec::new() })
                            }
                            Want::Query => embedder.describe_bytes(&bytes, &name),
                        };
                        let _ = reply.send(out);
                    }
                })
                .expect("spawn inference thread");
        }
        InferencePool { tx }
    }

    /// Photos waiting for an inference thread.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// The photo's vector (no copy features).
    pub async fn embed(&self, bytes: Vec<u8>, name: String) -> Result<Described, ApiError> {
        self.run(bytes, name, Want::Vector).await
    }

    /// The photo's vector and copy-detection features, for a lookup.
    pub async fn describe(&self, bytes: Vec<u8>, name: String) -> Result<Described, ApiError> {
        self.run(bytes, name, Want::Query).await
    }

    async fn run(&self, bytes: Vec<u8>, name: String, want: Want) -> Result<Described, ApiError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send((bytes, name, want, reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                shed_logged();
                return Err(ApiError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::Internal("inference threads stopped".into())),
        }
        rx.await.map_err(|_| ApiError::Internal("inference thread dropped the request".into()))?.map_err(ApiError::from)
    }
}

/// Logs load shedding: at most one line a second, with how many requests
/// were turned away since the last line (an overload does not flood the log).
fn shed_logged() {
    static SHED: AtomicU64 = AtomicU64::new(0);
    static LAST_SECOND: AtomicU64 = AtomicU64::new(0);
    SHED_TOTAL.fetch_add(1, Ordering::Relaxed);
    let n = SHED.fetch_add(1, Ordering::Relaxed) + 1;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if LAST_SECOND.swap(now, Ordering::Relaxed) != now {
        SHED.fetch_sub(n, Ordering::Relaxed);
        tracing::warn!(shed = n, "inference queue full: answered 503 with Retry-After (requests turned away since the last such line)");
    }
}

/// Requests turned away because the queue was full, since the process started.
static SHED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// How many requests the full queue turned away so far.
pub fn shed_total() -> u64 {
    SHED_TOTAL.load(Ordering::Relaxed)
}
