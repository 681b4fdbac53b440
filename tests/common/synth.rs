//! Synthetic catalogs for the catalog tests: deterministic unit vectors
//! grouped by product (no model needed).

use knockoff::catalog::{CatalogOptions, IndexParams, Label, NewImage, Product};

pub const DIM: usize = 32;

pub fn opts() -> CatalogOptions {
    CatalogOptions {
        model: "test-model".into(),
        dim: DIM,
        params: IndexParams::default(),
        auto_compact_share: 0.2,
        fingerprint: Some("fp-1".into()),
    }
}

/// Deterministic pseudo-random unit vector.
pub fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut v: Vec<f32> = (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 20_000) as f32 / 10_000.0 - 1.0
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    for a in &mut v {
        *a /= n;
    }
    v
}

/// A vector close to `vector(center)`.
pub fn near(center: u64, seed: u64) -> Vec<f32> {
    let c = vector(center);
    let noise = vector(seed + 1_000_000);
    let mut v: Vec<f32> = c.iter().zip(&noise).map(|(a, b)| a + 0.15 * b).collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    for a in &mut v {
        *a /= n;
    }
    v
}

pub fn product(i: u64) -> Product {
    let mut p = Product::new(format!("p{i}"), if i % 3 == 0 { Label::Counterfeit } else { Label::Authentic });
    p.brand = Some(if i % 2 == 0 { "Acme".into() } else { "Globex".into() });
    p.category = Some(format!("cat{}", i % 4));
    p
}

/// `per` images for each of `n` products, image j of product i near vector(i).
pub fn images(n: u64, per: u64) -> Vec<NewImage> {
    (0..n)
        .flat_map(|i| {
            (0..per).map(move |j| NewImage {
                product: product(i),
                source: format!("mem://{i}/{j}"),
                sha256: format!("{:064x}", i * 1000 + j),
                width: 10,
                height: 10,
                embedding: near(i, i * 1000 + j),
                thumbnail: None,
                copy_features: None,
            })
        })
        .collect()
}
