//! Fuzzing on the stable toolchain: a small mutational fuzzer over the
//! parsers that take outside input — image decode + preprocessing, manifests
//! (CSV and JSON Lines), the HTTP body readers (raw, multipart, JSON, batch),
//! the config file and the vector-dump marker.
//!
//! - `corpus_and_crashes_replay_cleanly` (every run, CI included): every file
//!   in `tests/fuzz/corpus/<target>/` and `tests/fuzz/crashes/<target>/` goes
//!   through its target without a panic or an abort.
//! - `short_random_pass` (every run): a few seconds of mutations per target.
//! - `campaign` (`#[ignore]`; `scripts/fuzz.sh [SECONDS]` runs it): mutates
//!   for `FUZZ_SECONDS`, keeps inputs that reach an outcome not seen before
//!   (the outcome's kind is the coverage signal) in `FUZZ_OUT/<target>/`, and
//!   writes each input to `FUZZ_OUT/current-<target>` before running it, so an
//!   input that aborts the process (out of memory under the script's memory
//!   cap, stack overflow) is left on disk for the script to keep as a crash.
//!
//! A panic is a finding as much as an abort: the targets must answer every
//! input with `Ok` or a typed error.

mod common;

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::root;

const TARGETS: [&str; 6] = ["decode", "manifest_csv", "manifest_jsonl", "body", "config", "marker"];

/// Runs one input through a target; returns a short outcome label (coverage signal).
fn run(target: &str, input: &[u8]) -> String {
    match target {
        "decode" => decode(input),
        "manifest_csv" => manifest(input, knockoff::ingest::ManifestFormat::Csv),
        "manifest_jsonl" => manifest(input, knockoff::ingest::ManifestFormat::JsonLines),
        "body" => body(input),
        "config" => config(input),
        "marker" => marker(input),
        other => panic!("unknown target {other}"),
    }
}

fn decode(input: &[u8]) -> String {
    use std::sync::OnceLock;
    static PRE: OnceLock<knockoff::embed::Preprocessor> = OnceLock::new();
    let pre = PRE.get_or_init(|| {
        let reg = knockoff::embed::ModelRegistry::open(&root().join("models")).unwrap();
        knockoff::embed::Preprocessor::for_model(reg.get(Some("efficientnet-lite0")).unwrap())
    });
    match knockoff::embed::decode_image(input, "fuzz", knockoff::embed::DecodeLimits::default()) {
        Ok(img) => {
            let mut resizer = fast_image_resize::Resizer::new();
            let t = pre.run(&img.rgb, &mut resizer);
            assert_eq!(t.len(), pre.tensor_len());
            assert!(t.iter().all(|x| x.is_finite()));
            format!("ok {:?}", img.format)
        }
        Err(e) => format!("err {}", e.kind()),
    }
}

fn manifest(input: &[u8], format: knockoff::ingest::ManifestFormat) -> String {
    let defaults = knockoff::ingest::SourceDefaults::default();
    match knockoff::ingest::parse_manifest(input, Path::new("fuzz"), Some(Path::new("/base")), format, &defaults) {
        Ok((items, errors)) => {
            for it in &items {
                knockoff::catalog::check_product_id(&it.product.product_id).expect("accepted ids follow the id rule");
            }
            format!(
                "ok items={} errors={}",
                items.len().min(3),
                errors.iter().map(knockoff::ingest::IngestError::kind).collect::<HashSet<_>>().len()
            )
        }
        Err(e) => format!("err {}", e.kind()),
    }
}

/// First byte: which content type; the rest: the body.
fn body(input: &[u8]) -> String {
    const TYPES: [&str; 6] = [
        "image/jpeg",
        "multipart/form-data; boundary=XyZ",
        "application/json",
        "application/octet-stream",
        "text/plain",
        "multipart/form-data",
    ];
    let (ctype, rest) = input.split_first().map_or((TYPES[0], &[][..]), |(b, r)| (TYPES[*b as usize % TYPES.len()], r));
    let make = || axum::http::Request::builder().header("content-type", ctype).body(axum::body::Body::from(rest.to_vec())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let one = rt.block_on(knockoff::api::extract::read_image(make(), 64 * 1024));
    let batch = rt.block_on(knockoff::api::extract::read_batch(make(), 64 * 1024, 4));
    if let Ok(items) = &batch {
        assert!(!items.is_empty() && items.len() <= 4);
    }
    format!("{ctype} {} / {}", label(&one), label(&batch))
}

fn config(input: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(input) else { return "not utf8".into() };
    match knockoff::api::ConfigFile::parse(text, Path::new("fuzz.toml")) {
        Ok(file) => match knockoff::api::Settings::resolve(knockoff::api::Overrides::default(), file) {
            Ok(_) => "ok".into(),
            Err(knockoff::api::ConfigError::Keys(_)) => "resolve err keys".into(),
            Err(knockoff::api::ConfigError::PublicWithoutKeys(_)) => "resolve err public".into(),
            Err(_) => "resolve err other".into(),
        },
        Err(_) => "parse err".into(),
    }
}

/// The fuzzed bytes become `CURRENT.json` beside a real small dump.
fn marker(input: &[u8]) -> String {
    use knockoff::catalog::vectors::HnswIndex;
    use knockoff::catalog::IndexParams;
    let dir = tempfile::tempdir().unwrap();
    let vdir = dir.path().join("vectors");
    let idx = HnswIndex::new(4, IndexParams::default(), 8);
    let items: Vec<(i64, Vec<f32>)> = (1..=8).map(|i| (i, vec![(i as f32).sin(), (i as f32).cos(), 0.5, -0.5])).collect();
    idx.add_many(&items).unwrap();
    idx.dump(&vdir, 1).unwrap();
    std::fs::write(vdir.join("CURRENT.json"), input).unwrap();
    match HnswIndex::load(&vdir, 4, IndexParams::default()) {
        Ok(Some((v, m))) => {
            assert_eq!(v.len(), m.points);
            let _ = v.nearest(&[0.5, 0.5, 0.5, 0.5], 3, 16, None);
            "loaded".into()
        }
        Ok(None) => "none".into(),
        // The error's first words without numbers or quoted values: its kind, not its details.
        Err(e) => format!("err {}", e.to_string().chars().filter(|c| c.is_alphabetic() || *c == ' ').take(30).collect::<String>()),
    }
}

/// "ok", or the problem's title: the outcome of a body reader.
fn label<T>(r: &Result<T, knockoff::api::ApiError>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => e.problem().title,
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break parsers: 0, 1, -1, the edges of 8/16/32-bit ranges, huge sizes.
const INTERESTING: [u32; 10] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 40_000_000, 16_385];

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                v.splice(i..i, (0..n).map(|_| rng.next() as u8));
            }
            3 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            4 if len > 4 => {
                // Overwrite 4 bytes (an image dimension, a length field) with an interesting value.
                let i = rng.below(len - 3);
                let x = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 { x.to_be_bytes() } else { x.to_le_bytes() };
                v[i..i + 4].copy_from_slice(&bytes);
            }
            5 if !corpus.is_empty() => {
                // Splice in a piece of another input.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a);
                    let i = rng.below(len + 1);
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            6 if len > 1 => {
                // Duplicate a chunk (repeated rows, fields, segments).
                let a = rng.below(len);
                let b = a + rng.below((len - a).min(256));
                let chunk = v[a..b].to_vec();
                let i = rng.below(len + 1);
                v.splice(i..i, chunk);
            }
            _ if len > 0 => v.truncate(rng.below(len)),
            _ => v.push(rng.next() as u8),
        }
    }
    v.truncate(1 << 20);
    v
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn fuzz_dir() -> PathBuf {
    root().join("tests/fuzz")
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = files_in(&fuzz_dir().join("corpus").join(target)).iter().map(|p| std::fs::read(p).unwrap()).collect();
    if target == "decode" {
        for sub in ["photos", "formats", "bad"] {
            v.extend(files_in(&root().join("tests/fixtures").join(sub)).iter().map(|p| std::fs::read(p).unwrap()));
        }
    }
    assert!(!v.is_empty(), "no seeds for {target}");
    v
}

/// Runs `input`, turning a panic into `Err` with its message.
fn run_caught(target: &str, input: &[u8]) -> Result<String, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| run(target, input)))
        .map_err(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(ToString::to_string)).unwrap_or_default())
}

#[test]
fn corpus_and_crashes_replay_cleanly() {
    for target in TARGETS {
        let mut inputs = corpus(target);
        inputs.extend(files_in(&fuzz_dir().join("crashes").join(target)).iter().map(|p| std::fs::read(p).unwrap()));
        for (i, input) in inputs.iter().enumerate() {
            if let Err(msg) = run_caught(target, input) {
                panic!("{target} input {i} ({} bytes) panicked: {msg}", input.len());
            }
        }
    }
}

struct Stats {
    execs: usize,
    outcomes: HashSet<String>,
    kept: usize,
    panics: usize,
}

/// Mutates the corpus of `target` for `budget`; keeps inputs with new outcomes in `out` (if given).
fn fuzz(target: &str, budget: Duration, seed: u64, out: Option<&Path>) -> Stats {
    let mut pool = corpus(target);
    let mut st = Stats { execs: 0, outcomes: HashSet::new(), kept: 0, panics: 0 };
    for input in &pool {
        if let Ok(o) = run_caught(target, input) {
            st.outcomes.insert(o);
        }
    }
    let mut rng = Rng(seed | 1);
    let t0 = Instant::now();
    while t0.elapsed() < budget {
        let base = pool[rng.below(pool.len())].clone();
        let input = mutate(&mut rng, &base, &pool);
        if let Some(dir) = out {
            std::fs::write(dir.join(format!("current-{target}")), &input).unwrap();
        }
        st.execs += 1;
        match run_caught(target, &input) {
            Ok(o) => {
                if st.outcomes.insert(o) {
                    st.kept += 1;
                    if let Some(dir) = out {
                        let d = dir.join(target);
                        std::fs::create_dir_all(&d).unwrap();
                        std::fs::write(d.join(format!("{:016x}", rng.next())), &input).unwrap();
                    }
                    pool.push(input);
                }
            }
            Err(msg) => {
                st.panics += 1;
                let dir =
                    out.map_or_else(|| std::env::temp_dir().join("knockoff-fuzz-panics"), Path::to_path_buf).join("panics").join(target);
                std::fs::create_dir_all(&dir).unwrap();
                let f = dir.join(format!("{:016x}", rng.next()));
                std::fs::write(&f, &input).unwrap();
                eprintln!("[fuzz] {target}: panic ({msg}); input kept in {}", f.display());
            }
        }
    }
    st
}

#[test]
fn short_random_pass() {
    let per = Duration::from_millis(std::env::var("FUZZ_SHORT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500));
    let mut panics = 0;
    for (i, target) in TARGETS.iter().enumerate() {
        let st = fuzz(target, per, 0x5EED + i as u64, None);
        eprintln!("[fuzz] {target}: {} execs, {} outcomes, {} panics", st.execs, st.outcomes.len(), st.panics);
        panics += st.panics;
    }
    assert_eq!(panics, 0, "a target panicked (inputs kept under the temp dir's knockoff-fuzz-panics/)");
}

/// The long campaign (`scripts/fuzz.sh`): `FUZZ_SECONDS` in all, split over
/// the targets (or `FUZZ_TARGETS`, comma-separated); `FUZZ_OUT` receives new
/// corpus entries, panics and the current input.
#[test]
#[ignore = "long; run by scripts/fuzz.sh"]
fn campaign() {
    let secs: u64 = std::env::var("FUZZ_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let out = PathBuf::from(std::env::var("FUZZ_OUT").unwrap_or_else(|_| "target/fuzz-out".into()));
    std::fs::create_dir_all(&out).unwrap();
    let targets: Vec<String> = std::env::var("FUZZ_TARGETS")
        .map_or_else(|_| TARGETS.iter().map(ToString::to_string).collect(), |t| t.split(',').map(str::to_string).collect());
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let per = Duration::from_secs(secs / targets.len() as u64);
    let mut panics = 0;
    for (i, target) in targets.iter().enumerate() {
        let st = fuzz(target, per, seed.wrapping_mul(1000) + i as u64, Some(&out));
        println!(
            "[fuzz] {target}: {} execs in {:?}, {} outcomes, {} new corpus entries, {} panics",
            st.execs,
            per,
            st.outcomes.len(),
            st.kept,
            st.panics
        );
        panics += st.panics;
        let _ = std::fs::remove_file(out.join(format!("current-{target}")));
    }
    assert_eq!(panics, 0, "panics found: see {}/panics", out.display());
}
