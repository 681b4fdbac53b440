//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod receiver;
pub mod replica;
pub mod synth;

use std::fmt::Write as _;
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

/// Writes `products` × `per` distinct JPEGs cut from the fixture photos, and a manifest.
pub fn make_catalog(dir: &Path, products: usize, per: usize) -> PathBuf {
    let photos: Vec<image::RgbImage> = photos().iter().map(|p| image::open(p).unwrap().to_rgb8()).collect();
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut csv = String::from("image,product_id,label,brand,name,category\n");
    for p in 0..products {
        let src = &photos[p % photos.len()];
        let (w, h) = src.dimensions();
        // Each product is its own region of a photo; its images jitter around it.
        let slot = (p / photos.len()) as u32;
        let (cw, ch) = (w / 2, h / 2);
        let (bx, by) = ((slot * 37) % (w - cw - 12), (slot * 53) % (h - ch - 12));
        for j in 0..per {
            let (dx, dy) = ((j as u32 * 7) % 12, (j as u32 * 5) % 12);
            let mut crop = image::imageops::crop_imm(src, bx + dx, by + dy, cw, ch).to_image();
            let gain = 0.9 + 0.02 * j as f32;
            crop.pixels_mut().for_each(|px| px.0.iter_mut().for_each(|c| *c = (f32::from(*c) * gain).min(255.0) as u8));
            let name = format!("img/p{p:03}-{j:02}.jpg");
            let mut buf = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 85).encode_image(&crop).unwrap();
            std::fs::write(dir.join(&name), buf).unwrap();
            let (label, brand) = if p % 5 == 0 { ("counterfeit", "Acme") } else { ("authentic", "Acme") };
            let _ = writeln!(csv, "{name},prod-{p:03},{label},{brand},Product {p},Cat/{}", p % 3);
        }
    }
    let manifest = dir.join("catalog.csv");
    std::fs::write(&manifest, csv).unwrap();
    manifest
}

/// Like [`make_catalog`], but no photo of a product is a copy of another:
/// each is the product's region cut in a 3 × 3 grid and laid out again in its
/// own order, no tile in its place (the same colours and textures, so the
/// model still groups them, but no crop, re-lighting or mirror maps one onto
/// another — as different shots of one product are).
pub fn make_shots(dir: &Path, products: usize, per: usize) -> PathBuf {
    let photos: Vec<image::RgbImage> = photos().iter().map(|p| image::open(p).unwrap().to_rgb8()).collect();
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut csv = String::from("image,product_id,label,brand,name,category\n");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % n
    };
    for p in 0..products {
        let src = &photos[p % photos.len()];
        let (w, h) = src.dimensions();
        let slot = (p / photos.len()) as u32;
        let (tw, th) = (w / 6, h / 6);
        let (bx, by) = ((slot * 37) % (w - 3 * tw), (slot * 53) % (h - 3 * th));
        for j in 0..per {
            // A derangement of the 9 tiles: shuffled until no tile stays in place.
            let order = loop {
                let mut o: Vec<usize> = (0..9).collect();
                for i in (1..9).rev() {
                    o.swap(i, next(i + 1));
                }
                if o.iter().enumerate().all(|(i, t)| i != *t) {
                    break o;
                }
            };
            let mut shot = image::RgbImage::new(3 * tw, 3 * th);
            for (to, from) in order.iter().enumerate() {
                let tile = image::imageops::crop_imm(src, bx + (*from as u32 % 3) * tw, by + (*from as u32 / 3) * th, tw, th).to_image();
                image::imageops::replace(&mut shot, &tile, i64::from((to as u32 % 3) * tw), i64::from((to as u32 / 3) * th));
            }
            let name = format!("img/p{p:03}-{j:02}.jpg");
            shot.save(dir.join(&name)).unwrap();
            let label = if p % 5 == 0 { "counterfeit" } else { "authentic" };
            let _ = writeln!(csv, "{name},prod-{p:03},{label},Acme,Product {p},Cat/{}", p % 3);
        }
    }
    let manifest = dir.join("catalog.csv");
    std::fs::write(&manifest, csv).unwrap();
    manifest
}

/// Whether an optional tool a test needs is there. Outside CI a missing
/// tool skips the test with a note on how to install it; under CI (`CI`
/// set) it fails the test, so a green CI never hides a skipped check.
pub fn available(what: &str, present: bool, how: &str) -> bool {
    if present {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI must run this test but {what} is missing: {how}");
    eprintln!("SKIPPED: {what} is missing ({how})");
    false
}

/// Waits until `cond` holds. The deadline (5 minutes) only catches a hang:
/// a busy machine slows a test down but never fails it.
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}: still not after 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends a request to a test server: (status, the value of response header
/// `header` or "", the body as JSON or null). A transport error fails the test.
pub fn send_reading(req: ureq::Request, body: Option<(&str, &[u8])>, header: &str) -> (u16, String, serde_json::Value) {
    use std::io::Read as _;
    let res = match body {
        Some((ctype, b)) => req.set("Content-Type", ctype).send_bytes(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let value = resp.header(header).unwrap_or("").to_string();
    let mut buf = Vec::new();
    resp.into_reader().read_to_end(&mut buf).unwrap();
    (status, value, serde_json::from_slice(&buf).unwrap_or(serde_json::Value::Null))
}

/// A fresh, empty catalog on the shared backend for one test: a database of
/// its own on the test PostgreSQL (`KNOCKOFF_TEST_STORE`, a URL whose
/// database part is replaced) and the test Milvus (`KNOCKOFF_TEST_VECTORS`),
/// as `./scripts/test.sh` starts them with `scripts/cluster.sh`. Dropped
/// with its Milvus collections at the end of the test.
pub struct SharedDb {
    pub spec: knockoff::catalog::SharedSpec,
    admin: String,
    name: String,
}

impl SharedDb {
    /// `None` (and a note) outside CI when the engines are not running; under CI a failure.
    pub fn create(tag: &str) -> Option<SharedDb> {
        let store = std::env::var("KNOCKOFF_TEST_STORE").ok().filter(|s| !s.is_empty());
        let vectors = std::env::var("KNOCKOFF_TEST_VECTORS").ok().filter(|s| !s.is_empty());
        let how = "start them with ./scripts/cluster.sh up and export KNOCKOFF_TEST_STORE / KNOCKOFF_TEST_VECTORS (./scripts/test.sh does)";
        if !available("the shared backend (PostgreSQL + Milvus)", store.is_some() && vectors.is_some(), how) {
            return None;
        }
        let (store, vectors) = (store.unwrap(), vectors.unwrap());
        let mut admin = url::Url::parse(&store).expect("KNOCKOFF_TEST_STORE is a URL");
        admin.set_path("/postgres");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("t_{tag}_{}_{}", std::process::id(), nanos % 1_000_000_000);
        let mut c = postgres::Client::connect(admin.as_str(), postgres::NoTls).expect("test PostgreSQL answers");
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let mut url = url::Url::parse(&store).unwrap();
        url.set_path(&format!("/{name}"));
        Some(SharedDb { spec: knockoff::catalog::SharedSpec { store: url.to_string(), vectors }, admin: admin.to_string(), name })
    }

    /// The settings a `knockoff` process needs to use this catalog.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [("KNOCKOFF_STORE", self.spec.store.clone()), ("KNOCKOFF_VECTORS", self.spec.vectors.clone())]
    }
}

impl Drop for SharedDb {
    fn drop(&mut self) {
        let records = knockoff::catalog::Location::Shared(self.spec.clone()).records().ok().flatten();
        let uid = records.and_then(|r| r.meta("catalog_uid").ok().flatten());
        if let (Some(uid), Ok(m)) = (uid, knockoff::catalog::vectors::Milvus::connect(&self.spec.vectors)) {
            for c in m.collections().unwrap_or_default().into_iter().filter(|c| c.starts_with(&format!("knockoff_{uid}_"))) {
                let _ = m.drop_collection(&c);
            }
        }
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Where a test's catalog lives.
pub enum Backend {
    Folder(tempfile::TempDir),
    Shared(SharedDb),
}

impl Backend {
    pub fn open(
        &self,
        o: knockoff::catalog::CatalogOptions,
    ) -> Result<(knockoff::catalog::Catalog, knockoff::catalog::OpenReport), knockoff::catalog::CatalogError> {
        match self {
            Backend::Folder(d) => knockoff::catalog::Catalog::open(d.path(), o),
            Backend::Shared(s) => knockoff::catalog::Catalog::connect(&s.spec, o),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Folder(_) => "folder",
            Backend::Shared(_) => "shared",
        }
    }
}

/// The embedded backend, and the shared one (when its engines run).
/// (Under CI a missing shared backend fails the test; elsewhere it runs on one backend and says so.)
pub fn backends(tag: &str) -> Vec<Backend> {
    let mut v = vec![Backend::Folder(tempfile::tempdir().unwrap())];
    match SharedDb::create(tag) {
        Some(db) => v.push(Backend::Shared(db)),
        None => eprintln!("NOTE: {tag} ran on the embedded backend only, not on both"),
    }
    v
}
