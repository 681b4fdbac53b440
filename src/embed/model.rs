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
    pub dtype: InputDtype,
    pub resize: ResizeMode,
    /// Resampling filter; only `bilinear` (Pillow-compatible, antialiased) today.
    #[serde(default = "default_filter")]
    pub filter: String,
    pub normalization: Normalization,
}

/// The element type of a model's input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputDtype {
    /// Normalised floats (knockoff applies the manifest's mean and std).
    F32,
    /// Raw 0–255 pixels; the graph normalises.
    U8,
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

/// One model of a fused model: its name and weight.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusePart {
    pub model: String,
    /// Share of the fused cosine similarity: each part's unit vector is
    /// scaled by `sqrt(weight / sum of weights)` before concatenation, so the
    /// fused similarity is the weighted mean of the parts' similarities.
    #[serde(default = "one")]
    pub weight: f32,
}

fn one() -> f32 {
    1.0
}

/// The parsed contents of a `model.toml`.
///
/// Two kinds: a single ONNX model (`file`, `sha256`, `[input]`, `[output]`),
/// or a fused model (`[[fuse]]` parts naming other installed models, and
/// `[output] dim` = the sum of theirs) whose vector is the weighted
/// concatenation of its parts' unit vectors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    pub name: String,
    pub description: String,
    /// The ONNX file, relative to the manifest's folder (single models).
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    pub licence: String,
    /// Where the weights come from (package and version).
    #[serde(default)]
    pub source: String,
    /// How to install the file when it is not committed (shown in errors).
    #[serde(default)]
    pub install_hint: Option<String>,
    #[serde(default)]
    pub input: Option<InputSpec>,
    pub output: OutputSpec,
    /// Parts of a fused model (empty for a single model).
    #[serde(default)]
    pub fuse: Vec<FusePart>,
    /// Keep the central share (0.3–1) of photos with a busy border; photos
    /// on a plain background are kept whole (see `preprocess::FocusCrop`).
    /// Applies to every part of a fused model.
    #[serde(default)]
    pub focus_crop: Option<f32>,
    /// Preference as the default model when it is installed (highest wins; 0: never the default).
    #[serde(default)]
    pub default_rank: u32,
    /// The parts' manifests with normalised weights, resolved by the registry.
    #[serde(skip)]
    pub parts: Vec<(ModelManifest, f32)>,
    /// Folder the manifest was read from (not part of the file).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl ModelManifest {
    /// Whether its ONNX file (or every part's) is on disk.
    #[must_use]
    pub fn weights_present(&self) -> bool {
        if self.is_fused() {
            !self.parts.is_empty() && self.parts.iter().all(|(p, _)| p.weights_present())
        } else {
            self.file.as_ref().is_some_and(|f| self.dir.join(f).is_file())
        }
    }
}

/// A single ONNX model's file and tensors, borrowed from its manifest.
#[derive(Debug, Clone, Copy)]
pub struct OnnxSpec<'a> {
    pub input: &'a InputSpec,
    pub output: &'a OutputSpec,
}

impl ModelManifest {
    pub fn from_file(path: &Path) -> Result<Self, EmbedError> {
        let text = std::fs::read_to_string(path).map_err(|e| EmbedError::Manifest { path: path.into(), detail: e.to_string() })?;
        let mut m: ModelManifest = toml::from_str(&text).map_err(|e| EmbedError::Manifest { path: path.into(), detail: e.to_string() })?;
        m.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        m.validate(path)?;
        Ok(m)
    }

    fn validate(&self, path: &Path) -> Result<(), EmbedError> {
        let bad = |detail: String| Err(EmbedError::Manifest { path: path.into(), detail });
        if self.output.dim == 0 {
            return bad("output.dim must be > 0".into());
        }
        if self.focus_crop.is_some_and(|f| !(0.3..=1.0).contains(&f)) {
            return bad("focus_crop must be between 0.3 and 1".into());
        }
        if !self.fuse.is_empty() {
            if self.file.is_some() || self.sha256.is_some() || self.input.is_some() {
                return bad("a fused model names its parts in [[fuse]] and has no file, sha256 or [input] of its own".into());
            }
            if self.fuse.iter().any(|p| !(p.weight > 0.0 && p.weight.is_finite())) {
                return bad("every [[fuse]] weight must be > 0".into());
            }
            return Ok(());
        }
        let (Some(_), Some(sha256), Some(input)) = (&self.file, &self.sha256, &self.input) else {
            return bad("a model needs file, sha256 and [input] (or [[fuse]] parts)".into());
        };
        let n = &input.normalization;
        if input.dtype == InputDtype::U8 && (n.mean != [0.0; 3] || n.std != [1.0; 3]) {
            return bad("a u8 input cannot be normalised outside the graph: use mean 0, std 1".into());
        }
        if input.filter != "bilinear" {
            return bad(format!("input.filter '{}' is not supported (only bilinear)", input.filter));
        }
        if input.width == 0 || input.height == 0 || input.width > 4096 || input.height > 4096 {
            return bad(format!("input size {}x{} is out of range", input.width, input.height));
        }
        if input.normalization.std.contains(&0.0) {
            return bad("input.normalization.std must not contain 0".into());
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("sha256 must be 64 hex digits".into());
        }
        Ok(())
    }

    /// Whether this is a fused model (`[[fuse]]` parts).
    pub fn is_fused(&self) -> bool {
        !self.fuse.is_empty()
    }

    /// The single ONNX models this model runs, with their weights: itself
    /// (weight 1) or its resolved parts.
    pub fn onnx_parts(&self) -> Vec<(&ModelManifest, f32)> {
        if self.is_fused() {
            self.parts.iter().map(|(m, w)| (m, *w)).collect()
        } else {
            vec![(self, 1.0)]
        }
    }

    /// A short hash of everything that shapes this model's vectors: each ONNX
    /// file's sha256, input and output specs and weight, and the focus crop.
    /// An index records it; vectors from a changed model do not mix with old ones.
    pub fn fingerprint(&self) -> String {
        let parts: Vec<serde_json::Value> = self
            .onnx_parts()
            .into_iter()
            .map(|(m, w)| serde_json::json!({ "sha256": m.sha256, "input": m.input, "output": m.output, "weight": w }))
            .collect();
        let canon = serde_json::json!({ "parts": parts, "focus_crop": self.focus_crop });
        crate::util::sha256_hex(canon.to_string().as_bytes())[..12].to_string()
    }

    /// Input and output tensors of a single model (`None` for a fused one).
    pub fn onnx(&self) -> Option<OnnxSpec<'_>> {
        self.input.as_ref().map(|input| OnnxSpec { input, output: &self.output })
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(self.file.as_deref().unwrap_or_default())
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
        let expected = self.sha256.clone().unwrap_or_default();
        if !actual.eq_ignore_ascii_case(&expected) {
            return Err(EmbedError::ChecksumMismatch { path, expected, actual });
        }
        Ok(path)
    }
}

/// The parts of a fused model with weights normalised to sum to 1; an empty
/// list for a single model. Parts must be installed single models whose
/// dimensions add up to the fused `output.dim`.
fn resolve_parts(m: &ModelManifest, singles: &[ModelManifest]) -> Result<Vec<(ModelManifest, f32)>, String> {
    if !m.is_fused() {
        return Ok(Vec::new());
    }
    let total: f32 = m.fuse.iter().map(|p| p.weight).sum();
    let mut parts = Vec::new();
    for p in &m.fuse {
        let Some(part) = singles.iter().find(|s| s.name == p.model) else {
            return Err(format!("fused part '{}' is not an installed single model", p.model));
        };
        if !part.model_path().is_file() {
            let hint = part.install_hint.as_deref().map(|h| format!("; install it with: {h}")).unwrap_or_default();
            return Err(format!("fused part '{}' has no model file ({}){hint}", p.model, part.model_path().display()));
        }
        parts.push((part.clone(), p.weight / total));
    }
    let dim: usize = parts.iter().map(|(p, _)| p.output.dim).sum();
    if dim != m.output.dim {
        return Err(format!("output.dim is {} but the parts' dimensions add up to {dim}", m.output.dim));
    }
    Ok(parts)
}

/// The `models/` folder: one sub-folder per model, each with a `model.toml`.
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    pub dir: PathBuf,
    pub models: Vec<ModelManifest>,
    /// Manifests that failed to parse, with the reason.
    pub broken: Vec<(PathBuf, String)>,
}

/// The model used when none is named and no installed model has a `default_rank`.
pub const DEFAULT_MODEL: &str = "efficientnet-lite0";

/// Names the default model instead of the ranking (tests pin it, so that
/// they do not depend on which optional models are installed).
pub const DEFAULT_MODEL_ENV: &str = "KNOCKOFF_DEFAULT_MODEL";

impl ModelRegistry {
    pub fn open(dir: &Path) -> Result<Self, EmbedError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| EmbedError::Manifest { path: dir.into(), detail: format!("cannot list models folder: {e}") })?;
        let mut models = Vec::new();
        let mut broken = Vec::new();
        let mut paths: Vec<PathBuf> = entries.filter_map(std::result::Result::ok).map(|e| e.path().join("model.toml")).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.is_file()) {
            match ModelManifest::from_file(&p) {
                Ok(m) => models.push(m),
                Err(e) => broken.push((p, e.to_string())),
            }
        }
        // Resolve fused models against the single ones.
        let singles: Vec<ModelManifest> = models.iter().filter(|m| !m.is_fused()).cloned().collect();
        let mut resolved = Vec::new();
        for mut m in models {
            match resolve_parts(&m, &singles) {
                Ok(parts) => {
                    m.parts = parts;
                    resolved.push(m);
                }
                Err(detail) => broken.push((m.dir.join("model.toml"), detail)),
            }
        }
        Ok(ModelRegistry { dir: dir.into(), models: resolved, broken })
    }

    /// The model a new index gets when none is named: `KNOCKOFF_DEFAULT_MODEL`
    /// if set, else the installed model (weights present) with the highest
    /// `default_rank` (the fused SSCD + Lite0 model once `./scripts/setup.sh
    /// --with-sscd` has installed SSCD, else Lite0).
    #[must_use]
    pub fn default_name(&self) -> String {
        if let Ok(name) = std::env::var(DEFAULT_MODEL_ENV) {
            if !name.is_empty() {
                return name;
            }
        }
        self.models
            .iter()
            .filter(|m| m.default_rank > 0 && m.weights_present())
            .max_by_key(|m| m.default_rank)
            .map_or_else(|| DEFAULT_MODEL.to_string(), |m| m.name.clone())
    }

    /// The named model, or the default one ([`Self::default_name`]) when `name` is `None`.
    pub fn get(&self, name: Option<&str>) -> Result<&ModelManifest, EmbedError> {
        let default = self.default_name();
        let name = name.unwrap_or(&default);
        if let Some((path, detail)) = self.broken.iter().find(|(p, _)| p.parent().and_then(|d| d.file_name()).is_some_and(|d| d == name)) {
            if !self.models.iter().any(|m| m.name == name) {
                return Err(EmbedError::Manifest { path: path.clone(), detail: detail.clone() });
            }
        }
        self.models.iter().find(|m| m.name == name).ok_or_else(|| EmbedError::ModelNotFound {
            name: name.into(),
            dir: self.dir.clone(),
            installed: self.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}
