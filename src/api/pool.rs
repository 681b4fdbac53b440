//! Inference off the async runtime: dedicated threads, each owning a turn
//! at the embedder, fed by a bounded queue. A full queue is a 503, never a
//! blocked runtime.

use std::sync::Arc;

use crossbeam_channel::{bounded, Sender, TrySendError};
use tokio::sync::oneshot;

use super::error::ApiError;
use crate::embed::{EmbedError, Embedder};

type Job = (Vec<u8>, String, oneshot::Sender<Result<Vec<f32>, EmbedError>>);

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
                    for (bytes, name, reply) in rx {
                        let _ = reply.send(embedder.embed_bytes(&bytes, &name));
                    }
                })
                .expect("spawn inference thread");
        }
        InferencePool { tx }
    }

    pub async fn embed(&self, bytes: Vec<u8>, name: String) -> Result<Vec<f32>, ApiError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send((bytes, name, reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ApiError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::Internal("inference threads stopped".into())),
        }
        rx.await.map_err(|_| ApiError::Internal("inference thread dropped the request".into()))?.map_err(ApiError::from)
    }
}
