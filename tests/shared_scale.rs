//! Not a test: the shared backend's scale numbers (docs/operations.md). Builds
//! an embedded catalog of N synthetic 1280-d images (with thumbnail- and
//! copy-feature-sized blobs), migrates it to PostgreSQL + Milvus, and times
//! the copy, the placement, the count check, a second replica's start and a
//! search on both backends. Needs the engines (`scripts/cluster.sh up`, then
//! `KNOCKOFF_TEST_STORE` / `KNOCKOFF_TEST_VECTORS` as `scripts/test.sh` sets them):
//! `N=20000 cargo test --release --test shared_scale -- --ignored --nocapture`
mod common;
use knockoff::catalog::transfer::{check_counts, copy_rows};
use knockoff::catalog::Location;
use knockoff::catalog::{Catalog, CatalogOptions, Filter, IndexParams, Label, NewImage, Product};
use std::time::Instant;

#[test]
#[ignore = "a benchmark, minutes long; needs the shared engines"]
fn shared_backend_at_scale() {
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dim = 1280;
    let o = CatalogOptions { model: "scale".into(), dim, params: IndexParams::default(), auto_compact_share: 0.2, fingerprint: None };
    let dir = tempfile::tempdir().unwrap();
    let (folder, _) = Catalog::open(&dir.path().join("a"), o.clone()).unwrap();
    let mut x: u64 = 88_172_645_463_325_252;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 20000) as f32 / 10000.0 - 1.0
    };
    let t = Instant::now();
    for b in 0..n / 1000 {
        let items: Vec<NewImage> = (0..1000)
            .map(|j| {
                let i = b * 1000 + j;
                let mut v: Vec<f32> = (0..dim).map(|_| rnd()).collect();
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
                for a in &mut v {
                    *a /= norm;
                }
                NewImage {
                    product: Product::new(format!("p{}", i / 5), if i % 7 == 0 { Label::Counterfeit } else { Label::Authentic }),
                    source: format!("s{i}"),
                    sha256: format!("{i:064x}"),
                    width: 1,
                    height: 1,
                    embedding: v,
                    thumbnail: Some(vec![0u8; 12000]),
                    copy_features: Some(vec![0u8; 5000]),
                }
            })
            .collect();
        folder.add_images(&items).unwrap();
    }
    folder.persist().unwrap();
    eprintln!("folder built: {n} in {:?}", t.elapsed());
    let db = common::SharedDb::create("scale").expect("the shared engines");
    let t = Instant::now();
    let r = copy_rows(&Location::Folder(dir.path().join("a")), &Location::Shared(db.spec.clone()), &mut |_| {}).unwrap();
    eprintln!("copy_rows {} images: {:?}", r.images, t.elapsed());
    let t = Instant::now();
    let (shared, rep) = Catalog::connect(&db.spec, o.clone()).unwrap();
    eprintln!("connect + place: {:?} {rep:?}", t.elapsed());
    let t = Instant::now();
    check_counts(&folder, &shared).unwrap();
    eprintln!("check_counts: {:?}", t.elapsed());
    let t = Instant::now();
    let (_s2, _) = Catalog::connect(&db.spec, o.clone()).unwrap();
    eprintln!("second replica connect: {:?}", t.elapsed());
    let q: Vec<f32> = {
        let v: Vec<f32> = (0..dim).map(|_| rnd()).collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    };
    let t = Instant::now();
    for _ in 0..50 {
        shared.search_images(&q, 64, None, &Filter::default()).unwrap();
    }
    eprintln!("search k=64: {:?} each", t.elapsed() / 50);
    let t = Instant::now();
    for _ in 0..50 {
        folder.search_images(&q, 64, None, &Filter::default()).unwrap();
    }
    eprintln!("folder search k=64: {:?} each", t.elapsed() / 50);
}
