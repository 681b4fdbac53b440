//! Turning photos into vectors.
//!
//! This module owns everything between "bytes of a photo" and "a unit-length
//! embedding": the model manifest (`models/<name>/model.toml`), locating and
//! loading ONNX Runtime, decoding with strict limits, preprocessing as small
//! composable transforms, a pool of ONNX sessions, and a bulk pipeline that
//! decodes on worker threads while the model runs.
//!
//! Nothing here knows about products, indexes or HTTP.

mod decode;
mod error;
pub mod local;
mod model;
mod pipeline;
mod preprocess;
pub mod query;
pub mod regions;
mod runtime;
mod session;

pub use decode::{decode_image, DecodeLimits, DecodedImage, DEFAULT_MAX_PIXELS, SUPPORTED_FORMATS};
pub use error::EmbedError;
pub use model::{InputDtype, InputLayout, ModelManifest, ModelRegistry, Normalization, ResizeMode, DEFAULT_MODEL as DEFAULT_MODEL_NAME};
pub use pipeline::{embed_files, run_pipeline, PipelineOptions, Prepared};
pub use preprocess::{resize_rgb, Preprocessor};
pub use runtime::{init_runtime, locate_runtime, RuntimeLocation};
pub use session::{l2_normalize, Described, EmbedOptions, Embedder};

/// Cores available to this process (at least 1): the default number of
/// sessions and workers for bulk work.
#[must_use]
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
