use std::path::PathBuf;

/// Everything that can go wrong between a photo's bytes and its embedding.
///
/// Variants that concern one input image carry `source`, a human-readable name
/// of that image (a path or URL), so that a batch can report which item failed
/// and why without aborting the others.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{source_name}: cannot read file: {error}")]
    Io { source_name: String, error: std::io::Error },
    #[error("{source_name}: file is empty (0 bytes)")]
    Empty { source_name: String },
    #[error("{source_name}: not an image (no known image signature)")]
    NotAnImage { source_name: String },
    #[error("{source_name}: unsupported image format {format} (supported: JPEG, PNG, WebP, GIF, BMP, TIFF)")]
    UnsupportedFormat { source_name: String, format: String },
    #[error("{source_name}: image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    TooLarge { source_name: String, width: u32, height: u32, pixels: u64, limit: u64 },
    #[error("{source_name}: image is {width}x{height} at more than 8 bits per channel: {bytes} bytes decoded, over the limit of {limit}; send it at 8 bits per channel")]
    TooDeep { source_name: String, width: u32, height: u32, bytes: u64, limit: u64 },
    #[error("{source_name}: image is {width}x{height}; a side over {limit} pixels is refused")]
    TooLong { source_name: String, width: u32, height: u32, limit: u32 },
    #[error("{source_name}: image data is truncated: {detail}")]
    Truncated { source_name: String, detail: String },
    #[error("{source_name}: image data is corrupt: {detail}")]
    Corrupt { source_name: String, detail: String },

    #[error("model manifest {path}: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("model '{name}' not found in {dir} (installed: {installed})")]
    ModelNotFound { name: String, dir: PathBuf, installed: String },
    #[error("model file {path} is missing{hint}")]
    ModelFileMissing { path: PathBuf, hint: String },
    #[error("model file {path} has sha256 {actual}, but model.toml expects {expected}; re-run ./scripts/setup.sh")]
    ChecksumMismatch { path: PathBuf, expected: String, actual: String },
    #[error("{0}")]
    RuntimeMissing(String),
    #[error("ONNX Runtime error: {0}")]
    Runtime(String),
    #[error("model output has shape {shape:?}, expected [batch, {dim}]")]
    OutputShape { shape: Vec<i64>, dim: usize },
}

impl EmbedError {
    /// True when the error is about one input image (the caller's data), as
    /// opposed to the model or runtime (the service's own state).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            EmbedError::Io { .. }
                | EmbedError::Empty { .. }
                | EmbedError::NotAnImage { .. }
                | EmbedError::UnsupportedFormat { .. }
                | EmbedError::TooLarge { .. }
                | EmbedError::TooLong { .. }
                | EmbedError::TooDeep { .. }
                | EmbedError::Truncated { .. }
                | EmbedError::Corrupt { .. }
        )
    }

    /// A short stable machine-readable kind, used in JSON output and error files.
    pub fn kind(&self) -> &'static str {
        match self {
            EmbedError::Io { .. } => "io",
            EmbedError::Empty { .. } => "empty",
            EmbedError::NotAnImage { .. } => "not-an-image",
            EmbedError::UnsupportedFormat { .. } => "unsupported-format",
            EmbedError::TooLarge { .. } | EmbedError::TooDeep { .. } => "too-large",
            EmbedError::TooLong { .. } => "too-long",
            EmbedError::Truncated { .. } => "truncated",
            EmbedError::Corrupt { .. } => "corrupt",
            EmbedError::Manifest { .. } => "model-manifest",
            EmbedError::ModelNotFound { .. } => "model-not-found",
            EmbedError::ModelFileMissing { .. } => "model-file-missing",
            EmbedError::ChecksumMismatch { .. } => "model-checksum",
            EmbedError::RuntimeMissing(_) => "runtime-missing",
            EmbedError::Runtime(_) => "runtime",
            EmbedError::OutputShape { .. } => "output-shape",
        }
    }
}

impl From<ort::Error> for EmbedError {
    fn from(e: ort::Error) -> Self {
        EmbedError::Runtime(e.to_string())
    }
}
