//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use knockoff::embed::{EmbedOptions, Embedder, ModelRegistry};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

pub fn registry() -> ModelRegistry {
    ModelRegistry::open(&root().join("models")).expect("models/ folder")
}

/// The default model, loaded once per test binary (needs ./scripts/setup.sh).
pub fn embedder() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| {
        let reg = registry();
        let m = reg.get(None).expect("default model manifest");
        Embedder::load(m, &EmbedOptions { intra_threads: 2, sessions: 2, ..Default::default() })
            .expect("default model loads (run ./scripts/setup.sh first)")
    })
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn photos() -> Vec<PathBuf> {
    ["coffee", "chelsea", "astronaut", "rocket"].iter().map(|n| fixture(&format!("photos/{n}.jpg"))).collect()
}

pub fn python() -> Option<PathBuf> {
    let p = root().join(".venv/bin/python");
    p.is_file().then_some(p)
}

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_knockoff"))
}
