//! `models/<name>/model.toml`: everything the code needs to know about a model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EmbedError;

/// How a photo is brought to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Stretch to exactly width x height, ignoring aspect ratio.
    Squash,
    /// Crop the largest centred region of the input's aspect ratio, then resize.
    CenterCrop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputLayout {
    #[serde(rename = "NCHW")]
    Nchw,
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// Per-channel normalisation applied to 0..=255 pixel values:
/// `(value - mean[c]) / std[c]`. Use mean 0 / std 1 when the graph
/// normalises by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub layout: InputLayout,
    /// `f32` (normalised outside the graph) or `u8` (raw pixels; the graph normalises).
    pub dtype: String,
    pub resize: ResizeMode,
    /// Resampling filter; only `bilinear` (Pillow-compatible, antialiased) today.
    #[serde(default = "default_filter")]
    pub filter: String,
    pub normalization: Normalization,
}

fn default_filter() -> String {
    "bilinear".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub dim: usize,
}

/// The parsed contents of a `model.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    pub name: String,
    pub description: String,
    /// The ONNX file, relative to the manifest's folder.
    pub file: String,
    pub sha256: String,
    pub licence: String,
    /// Where the weights come from (package and version).
    pub source: String,
    /// How to install the file when it is not committed (shown in errors).
    #[serde(default)]
    pub install_hint: Option<String>,
    pub input: InputSpec,
    pub output: OutputSpec,
    /// Folder the manifest was read from (not part of the file).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl ModelManifest {
    pub fn from_file(path: &Path) -> Result<Self, EmbedError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EmbedError::Manifest { path: path.into(), detail: e.to_string() })?;
        let mut m: ModelManifest = toml::from_str(&text)
            .map_err(|e| EmbedError::Manifest { path: path.into(), detail: e.to_string() })?;
        m.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        m.validate(path)?;
        Ok(m)
    }

    fn validate(&self, path: &Path) -> Result<(), EmbedError> {
        let bad = |detail: String| Err(EmbedError::Manifest { path: path.into(), detail });
        match self.input.dtype.as_str() {
            "f32" => {}
            "u8" => {
                let n = &self.input.normalization;
                if n.mean != [0.0; 3] || n.std != [1.0; 3] {
                    return bad("a u8 input cannot be normalised outside the graph: use mean 0, std 1".into());
                }
            }
            other => return bad(format!("input.dtype '{other}' is not supported (f32 or u8)")),
        }
        if self.input.filter != "bilinear" {
            return bad(format!("input.filter '{}' is not supported (only bilinear)", self.input.filter));
        }
        if self.input.width == 0 || self.input.height == 0 || self.input.width > 4096 || self.input.height > 4096 {
            return bad(format!("input size {}x{} is out of range", self.input.width, self.input.height));
        }
        if self.output.dim == 0 {
            return bad("output.dim must be > 0".into());
        }
        if self.input.normalization.std.iter().any(|s| *s == 0.0) {
            return bad("input.normalization.std must not contain 0".into());
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("sha256 must be 64 hex digits".into());
        }
        Ok(())
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    /// Checks that the ONNX file exists and matches `sha256`.
    pub fn verify_file(&self) -> Result<PathBuf, EmbedError> {
        let path = self.model_path();
        let bytes = std::fs::read(&path).map_err(|_| EmbedError::ModelFileMissing {
            path: path.clone(),
            hint: match &self.install_hint {
                Some(h) => format!("; install it with: {h}"),
                None => String::new(),
            },
        })?;
        let actual = crate::util::sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&self.sha256) {
            return Err(EmbedError::ChecksumMismatch { path, expected: self.sha256.clone(), actual });
        }
        Ok(path)
    }
}

/// The `models/` folder: one sub-folder per model, each with a `model.toml`.
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    pub dir: PathBuf,
    pub models: Vec<ModelManifest>,
    /// Manifests that failed to parse, with the reason.
    pub broken: Vec<(PathBuf, String)>,
}

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "efficientnet-lite0";

impl ModelRegistry {
    pub fn open(dir: &Path) -> Result<Self, EmbedError> {
        let entries = std::fs::read_dir(dir).map_err(|e| EmbedError::Manifest {
            path: dir.into(),
            detail: format!("cannot list models folder: {e}"),
        })?;
        let mut models = Vec::new();
        let mut broken = Vec::new();
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path().join("model.toml")).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.is_file()) {
            match ModelManifest::from_file(&p) {
                Ok(m) => models.push(m),
                Err(e) => broken.push((p, e.to_string())),
            }
        }
        Ok(ModelRegistry { dir: dir.into(), models, broken })
    }

    /// The named model, or the default one when `name` is `None`.
    pub fn get(&self, name: Option<&str>) -> Result<&ModelManifest, EmbedError> {
        let name = name.unwrap_or(DEFAULT_MODEL);
        self.models.iter().find(|m| m.name == name).ok_or_else(|| EmbedError::ModelNotFound {
            name: name.into(),
            dir: self.dir.clone(),
            installed: self.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}
