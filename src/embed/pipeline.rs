//! Bulk embedding: worker threads read, decode and preprocess; inference
//! threads (one per pooled session) batch tensors through the model; the
//! calling thread receives each result.

use parking_lot::Mutex;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use fast_image_resize::Resizer;

use super::{EmbedError, Embedder};

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Decode/preprocess worker threads.
    pub workers: usize,
    /// Images per model call.
    pub batch_size: usize,
    /// Threads calling the model at once (useful up to the embedder's session count).
    pub inference_threads: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        let cores = crate::embed::available_cores();
        PipelineOptions { workers: (cores / 2).max(1), batch_size: 16, inference_threads: 1 }
    }
}

/// What a worker made of one item.
pub enum Prepared<M> {
    /// A tensor to run through the model, with the caller's metadata.
    Tensor(M, Vec<f32>),
    /// Nothing to embed (skipped, or failed before the model); passed straight to the sink.
    Done(M),
}

type Outcome<M> = (M, Option<Result<Vec<f32>, EmbedError>>);

/// Runs `prepare` on worker threads over `items`, batches the tensors through
/// `embedder`, and calls `sink` on this thread for each item as it finishes
/// (not necessarily in input order): `Some(Ok(embedding))`, `Some(Err(..))`
/// if the model call failed, or `None` for [`Prepared::Done`].
pub fn run_pipeline<T, M, I, P, S>(embedder: &Embedder, items: I, opts: &PipelineOptions, prepare: P, mut sink: S)
where
    I: IntoIterator<Item = T>,
    I::IntoIter: Send,
    T: Send,
    M: Send,
    P: Fn(T, &mut Resizer) -> Prepared<M> + Sync,
    S: FnMut(M, Option<Result<Vec<f32>, EmbedError>>),
{
    let batch_size = opts.batch_size.max(1);
    let source = Mutex::new(items.into_iter());
    let (tx, rx) = bounded::<Prepared<M>>(batch_size * 2);
    let (done_tx, done_rx) = bounded::<Outcome<M>>(batch_size * 2);
    std::thread::scope(|scope| {
        for _ in 0..opts.workers.max(1) {
            let tx = tx.clone();
            let (source, prepare) = (&source, &prepare);
            scope.spawn(move || {
                let mut resizer = Resizer::new();
                loop {
                    let next = source.lock().next();
                    let Some(item) = next else { break };
                    if tx.send(prepare(item, &mut resizer)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for _ in 0..opts.inference_threads.max(1) {
            let (rx, done_tx) = (rx.clone(), done_tx.clone());
            scope.spawn(move || infer_loop(embedder, &rx, batch_size, |o| done_tx.send(o).is_ok()));
        }
        drop(done_tx);
        drop(rx);
        for (m, r) in done_rx {
            sink(m, r);
        }
    });
}

/// Collects batches from `rx` and runs them; stops when `rx` is drained and closed.
fn infer_loop<M>(embedder: &Embedder, rx: &Receiver<Prepared<M>>, batch_size: usize, mut emit: impl FnMut(Outcome<M>) -> bool) {
    let len = embedder.preprocessor().tensor_len();
    let mut metas: Vec<M> = Vec::with_capacity(batch_size);
    let mut buf: Vec<f32> = Vec::with_capacity(batch_size * len);
    let mut open = true;
    while open || !metas.is_empty() {
        // Fill a batch: wait for the first item, then briefly for more.
        while open && metas.len() < batch_size {
            let msg = if metas.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(Duration::from_millis(50))
            };
            match msg {
                Ok(Prepared::Tensor(m, t)) => {
                    metas.push(m);
                    buf.extend_from_slice(&t);
                }
                Ok(Prepared::Done(m)) => {
                    if !emit((m, None)) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        if metas.is_empty() {
            continue;
        }
        let results: Vec<Result<Vec<f32>, EmbedError>> = match embedder.embed_tensors(&buf, metas.len()) {
            Ok(vecs) => vecs.into_iter().map(Ok).collect(),
            Err(e) => {
                let msg = e.to_string();
                metas.iter().map(|_| Err(EmbedError::Runtime(msg.clone()))).collect()
            }
        };
        buf.clear();
        for (m, r) in metas.drain(..).zip(results) {
            if !emit((m, Some(r))) {
                return;
            }
        }
    }
}

/// The `embed` use case: embeds image files in bulk, one result per file, in order.
pub fn embed_files(embedder: &Embedder, paths: &[std::path::PathBuf], opts: &PipelineOptions) -> Vec<Result<Vec<f32>, EmbedError>> {
    // Every slot starts as "not embedded"; the sink overwrites each one it reaches.
    let not_embedded =
        |p: &std::path::PathBuf| EmbedError::Io { source_name: p.display().to_string(), error: std::io::Error::other("not embedded") };
    let mut results: Vec<Result<Vec<f32>, EmbedError>> = paths.iter().map(|p| Err(not_embedded(p))).collect();
    run_pipeline(
        embedder,
        paths.iter().enumerate(),
        opts,
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
        |(i, err), res| match (err, res) {
            (Some(e), _) => results[i] = Err(e),
            (None, Some(r)) => results[i] = r,
            (None, None) => {}
        },
    );
    results
}
