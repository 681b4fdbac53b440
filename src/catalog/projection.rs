//! A linear projection learned from the catalog's own labelled photos
//! (supervised whitening), applied to every vector before it enters the
//! graph and to every query before it is searched.
//!
//! Brands give many photos per product. Directions in which photos of the
//! *same* product differ (lighting, angle, shelf clutter) are noise for
//! retrieval; directions in which products differ are signal. The fit:
//!
//! 1. centre the unit vectors on their mean;
//! 2. whiten by the within-product covariance `Sw` (shrunk towards a scaled
//!    identity by `shrinkage`, so products with few photos cannot blow up
//!    rare directions): `P1 = V diag(e)^-1/2` from `Sw = V diag(e) Vᵀ`;
//! 3. keep the `dims` directions of largest variance of the whitened data.
//!
//! The store keeps the raw model vectors, so a projection can be refitted or
//! removed at any time and the graph rebuilt from the store.

use serde::{Deserialize, Serialize};

use super::files::PROJECTION_FILE;
use super::store::RecordStore;
use super::CatalogError;

/// Rows per block when accumulating the scatter matrices (O(d²) memory).
const BLOCK: usize = 1024;

/// What a projection was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionInfo {
    pub model: String,
    pub fitted_at: String,
    pub n_images: usize,
    pub n_products: usize,
    /// Products with at least two photos (the ones that teach `Sw`).
    pub n_products_with_photos: usize,
    pub in_dim: usize,
    pub out_dim: usize,
    pub shrinkage: f64,
    /// Short content hash; vector dumps and calibrations name the projection they were built with.
    pub id: String,
}

/// A fitted projection: `x -> normalise((x - mean) · matrix)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub info: ProjectionInfo,
    pub mean: Vec<f32>,
    /// `in_dim × out_dim`, row-major.
    pub matrix: Vec<f32>,
}

/// Fit settings.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Weight of the identity in `Sw` (share of its mean eigenvalue).
    pub shrinkage: f64,
    /// Output dimensions; `None`: max(products − 1, 128), capped at the input's.
    pub dims: Option<usize>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { shrinkage: 0.1, dims: None }
    }
}

impl Projection {
    /// Fits on `vectors` labelled by `labels` (any product key). Needs at
    /// least two products with two or more photos each.
    pub fn fit(vectors: &[&[f32]], labels: &[i64], model: &str, opts: FitOptions) -> Result<Projection, CatalogError> {
        use faer::{Mat, Side};
        let n = vectors.len();
        let d = vectors.first().map_or(0, |v| v.len());
        let mut by_label: std::collections::HashMap<i64, Vec<usize>> = std::collections::HashMap::new();
        for (i, l) in labels.iter().enumerate() {
            by_label.entry(*l).or_default().push(i);
        }
        let with_photos = Self::require_photos(labels)?;
        if !(opts.shrinkage > 0.0 && opts.shrinkage.is_finite()) {
            return Err(CatalogError::Projection("shrinkage must be > 0".into()));
        }
        let out_dim = opts.dims.unwrap_or_else(|| (by_label.len() - 1).max(128)).clamp(1, d);
        let mut mean = vec![0f64; d];
        for v in vectors {
            for (m, x) in mean.iter_mut().zip(v.iter()) {
                *m += f64::from(*x) / n as f64;
            }
        }
        // Product means, then the within-product and total scatter matrices,
        // accumulated over row blocks so memory stays O(d²) however many photos.
        let mut class_mean: std::collections::HashMap<i64, Vec<f64>> = std::collections::HashMap::new();
        for (l, idx) in &by_label {
            let mut m = vec![0f64; d];
            for i in idx {
                for (mj, x) in m.iter_mut().zip(vectors[*i].iter()) {
                    *mj += f64::from(*x);
                }
            }
            for v in &mut m {
                *v /= idx.len() as f64;
            }
            class_mean.insert(*l, m);
        }
        let mut sw = Mat::<f64>::zeros(d, d);
        let mut st = Mat::<f64>::zeros(d, d);
        for start in (0..n).step_by(BLOCK) {
            let rows = (n - start).min(BLOCK);
            let xc = Mat::<f64>::from_fn(rows, d, |i, j| f64::from(vectors[start + i][j]) - mean[j]);
            let resid = Mat::<f64>::from_fn(rows, d, |i, j| f64::from(vectors[start + i][j]) - class_mean[&labels[start + i]][j]);
            sw += resid.transpose() * &resid;
            st += xc.transpose() * &xc;
        }
        let scale = 1.0 / n as f64;
        let trace: f64 = (0..d).map(|j| sw[(j, j)] * scale).sum();
        let ridge = opts.shrinkage * trace / d as f64;
        for i in 0..d {
            for j in 0..d {
                sw[(i, j)] *= scale;
            }
            sw[(i, i)] += ridge;
        }
        let eig = sw.self_adjoint_eigen(Side::Lower).map_err(|e| CatalogError::Projection(format!("eigen-decomposition failed: {e:?}")))?;
        let (u, s) = (eig.U(), eig.S().column_vector());
        let p1 = Mat::<f64>::from_fn(d, d, |i, j| u[(i, j)] / s[j].max(1e-12).sqrt());
        // Total scatter in the whitened space: P1ᵀ St P1 / n.
        let mut total = p1.transpose() * &st * &p1;
        for i in 0..d {
            for j in 0..d {
                total[(i, j)] *= scale;
            }
        }
        let eig2 =
            total.self_adjoint_eigen(Side::Lower).map_err(|e| CatalogError::Projection(format!("eigen-decomposition failed: {e:?}")))?;
        let (u2, s2) = (eig2.U(), eig2.S().column_vector());
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|a, b| s2[*b].total_cmp(&s2[*a]));
        let keep = Mat::<f64>::from_fn(d, out_dim, |i, j| u2[(i, order[j])]);
        let p = &p1 * &keep;
        let matrix: Vec<f32> = (0..d).flat_map(|i| (0..out_dim).map(move |j| (i, j))).map(|(i, j)| p[(i, j)] as f32).collect();
        let mean: Vec<f32> = mean.into_iter().map(|m| m as f32).collect();
        let mut info = ProjectionInfo {
            model: model.into(),
            fitted_at: crate::util::now_rfc3339(),
            n_images: n,
            n_products: by_label.len(),
            n_products_with_photos: with_photos,
            in_dim: d,
            out_dim,
            shrinkage: opts.shrinkage,
            id: String::new(),
        };
        info.id = content_id(&mean, &matrix);
        Ok(Projection { info, mean, matrix })
    }

    /// Checks that `labels` hold at least two products with two or more
    /// photos each (what a fit learns from); returns how many have.
    pub fn require_photos(labels: &[i64]) -> Result<usize, CatalogError> {
        let mut counts: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
        for l in labels {
            *counts.entry(*l).or_default() += 1;
        }
        let with_photos = counts.values().filter(|c| **c >= 2).count();
        if with_photos < 2 {
            return Err(CatalogError::Projection(format!(
                "a projection learns from several photos per product: {with_photos} product(s) have two or more \
                 (index more photos per product, or keep searching without a projection)"
            )));
        }
        Ok(with_photos)
    }

    /// Projects and L2-normalises one vector.
    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        let k = self.info.out_dim;
        let mut out = vec![0f32; k];
        for ((x, m), row) in v.iter().zip(&self.mean).zip(self.matrix.chunks_exact(k)) {
            let c = x - m;
            for (o, w) in out.iter_mut().zip(row) {
                *o += c * w;
            }
        }
        crate::embed::l2_normalize(out)
    }

    /// The projection among `records`' shared files; `Ok(None)` when there is none.
    pub fn stored(records: &dyn RecordStore) -> Result<Option<Projection>, CatalogError> {
        let Some(text) = records.file(PROJECTION_FILE)? else { return Ok(None) };
        Projection::parse(&text, &format!("{PROJECTION_FILE} in {}", records.location())).map(Some)
    }

    /// A projection as [`Projection::to_json`] wrote it; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Projection, CatalogError> {
        let p: Projection = serde_json::from_str(text)
            .map_err(|e| CatalogError::Projection(format!("{origin} is unreadable ({e}); remove it or run `knockoff tune` again")))?;
        let (d, k) = (p.info.in_dim, p.info.out_dim);
        if p.mean.len() != d || p.matrix.len() != d * k || content_id(&p.mean, &p.matrix) != p.info.id {
            return Err(CatalogError::Projection(format!(
                "{origin} is damaged (sizes or checksum do not match); remove it (the graph is rebuilt from the store) or run `knockoff tune` again"
            )));
        }
        Ok(p)
    }

    pub fn to_json(&self) -> Result<String, CatalogError> {
        serde_json::to_string(self).map_err(|e| CatalogError::Projection(format!("cannot write {PROJECTION_FILE}: {e}")))
    }
}

fn content_id(mean: &[f32], matrix: &[f32]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for x in mean.iter().chain(matrix) {
        h.update(x.to_le_bytes());
    }
    hex::encode(&h.finalize()[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two products that differ along axis 0 while their photos vary far
    /// more along axis 1 (noise): after projection, a photo is nearer to its
    /// own product than to the other one, which raw cosine gets wrong.
    #[test]
    fn whitening_suppresses_within_product_noise() {
        let mut vecs = Vec::new();
        let mut labels = Vec::new();
        for (p, base) in [(1i64, 0.1f32), (2, -0.1)] {
            for noise in [-1.0f32, -0.5, 0.5, 1.0] {
                let v = vec![base, noise, 0.02 * noise * base.signum(), 0.3];
                vecs.push(crate::embed::l2_normalize(v));
                labels.push(p);
            }
        }
        let refs: Vec<&[f32]> = vecs.iter().map(std::vec::Vec::as_slice).collect();
        let proj = Projection::fit(&refs, &labels, "m", FitOptions { shrinkage: 0.01, dims: Some(2) }).unwrap();
        assert_eq!(proj.info.out_dim, 2);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        // Query: product 1's direction with strong noise of the other sign.
        let q = crate::embed::l2_normalize(vec![0.1, -0.9, 0.0, 0.3]);
        let (own, other) = (&vecs[3], &vecs[4]); // product 1 noise +1, product 2 noise -1
        assert!(dot(&q, other) > dot(&q, own), "raw cosine prefers the wrong product (the test's premise)");
        let (pq, pown, pother) = (proj.apply(&q), proj.apply(own), proj.apply(other));
        assert!(dot(&pq, &pown) > dot(&pq, &pother), "projection should prefer the right product");
        assert!((dot(&pq, &pq) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn refuses_catalogs_without_repeated_photos() {
        let vecs = [vec![1.0f32, 0.0], vec![0.0, 1.0], vec![0.6, 0.8]];
        let refs: Vec<&[f32]> = vecs.iter().map(std::vec::Vec::as_slice).collect();
        let err = Projection::fit(&refs, &[1, 2, 3], "m", FitOptions::default()).unwrap_err();
        assert!(err.to_string().contains("several photos per product"), "{err}");
    }

    #[test]
    fn stored_round_trip_and_damage_detection() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::catalog::store::sqlite::SqliteStore::open(dir.path()).unwrap();
        let records = store.as_dyn();
        assert!(Projection::stored(records).unwrap().is_none());
        let vecs: Vec<Vec<f32>> = (0..8).map(|i| crate::embed::l2_normalize(vec![(i % 2) as f32, 1.0, (i as f32).sin()])).collect();
        let refs: Vec<&[f32]> = vecs.iter().map(std::vec::Vec::as_slice).collect();
        let labels: Vec<i64> = (0..8).map(|i| i % 2).collect();
        let p = Projection::fit(&refs, &labels, "m", FitOptions::default()).unwrap();
        assert_eq!(p.info.out_dim, 3, "capped at the input dimension");
        records.put_file(PROJECTION_FILE, Some(&p.to_json().unwrap())).unwrap();
        assert_eq!(Projection::stored(records).unwrap().as_ref(), Some(&p));
        let mut bad = p.clone();
        bad.matrix[0] += 1.0;
        std::fs::write(dir.path().join(PROJECTION_FILE), serde_json::to_vec(&bad).unwrap()).unwrap();
        let err = Projection::stored(records).unwrap_err().to_string();
        assert!(err.contains("damaged") && err.contains(PROJECTION_FILE), "{err}");
        records.put_file(PROJECTION_FILE, None).unwrap();
        assert!(Projection::stored(records).unwrap().is_none());
    }
}
