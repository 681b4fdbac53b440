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
mod model;
mod pipeline;
mod preprocess;
mod runtime;
mod session;

pub use decode::{decode_image, DecodeLimits, DecodedImage, DEFAULT_MAX_PIXELS, SUPPORTED_FORMATS};

/// The default pixel limit, for CLI defaults.
pub const fn decode_default_max_pixels() -> u64 {
    DEFAULT_MAX_PIXELS
}
pub use error::EmbedError;
pub use model::{InputLayout, ModelManifest, ModelRegistry, Normalization, ResizeMode, DEFAULT_MODEL as DEFAULT_MODEL_NAME};
pub use pipeline::{run_pipeline, PipelineOptions, Prepared};
pub use preprocess::Preprocessor;
pub use runtime::{init_runtime, locate_runtime, RuntimeLocation};
pub use session::{l2_normalize, EmbedOptions, Embedder};
