//! A loaded model: a small pool of ONNX Runtime sessions (created once; in
//! `ort` rc.15 `Session::run` takes `&mut self`) plus its preprocessing.

use parking_lot::Mutex;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use fast_image_resize::Resizer;
use image::RgbImage;
use ndarray::ArrayView4;
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;

use super::decode::{decode_image, DecodeLimits};
use super::model::{InputDtype, InputLayout, InputSpec, ModelManifest, OutputSpec};
use super::preprocess::Preprocessor;
use super::runtime::init_runtime;
use super::EmbedError;

/// How a model is run.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Threads ONNX Runtime uses inside one inference (intra-op).
    pub intra_threads: usize,
    /// Number of sessions in the pool (concurrent inferences).
    pub sessions: usize,
    pub limits: DecodeLimits,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { intra_threads: crate::embed::available_cores(), sessions: 1, limits: DecodeLimits::default() }
    }
}

/// A query photo, described: its model vector and its copy-detection features.
#[derive(Debug, Clone)]
pub struct Described {
    pub vector: Vec<f32>,
    /// Copy-detection features (`None` when copy detection is off).
    pub copy: Option<super::query::QueryFeatures>,
    /// The vectors of the photo's content regions, when it has several or a border ([`super::regions`]).
    pub regions: Vec<Vec<f32>>,
}

/// Turns images into L2-normalised embeddings with one model (a single ONNX
/// model, or a fused model whose parts each run their own session pool).
pub struct Embedder {
    manifest: ModelManifest,
    pre: Preprocessor,
    parts: Vec<Part>,
    limits: DecodeLimits,
}

/// One ONNX model of an [`Embedder`] and its session pool.
struct Part {
    manifest_path: std::path::PathBuf,
    input: InputSpec,
    output: OutputSpec,
    /// `sqrt(weight)`: the scale of this part's unit vector in the fused one.
    scale: f32,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("model", &self.manifest.name).field("parts", &self.parts.len()).finish()
    }
}

impl Embedder {
    /// Verifies the model file(s) against their sha256 and builds the session pool(s).
    pub fn load(manifest: &ModelManifest, opts: &EmbedOptions) -> Result<Self, EmbedError> {
        let onnx = manifest.onnx_parts();
        if onnx.is_empty() {
            return Err(EmbedError::Manifest {
                path: manifest.dir.join("model.toml"),
                detail: "fused model with unresolved parts (open it through the model registry)".into(),
            });
        }
        let env = init_runtime()?;
        let mut parts = Vec::new();
        for (m, weight) in onnx {
            let path = m.verify_file()?;
            let Some(spec) = m.onnx() else {
                return Err(EmbedError::Manifest { path: m.dir.join("model.toml"), detail: "a fused part must be a single model".into() });
            };
            let mut sessions = Vec::new();
            for _ in 0..opts.sessions.max(1) {
                sessions.push(Mutex::new(build_session(env, &path, opts.intra_threads.max(1))?));
            }
            let part = Part {
                manifest_path: m.dir.join("model.toml"),
                input: spec.input.clone(),
                output: spec.output.clone(),
                scale: weight.sqrt(),
                sessions,
                next: AtomicUsize::new(0),
            };
            part.check_io()?;
            parts.push(part);
        }
        Ok(Embedder { manifest: manifest.clone(), pre: Preprocessor::for_model(manifest), parts, limits: opts.limits })
    }

    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }
    pub fn name(&self) -> &str {
        &self.manifest.name
    }
    pub fn dim(&self) -> usize {
        self.manifest.output.dim
    }
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Decodes and preprocesses one encoded image into a tensor slot.
    pub fn prepare(&self, bytes: &[u8], source_name: &str, resizer: &mut Resizer) -> Result<Vec<f32>, EmbedError> {
        let img = decode_image(bytes, source_name, self.limits)?;
        Ok(self.pre.run(&img.rgb, resizer))
    }

    /// Runs the model on `n` preprocessed images laid out back to back in
    /// `batch` (each image: its parts' tensors back to back), returning one
    /// unit vector per image.
    pub fn embed_tensors(&self, batch: &[f32], n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let len = self.pre.tensor_len();
        assert_eq!(batch.len(), n * len, "batch buffer does not hold n tensors");
        if let [part] = &self.parts[..] {
            return part.run(batch, n);
        }
        let mut fused = vec![Vec::with_capacity(self.dim()); n];
        let mut offset = 0;
        for (part, chain) in self.parts.iter().zip(&self.pre.chains) {
            let plen = chain.tensor_len();
            let mut own = Vec::with_capacity(n * plen);
            for img in batch.chunks_exact(len) {
                own.extend_from_slice(&img[offset..offset + plen]);
            }
            for (out, v) in fused.iter_mut().zip(part.run(&own, n)?) {
                out.extend(v.into_iter().map(|x| x * part.scale));
            }
            offset += plen;
        }
        Ok(fused.into_iter().map(l2_normalize).collect())
    }

    /// Embeds already-decoded images in one model call.
    pub fn embed_batch(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let len = self.pre.tensor_len();
        let mut batch = vec![0f32; len * images.len()];
        let mut resizer = Resizer::new();
        for (img, slot) in images.iter().zip(batch.chunks_exact_mut(len)) {
            self.pre.apply(img, &mut resizer, slot);
        }
        self.embed_tensors(&batch, images.len())
    }

    /// Decodes and embeds one encoded image.
    pub fn embed_bytes(&self, bytes: &[u8], source_name: &str) -> Result<Vec<f32>, EmbedError> {
        let t = self.prepare(bytes, source_name, &mut Resizer::new())?;
        Ok(self.embed_tensors(&t, 1)?.remove(0))
    }

    /// Decodes one encoded query photo once, then embeds it and prepares its
    /// copy-detection features ([`super::query`]) side by side on two threads.
    pub fn describe_bytes(&self, bytes: &[u8], source_name: &str) -> Result<Described, EmbedError> {
        let img = decode_image(bytes, source_name, self.limits)?;
        let failed = |what: &str| EmbedError::Io { source_name: source_name.into(), error: std::io::Error::other(what.to_string()) };
        let (vector, (regions, copy)) = std::thread::scope(|s| {
            // Off the model's thread: the content regions, then the copy features
            // (in full for a photo of regions, else the glance).
            let side = s.spawn(|| {
                let mut r = Resizer::new();
                let regions = super::regions::content_regions(&img.rgb, &mut r);
                let copy = super::query::QueryFeatures::prepare(&img.rgb, &regions, &mut r);
                (regions, copy)
            });
            let vector = self.embed_tensors(&self.pre.run(&img.rgb, &mut Resizer::new()), 1)?.into_iter().next();
            Ok::<_, EmbedError>((vector, side.join().map_err(|_| failed("feature extraction panicked"))?))
        })?;
        let vector = vector.ok_or_else(|| failed("no vector returned"))?;
        // Each content region (a collage's tiles, a card's photo) is embedded too, in one batch.
        let mut batch = Vec::new();
        let mut resizer = Resizer::new();
        for &[x, y, w, h] in &regions {
            batch.extend(self.pre.run(&image::imageops::crop_imm(&img.rgb, x, y, w, h).to_image(), &mut resizer));
        }
        let regions = self.embed_tensors(&batch, regions.len())?;
        Ok(Described { vector, copy: Some(copy), regions })
    }

    /// Reads a query photo and [`describe_bytes`](Self::describe_bytes) it.
    pub fn describe_file(&self, path: &Path) -> Result<Described, EmbedError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| EmbedError::Io { source_name: name.clone(), error })?;
        self.describe_bytes(&bytes, &name)
    }

    /// Reads, decodes and embeds one file.
    pub fn embed_file(&self, path: &Path) -> Result<Vec<f32>, EmbedError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| EmbedError::Io { source_name: name.clone(), error })?;
        self.embed_bytes(&bytes, &name)
    }
}

impl Part {
    fn check_io(&self) -> Result<(), EmbedError> {
        let s = self.sessions[0].lock();
        let bad = |detail: String| EmbedError::Manifest { path: self.manifest_path.clone(), detail };
        if !s.inputs().iter().any(|i| i.name() == self.input.name) {
            let names: Vec<_> = s.inputs().iter().map(|i| i.name().to_string()).collect();
            return Err(bad(format!("input '{}' is not in the model (it has {names:?})", self.input.name)));
        }
        if !s.outputs().iter().any(|o| o.name() == self.output.name) {
            let names: Vec<_> = s.outputs().iter().map(|o| o.name().to_string()).collect();
            return Err(bad(format!("output '{}' is not in the model (it has {names:?})", self.output.name)));
        }
        Ok(())
    }

    /// Runs this ONNX model on `n` of its own tensors; unit vectors out.
    fn run(&self, batch: &[f32], n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (w, h) = (self.input.width as usize, self.input.height as usize);
        assert_eq!(batch.len(), n * 3 * w * h, "batch buffer does not hold n tensors");
        let shape = match self.input.layout {
            InputLayout::Nchw => (n, 3, h, w),
            InputLayout::Nhwc => (n, h, w, 3),
        };
        let shape_err = |e: ndarray::ShapeError| EmbedError::Runtime(e.to_string());
        // A u8 model gets the same pixel values (exact integers, mean 0 / std 1).
        let bytes: Vec<u8>;
        let input: ort::session::SessionInputValue<'_> = if self.input.dtype == InputDtype::U8 {
            bytes = batch.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
            TensorRef::from_array_view(ArrayView4::from_shape(shape, &bytes[..]).map_err(shape_err)?)?.into()
        } else {
            TensorRef::from_array_view(ArrayView4::from_shape(shape, batch).map_err(shape_err)?)?.into()
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        // Prefer an idle session; otherwise wait for the round-robin one.
        let mut guard = self
            .sessions
            .iter()
            .cycle()
            .skip(i)
            .take(self.sessions.len())
            .find_map(|m| m.try_lock())
            .unwrap_or_else(|| self.sessions[i].lock());
        let outputs = guard.run(ort::inputs![self.input.name.as_str() => input])?;
        let (oshape, data) = outputs[self.output.name.as_str()].try_extract_tensor::<f32>()?;
        let dim = self.output.dim;
        let dims: Vec<i64> = oshape.iter().copied().collect();
        let flat: i64 = dims.iter().skip(1).product();
        if dims.first() != Some(&(n as i64)) || flat != dim as i64 {
            return Err(EmbedError::OutputShape { shape: dims, dim });
        }
        Ok(data.chunks_exact(dim).map(|v| l2_normalize(v.to_vec())).collect())
    }
}

fn build_session(env: &ort::environment::Environment, path: &Path, threads: usize) -> Result<Session, EmbedError> {
    let err = |e: ort::Error<ort::session::builder::SessionBuilder>| EmbedError::Runtime(e.to_string());
    let session = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(err)?
        .with_intra_threads(threads)
        .map_err(err)?
        .with_inter_threads(1)
        .map_err(err)?
        // Idle ORT threads must not spin: decode workers share the cores.
        .with_intra_op_spinning(false)
        .map_err(err)?
        .commit_from_file(path)?;
    Ok(session)
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn l2_normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}
