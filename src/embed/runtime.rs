//! Finding and loading the ONNX Runtime shared library (`ort` with `load-dynamic`).
//!
//! Search order: `$ORT_DYLIB_PATH`, then `.deps/onnxruntime/libonnxruntime.so`
//! in the project (installed by `scripts/setup.sh` from the `PyPI` wheel), then
//! the system's library path.

use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::Mutex;

use super::EmbedError;

/// The file name `scripts/setup.sh` installs under `.deps/onnxruntime/`.
pub const BUNDLED_LIB: &str = "libonnxruntime.so";
const FIX: &str = "run ./scripts/setup.sh (installs ONNX Runtime 1.32 from PyPI into .deps/onnxruntime/) or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.31 or newer";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeLocation {
    /// From `$ORT_DYLIB_PATH`.
    Env(PathBuf),
    /// From the project's `.deps/onnxruntime/`.
    Project(PathBuf),
    /// Left to the dynamic loader's search path.
    System,
}

impl RuntimeLocation {
    fn path(&self) -> PathBuf {
        match self {
            RuntimeLocation::Env(p) | RuntimeLocation::Project(p) => p.clone(),
            RuntimeLocation::System => PathBuf::from(BUNDLED_LIB),
        }
    }
}

/// Where the library will be loaded from, without loading it.
pub fn locate_runtime() -> Result<RuntimeLocation, EmbedError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(EmbedError::RuntimeMissing(format!("ORT_DYLIB_PATH points to {}, which does not exist; {FIX}.", p.display())));
        }
        return Ok(RuntimeLocation::Env(p));
    }
    if let Some(dir) = crate::util::find_project_dir(".deps/onnxruntime") {
        let p = dir.join(BUNDLED_LIB);
        if p.is_file() {
            return Ok(RuntimeLocation::Project(p));
        }
    }
    Ok(RuntimeLocation::System)
}

static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime once per process and creates the global environment.
/// A missing or too old library is an error with one sentence saying how to fix it.
pub fn init_runtime() -> Result<&'static ort::environment::Environment, EmbedError> {
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let _guard = INIT.lock();
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let loc = locate_runtime()?;
    let builder = ort::init_from(loc.path()).map_err(|e| {
        EmbedError::RuntimeMissing(match loc {
            RuntimeLocation::System => format!("ONNX Runtime was not found ({e}); {FIX}."),
            _ => format!("ONNX Runtime could not be loaded: {e}; {FIX}."),
        })
    })?;
    let env = builder.with_name("knockoff").build().map_err(|e| EmbedError::Runtime(e.to_string()))?;
    Ok(ENV.get_or_init(|| env))
}
