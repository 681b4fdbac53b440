//! Inference off the async runtime: dedicated threads, each owning a turn
//! at the embedder, fed by two bounded queues. A full queue is a 503, never
//! a blocked runtime.
//!
//! - **Lanes.** A single lookup waits in the interactive lane, which the
//!   threads always empty first; batch items and catalog uploads wait in the
//!   bulk lane. A marketplace's one photo is not queued behind another
//!   client's 32-photo batch.
//! - **Abandoned work is dropped.** A request whose client went away drops
//!   the receiving end of its reply; a thread that takes such a photo from
//!   the queue skips it (counted in `knockoff_queue_abandoned_total`) instead
//!   of decoding and embedding it for nobody.
//! - **Memory goes back.** After a photo, when both queues are empty, a
//!   thread hands freed heap back to the system (at most once a second), so
//!   a burst of large photos does not leave the process at its peak size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select_biased, Receiver, Sender, TrySendError};
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

/// Which queue a photo waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// One photo a client waits for (a single lookup): served first.
    Interactive,
    /// A batch item or a catalog upload.
    Bulk,
}

/// The work one thread does for one photo.
pub type Work = dyn Fn(&[u8], &str, Want) -> Result<Described, EmbedError> + Send + Sync;

struct Job {
    bytes: Vec<u8>,
    name: String,
    want: Want,
    reply: oneshot::Sender<Result<Described, EmbedError>>,
}

/// What the pool has counted since the process started.
#[derive(Debug, Default)]
struct Counters {
    shed: AtomicU64,
    abandoned: AtomicU64,
    shed_this_second: AtomicU64,
    last_shed_second: AtomicU64,
}

#[derive(Clone)]
pub struct InferencePool {
    interactive: Sender<Job>,
    bulk: Sender<Job>,
    counters: Arc<Counters>,
}

impl InferencePool {
    /// `threads` threads running the embedder; each lane holds up to `queue` photos.
    pub fn new(embedder: &Arc<Embedder>, threads: usize, queue: usize) -> Self {
        let embedder = embedder.clone();
        Self::with_work(
            &(Arc::new(move |bytes: &[u8], name: &str, want: Want| match want {
                Want::Vector => embedder.embed_bytes(bytes, name).map(|vector| Described { vector, copy: None, regions: Vec::new() }),
                Want::Query => embedder.describe_bytes(bytes, name),
            }) as Arc<Work>),
            threads,
            queue,
        )
    }

    /// A pool whose threads run `work` (the embedder in the service; a stand-in in tests).
    pub fn with_work(work: &Arc<Work>, threads: usize, queue: usize) -> Self {
        let (interactive, hi) = bounded::<Job>(queue.max(1));
        let (bulk, lo) = bounded::<Job>(queue.max(1));
        let counters = Arc::new(Counters::default());
        for i in 0..threads.max(1) {
            let (hi, lo, work, counters) = (hi.clone(), lo.clone(), work.clone(), counters.clone());
            std::thread::Builder::new()
                .name(format!("knockoff-infer-{i}"))
                .spawn(move || serve(&hi, &lo, &*work, &counters))
                .expect("spawn inference thread");
        }
        InferencePool { interactive, bulk, counters }
    }

    /// Photos waiting for an inference thread, both lanes.
    pub fn queued(&self) -> usize {
        self.interactive.len() + self.bulk.len()
    }

    /// Requests turned away because their lane was full.
    pub fn shed(&self) -> u64 {
        self.counters.shed.load(Ordering::Relaxed)
    }

    /// Photos skipped because their client had gone before a thread took them.
    pub fn abandoned(&self) -> u64 {
        self.counters.abandoned.load(Ordering::Relaxed)
    }

    /// The photo's vector (no copy features).
    pub async fn embed(&self, bytes: Vec<u8>, name: String, lane: Lane) -> Result<Described, ApiError> {
        self.run(bytes, name, Want::Vector, lane).await
    }

    /// The photo's vector and copy-detection features, for a lookup.
    pub async fn describe(&self, bytes: Vec<u8>, name: String, lane: Lane) -> Result<Described, ApiError> {
        self.run(bytes, name, Want::Query, lane).await
    }

    async fn run(&self, bytes: Vec<u8>, name: String, want: Want, lane: Lane) -> Result<Described, ApiError> {
        let (reply, rx) = oneshot::channel();
        let tx = match lane {
            Lane::Interactive => &self.interactive,
            Lane::Bulk => &self.bulk,
        };
        match tx.try_send(Job { bytes, name, want, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shed_logged();
                return Err(ApiError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::Internal("inference threads stopped".into())),
        }
        rx.await.map_err(|_| ApiError::Internal("inference thread dropped the request".into()))?.map_err(ApiError::from)
    }

    /// Logs load shedding: at most one line a second, with how many requests
    /// were turned away since the last line (an overload does not flood the log).
    fn shed_logged(&self) {
        let c = &self.counters;
        c.shed.fetch_add(1, Ordering::Relaxed);
        let n = c.shed_this_second.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if c.last_shed_second.swap(now, Ordering::Relaxed) != now {
            c.shed_this_second.fetch_sub(n, Ordering::Relaxed);
            tracing::warn!(shed = n, "inference queue full: answered 503 with Retry-After (requests turned away since the last such line)");
        }
    }
}

/// One inference thread: the interactive lane first, then whichever has work.
fn serve(hi: &Receiver<Job>, lo: &Receiver<Job>, work: &Work, counters: &Counters) {
    let mut last_trim = Instant::now();
    loop {
        // Biased: when both lanes have work, the interactive one is taken.
        let next = select_biased! {
            recv(hi) -> j => j,
            recv(lo) -> j => j,
        };
        let Ok(job) = next else { return };
        if job.reply.is_closed() {
            counters.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let out = work(&job.bytes, &job.name, job.want);
        drop(job.bytes);
        let _ = job.reply.send(out);
        if hi.is_empty() && lo.is_empty() && last_trim.elapsed() >= Duration::from_secs(1) {
            release_free_memory();
            last_trim = Instant::now();
        }
    }
}

/// Gives the heap's free pages back to the system (glibc keeps them otherwise).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Gate = (crossbeam_channel::Receiver<String>, crossbeam_channel::Sender<()>);

    /// A pool of one thread whose work says when it starts, waits at a gate,
    /// and logs the names it ran.
    fn gated(queue: usize) -> (InferencePool, Arc<Mutex<Vec<String>>>, Gate) {
        let (open, gate) = crossbeam_channel::unbounded::<()>();
        let (started_tx, started) = crossbeam_channel::unbounded::<String>();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let log = ran.clone();
        let work = move |_: &[u8], name: &str, _: Want| {
            started_tx.send(name.to_string()).ok();
            gate.recv().ok();
            log.lock().unwrap().push(name.to_string());
            Ok(Described { vector: vec![1.0], copy: None, regions: Vec::new() })
        };
        (InferencePool::with_work(&(Arc::new(work) as Arc<Work>), 1, queue), ran, (started, open))
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn photos_whose_client_left_are_skipped_and_single_lookups_go_first() {
        let (pool, ran, (started, open)) = gated(8);
        let p = pool.clone();
        let first = tokio::spawn(async move { p.embed(vec![], "first".into(), Lane::Bulk).await });
        until("the thread to take the first photo", || started.try_recv().is_ok()).await;
        // Queued behind it: two bulk photos whose clients leave, one that stays, one interactive.
        let mut left = Vec::new();
        for name in ["gone-1", "gone-2"] {
            let p = pool.clone();
            left.push(tokio::spawn(async move { p.embed(vec![], name.into(), Lane::Bulk).await }));
        }
        let p = pool.clone();
        let kept = tokio::spawn(async move { p.embed(vec![], "bulk".into(), Lane::Bulk).await });
        until("three bulk photos queued", || pool.queued() == 3).await;
        let p = pool.clone();
        let single = tokio::spawn(async move { p.describe(vec![], "single".into(), Lane::Interactive).await });
        until("the interactive photo queued", || pool.queued() == 4).await;
        for h in &left {
            h.abort();
        }
        for h in left {
            assert!(h.await.is_err(), "aborted");
        }
        for _ in 0..3 {
            open.send(()).unwrap();
        }
        assert!(first.await.unwrap().is_ok());
        assert!(single.await.unwrap().is_ok());
        assert!(kept.await.unwrap().is_ok());
        assert_eq!(*ran.lock().unwrap(), ["first", "single", "bulk"]);
        assert_eq!((pool.abandoned(), ran.lock().unwrap().len()), (2, 3));
    }

    #[tokio::test]
    async fn a_full_lane_is_busy_without_blocking_the_other() {
        let (pool, _, (started, open)) = gated(1);
        let p = pool.clone();
        let running = tokio::spawn(async move { p.embed(vec![], "a".into(), Lane::Bulk).await });
        until("the thread to take the first photo", || started.try_recv().is_ok()).await;
        let p = pool.clone();
        let waiting = tokio::spawn(async move { p.embed(vec![], "b".into(), Lane::Bulk).await });
        until("one bulk photo queued", || pool.queued() == 1).await;
        assert!(matches!(pool.embed(vec![], "c".into(), Lane::Bulk).await, Err(ApiError::Busy)));
        assert_eq!(pool.shed(), 1);
        let p = pool.clone();
        let single = tokio::spawn(async move { p.describe(vec![], "d".into(), Lane::Interactive).await });
        until("the interactive photo queued", || pool.queued() == 2).await;
        for _ in 0..3 {
            open.send(()).unwrap();
        }
        for h in [running, waiting, single] {
            assert!(h.await.unwrap().is_ok());
        }
    }
}
