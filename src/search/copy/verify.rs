//! Verifying a copy: descriptor matches (nearest neighbour with a ratio
//! test), one affine map fitted by RANSAC (mirrored copies through the
//! mirrored descriptors), the points it explains and where the catalog
//! image lands; then the photometric check, a correlation of the aligned
//! pixels cell by cell.

use serde::{Deserialize, Serialize};

use crate::embed::local::{hamming, Descriptor, LocalFeatures};

/// A verified geometric match between a query and one catalog image.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyEvidence {
    /// Matches the fitted map explains.
    pub inliers: usize,
    /// Descriptor matches before verification.
    pub matches: usize,
    /// Points the catalog image has (the most that could match).
    pub catalog_points: usize,
    /// The fitted map, catalog working-scale pixels → query working-scale pixels (in the mirrored frame when mirrored).
    pub map: [f32; 6],
    /// Whether the copy is mirrored.
    pub mirrored: bool,
    /// Where the catalog image lands in the query: left, top, right, bottom in 0–1.
    pub region: [f32; 4],
    /// The inlier pairs (query point, catalog point) in each image's 0–1 coordinates, for drawing.
    pub pairs: Vec<([f32; 2], [f32; 2])>,
}

/// The largest descriptor distance a match may have (of 256 bits).
const MAX_DISTANCE: u32 = 64;
/// A match's distance must be below this share of the second-best's.
const RATIO: f32 = 0.85;
const RANSAC_ROUNDS: usize = 300;
/// Inlier tolerance, as a share of the query's longest working-scale side.
const TOLERANCE: f32 = 0.008;

/// Nearest query descriptor for each catalog descriptor, passing the ratio test.
fn match_descriptors(query: &[Descriptor], catalog: &[Descriptor]) -> Vec<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has POPCNT (checked just above).
        return unsafe { match_descriptors_popcnt(query, catalog) };
    }
    match_descriptors_portable(query, catalog)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn match_descriptors_popcnt(query: &[Descriptor], catalog: &[Descriptor]) -> Vec<(usize, usize)> {
    match_descriptors_portable(query, catalog)
}

#[inline(always)]
fn match_descriptors_portable(query: &[Descriptor], catalog: &[Descriptor]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (j, c) in catalog.iter().enumerate() {
        let (mut best, mut second, mut at) = (u32::MAX, u32::MAX, 0);
        for (i, q) in query.iter().enumerate() {
            let d = hamming(q, c);
            if d < second {
                if d < best {
                    (second, best, at) = (best, d, i);
                } else {
                    second = d;
                }
            }
        }
        if best <= MAX_DISTANCE && (best as f32) < RATIO * second as f32 {
            out.push((at, j));
        }
    }
    out
}

/// An affine map x' = a x + b y + c, y' = d x + e y + f.
type Affine = [f32; 6];

fn apply(m: &Affine, p: [f32; 2]) -> [f32; 2] {
    [m[0] * p[0] + m[1] * p[1] + m[2], m[3] * p[0] + m[4] * p[1] + m[5]]
}

/// Least-squares affine map from `src` to `dst` (at least 3 pairs); `None` if degenerate.
fn fit_affine(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Affine> {
    // Normal equations of [x y 1] · [a b c]^T = x' (and likewise for y'), in f64.
    let mut ata = [[0f64; 3]; 3];
    let (mut atx, mut aty) = ([0f64; 3], [0f64; 3]);
    for (s, d) in src.iter().zip(dst) {
        let r = [f64::from(s[0]), f64::from(s[1]), 1.0];
        for i in 0..3 {
            for j in 0..3 {
                ata[i][j] += r[i] * r[j];
            }
            atx[i] += r[i] * f64::from(d[0]);
            aty[i] += r[i] * f64::from(d[1]);
        }
    }
    // (Nearly) singular relative to the matrix's scale: collinear points.
    let singular = 1e-9 * ata.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max).powi(3).max(1e-300);
    let x = crate::util::solve3(ata, atx, singular)?;
    let y = crate::util::solve3(ata, aty, singular)?;
    Some([x[0] as f32, x[1] as f32, x[2] as f32, y[0] as f32, y[1] as f32, y[2] as f32])
}

/// Whether a map is one a copy edit could make: not mirrored (mirrors are
/// matched separately), scale within 1/12–12, aspect change at most 2×.
fn plausible(m: &Affine) -> bool {
    let (a, b, d, e) = (m[0], m[1], m[3], m[4]);
    let det = a * e - b * d;
    if det <= 0.0 {
        return false;
    }
    // Singular values of [[a, b], [d, e]].
    let s = a * a + b * b + d * d + e * e;
    let root = (s * s - 4.0 * det * det).max(0.0).sqrt();
    let (s1, s2) = (f32::midpoint(s, root).sqrt(), ((s - root) / 2.0).max(0.0).sqrt());
    s2 > 0.0 && s1 / s2 <= 2.0 && (1.0 / 12.0..=12.0).contains(&det.sqrt())
}

/// A small deterministic generator for RANSAC's samples.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// RANSAC for the affine map catalog → query; returns the map and its inlier mask.
fn ransac(src: &[[f32; 2]], dst: &[[f32; 2]], tol: f32) -> Option<(Affine, Vec<bool>)> {
    let n = src.len();
    if n < 4 {
        return None;
    }
    let tol2 = tol * tol;
    let count = |m: &Affine| -> usize { src.iter().zip(dst).filter(|(s, d)| dist2(apply(m, **s), **d) <= tol2).count() };
    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ n as u64);
    let (mut best, mut best_n) = (None, 3);
    for _ in 0..RANSAC_ROUNDS {
        let (i, j, k) = (rng.below(n), rng.below(n), rng.below(n));
        if i == j || j == k || i == k {
            continue;
        }
        let Some(m) = fit_affine(&[src[i], src[j], src[k]], &[dst[i], dst[j], dst[k]]) else { continue };
        if !plausible(&m) {
            continue;
        }
        let c = count(&m);
        if c > best_n {
            (best, best_n) = (Some(m), c);
        }
    }
    let mut m = best?;
    // Refit on the inliers, twice.
    for _ in 0..2 {
        let (s, d): (Vec<_>, Vec<_>) =
            src.iter().zip(dst).filter(|(s, d)| dist2(apply(&m, **s), **d) <= tol2).map(|(s, d)| (*s, *d)).unzip();
        match fit_affine(&s, &d) {
            Some(r) if plausible(&r) && count(&r) >= best_n => (m, best_n) = (r, count(&r)),
            _ => break,
        }
    }
    let mask = src.iter().zip(dst).map(|(s, d)| dist2(apply(&m, *s), *d) <= tol2).collect();
    Some((m, mask))
}

fn dist2(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// Matches `query` (with mirrored descriptors) against one catalog image's
/// features and verifies the matches geometrically. `None`: not enough
/// consistent matches to fit a map at all.
pub fn verify(query: &LocalFeatures, catalog: &LocalFeatures) -> Option<CopyEvidence> {
    let direct = verify_one(query, &query.descriptors, catalog, false);
    let mirrored = if query.mirrored.is_empty() { None } else { verify_one(query, &query.mirrored, catalog, true) };
    match (direct, mirrored) {
        (Some(a), Some(b)) => Some(if b.inliers > a.inliers { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The most matches one map explains (direct or mirrored), as [`verify`]
/// counts them; 0 without trying when fewer than `at_least` descriptors
/// match, since no map can then explain `at_least` (the gate's question).
pub fn explained(query: &LocalFeatures, catalog: &LocalFeatures, at_least: usize) -> usize {
    [(&query.descriptors, false), (&query.mirrored, true)]
        .into_iter()
        .filter(|(d, _)| !d.is_empty())
        .filter_map(|(d, mirrored)| {
            let pairs = match_descriptors(d, &catalog.descriptors);
            (pairs.len() >= at_least).then(|| verify_pairs(query, catalog, &pairs, mirrored)).flatten()
        })
        .map(|e| e.inliers)
        .max()
        .unwrap_or(0)
}

fn verify_one(query: &LocalFeatures, descriptors: &[Descriptor], catalog: &LocalFeatures, mirrored: bool) -> Option<CopyEvidence> {
    verify_pairs(query, catalog, &match_descriptors(descriptors, &catalog.descriptors), mirrored)
}

/// Fits one map to the descriptor matches `pairs` (query index, catalog index).
fn verify_pairs(query: &LocalFeatures, catalog: &LocalFeatures, pairs: &[(usize, usize)], mirrored: bool) -> Option<CopyEvidence> {
    let (qw, qh) = (f32::from(query.width.max(1)), f32::from(query.height.max(1)));
    let (cw, ch) = (f32::from(catalog.width.max(1)), f32::from(catalog.height.max(1)));
    // In the mirrored frame a query point sits at (qw - x, y).
    let qpoint = |i: usize| {
        let [x, y] = query.points[i];
        if mirrored {
            [qw - x, y]
        } else {
            [x, y]
        }
    };
    let src: Vec<[f32; 2]> = pairs.iter().map(|&(_, j)| catalog.points[j]).collect();
    let dst: Vec<[f32; 2]> = pairs.iter().map(|&(i, _)| qpoint(i)).collect();
    let tol = TOLERANCE * qw.max(qh);
    let (m, mask) = ransac(&src, &dst, tol)?;
    let corners = [[0.0, 0.0], [cw, 0.0], [0.0, ch], [cw, ch]].map(|p| apply(&m, p));
    let (mut l, mut t, mut r, mut b) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for [x, y] in corners {
        (l, t, r, b) = (l.min(x), t.min(y), r.max(x), b.max(y));
    }
    let mut region = [l / qw, t / qh, r / qw, b / qh].map(|v| v.clamp(0.0, 1.0));
    let unflip = |x: f32| if mirrored { 1.0 - x } else { x };
    if mirrored {
        region = [unflip(region[2]), region[1], unflip(region[0]), region[3]];
    }
    let kept: Vec<([f32; 2], [f32; 2])> = src
        .iter()
        .zip(&dst)
        .zip(&mask)
        .filter(|(_, &keep)| keep)
        .map(|((s, d), _)| ([unflip(d[0] / qw), d[1] / qh], [s[0] / cw, s[1] / ch]))
        .collect();
    Some(CopyEvidence {
        inliers: kept.len(),
        matches: pairs.len(),
        catalog_points: catalog.points.len(),
        map: m,
        mirrored,
        region,
        pairs: kept,
    })
}

/// Photometric check: the correlation between the query's grey pixels and
/// the catalog image (`catalog`, any size; `features` gives the frame the map
/// starts from) warped by the fitted map, over the region where the catalog
/// image lands. A copy correlates highly (the same pixels, re-encoded or
/// recoloured); another photo of the same scene does not (light, parallax, focus).
pub fn photometric(query: &LocalFeatures, features: &LocalFeatures, catalog: &image::GrayImage, ev: &CopyEvidence) -> Option<f32> {
    let (qw, qh) = (usize::from(query.width), usize::from(query.height));
    if query.pixels.len() != qw * qh || catalog.width() < 2 || catalog.height() < 2 {
        return None;
    }
    let m = ev.map;
    let det = m[0] * m[4] - m[1] * m[3];
    if det.abs() < 1e-9 {
        return None;
    }
    // Inverse map: query (mirrored frame) → catalog working scale → catalog pixels.
    let inv = [m[4] / det, -m[1] / det, -m[3] / det, m[0] / det];
    let (sx, sy) = (catalog.width() as f32 / f32::from(features.width.max(1)), catalog.height() as f32 / f32::from(features.height.max(1)));
    // Correlation per cell of a 4×4 grid over the region, then the median
    // cell: a banner or a sticker spoils a few cells, not the answer.
    let r = ev.region;
    let (rl, rt) = (r[0] * qw as f32, r[1] * qh as f32);
    let (rw, rh) = (((r[2] - r[0]) * qw as f32).max(1.0), ((r[3] - r[1]) * qh as f32).max(1.0));
    let mut cells = [[0f64; 6]; GRID * GRID];
    // A plain border or padding around the copy is no evidence either way: where
    // the copy was cropped and then padded, the catalog image's cropped-off
    // margins land on the padding, and would spoil the edge cells (12 of 16).
    let [bx0, by0, bx1, by1] = content_box(&query.pixels, qw, qh);
    let box_side = ((det.abs().sqrt() / sx.max(1e-6)).round() as usize).clamp(1, 6);
    let step = (qw.max(qh) / 200).max(1);
    for y in (by0..by1).step_by(step) {
        for x in (bx0..bx1).step_by(step) {
            let xm = if ev.mirrored { qw as f32 - x as f32 } else { x as f32 };
            let (dx, dy) = (xm - m[2], y as f32 - m[5]);
            let (cx, cy) = ((inv[0] * dx + inv[1] * dy) * sx, (inv[2] * dx + inv[3] * dy) * sy);
            if cx < 0.0 || cy < 0.0 || cx >= (catalog.width() - 1) as f32 || cy >= (catalog.height() - 1) as f32 {
                continue;
            }
            let (x0, y0) = (cx as u32, cy as u32);
            let (fx, fy) = (cx.fract(), cy.fract());
            let p = |xx: u32, yy: u32| f32::from(catalog.get_pixel(xx, yy)[0]);
            let c = (p(x0, y0) * (1.0 - fx) + p(x0 + 1, y0) * fx) * (1.0 - fy) + (p(x0, y0 + 1) * (1.0 - fx) + p(x0 + 1, y0 + 1) * fx) * fy;
            // The query averaged over the footprint of one catalog pixel, so both sides have the same detail.
            let q = if box_side > 1 {
                let (x0, y0) = (x.saturating_sub(box_side / 2), y.saturating_sub(box_side / 2));
                let (x1, y1) = ((x0 + box_side).min(qw), (y0 + box_side).min(qh));
                let sum: u32 = (y0..y1).map(|yy| query.pixels[yy * qw + x0..yy * qw + x1].iter().map(|&v| u32::from(v)).sum::<u32>()).sum();
                f64::from(sum) / ((x1 - x0) * (y1 - y0)) as f64
            } else {
                f64::from(query.pixels[y * qw + x])
            };
            let c = f64::from(c);
            let gx = (((x as f32 - rl) / rw * GRID as f32) as usize).min(GRID - 1);
            let gy = (((y as f32 - rt) / rh * GRID as f32) as usize).min(GRID - 1);
            let cell = &mut cells[gy * GRID + gx];
            for (acc, v) in cell.iter_mut().zip([1.0, q, c, q * q, c * c, q * c]) {
                *acc += v;
            }
        }
    }
    let mut rs: Vec<f32> = cells
        .iter()
        .filter_map(|&[n, sq, sc, sqq, scc, sqc]| {
            let cov = sqc / n - (sq / n) * (sc / n);
            let (vq, vc) = (sqq / n - (sq / n).powi(2), scc / n - (sc / n).powi(2));
            (n >= 16.0 && vq > 36.0 && vc > 36.0).then(|| (cov / (vq * vc).sqrt()) as f32)
        })
        .collect();
    if rs.len() < 3 {
        return None;
    }
    rs.sort_by(f32::total_cmp);
    Some(rs[rs.len() / 2])
}

/// The part of a grey image inside its plain borders: left, top, right,
/// bottom (exclusive), trimming rows and columns whose values barely vary
/// (a uniform margin of any colour, JPEG ringing included); the whole frame
/// when every row is plain.
fn content_box(px: &[u8], w: usize, h: usize) -> [usize; 4] {
    let (Ok(w32), Ok(h32)) = (u32::try_from(w), u32::try_from(h)) else { return [0, 0, w, h] };
    let at = |x: u32, y: u32| f32::from(px[y as usize * w + x as usize]);
    crate::embed::regions::inside_plain_margins(w32, h32, PLAIN_STD, at)
        .map_or([0, 0, w, h], |[l, t, bw, bh]| [l as usize, t as usize, (l + bw) as usize, (t + bh) as usize])
}

/// Grey-level standard deviation under which a row or column of the query is plain margin.
const PLAIN_STD: f32 = 3.0;

/// Cells per side of the photometric check's grid.
const GRID: usize = 4;

/// Maps verification evidence to `p_copy`: a logistic in the share of the
/// catalog image's points the map explains (`coverage`, so that a plain,
/// low-texture image is not held to a richly textured one's count) and
/// −ln(1.001 − correlation) (the photometric check; 0 when it did not run),
/// fitted on generated copies and consecutive shots of the same products
/// (`scripts/eval_copies.sh`, photos-train; see README).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CopyModel {
    pub intercept: f32,
    /// Weight of the explained share of the catalog image's points.
    pub coverage: f32,
    /// Weight of −ln(1.001 − max(correlation, 0)).
    pub correlation: f32,
    /// Lowest `p_copy` a lookup reports as a copy.
    pub report_at: f32,
    /// Glance points one map must explain on some candidate before a
    /// one-picture photo is checked in full (`super::gate`); `None`: every
    /// photo is checked in full (the gate is still measured).
    pub gate_inliers: Option<usize>,
}

impl Default for CopyModel {
    fn default() -> Self {
        CopyModel { intercept: -9.53, coverage: 8.63, correlation: 3.24, report_at: 0.5, gate_inliers: Some(GATE_INLIERS) }
    }
}

/// The gate's threshold: it stops no detected copy on the copy protocols
/// (both halves, both models) or the reseller edits, and lets through the
/// heaviest crop of `tests/copies.rs` (11 glance points); 12 would stop one
/// crop of photos-train (`GATE=off scripts/eval_copies.sh`; docs/evaluation.md).
pub const GATE_INLIERS: usize = 10;

impl CopyModel {
    /// The log-odds of a copy, unclamped (the score copies are ranked by).
    pub fn logit(&self, evidence: Option<&CopyEvidence>, correlation: Option<f32>) -> f32 {
        let coverage = evidence.map_or(0.0, |e| e.inliers as f32 / e.catalog_points.max(1) as f32);
        let r = correlation.unwrap_or(0.0).clamp(0.0, 1.0);
        self.intercept + self.coverage * coverage - self.correlation * (1.001 - r).ln()
    }

    /// `p_copy` for the evidence and the photometric correlation.
    pub fn p_copy(&self, evidence: Option<&CopyEvidence>, correlation: Option<f32>) -> f32 {
        (1.0 / (1.0 + (-self.logit(evidence, correlation)).exp())).clamp(0.001, 0.999)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_box_trims_plain_margins_of_any_colour() {
        let (w, h) = (60, 40);
        let mut px = vec![235u8; w * h];
        for y in 5..30 {
            for x in 8..50 {
                px[y * w + x] = ((x * 37 + y * 11) % 200) as u8;
            }
        }
        assert_eq!(content_box(&px, w, h), [8, 5, 50, 30]);
        assert_eq!(content_box(&vec![7u8; w * h], w, h), [0, 0, w, h], "a plain image keeps its frame");
    }

    #[test]
    fn affine_fit_recovers_a_known_map() {
        let m: Affine = [1.5, 0.1, 20.0, -0.05, 1.2, 7.0];
        let src = [[0.0, 0.0], [100.0, 10.0], [30.0, 80.0], [60.0, 60.0]];
        let dst = src.map(|p| apply(&m, p));
        let fit = fit_affine(&src, &dst).unwrap();
        for (a, b) in fit.iter().zip(m) {
            assert!((a - b).abs() < 1e-3, "{fit:?}");
        }
        assert!(fit_affine(&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], &[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]).is_none(), "collinear");
        assert!(plausible(&m));
        assert!(!plausible(&[-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), "a mirror");
        assert!(!plausible(&[3.0, 0.0, 0.0, 0.0, 1.0, 0.0]), "aspect change over 2x");
    }

    #[test]
    fn p_copy_rises_with_inliers() {
        let m = CopyModel::default();
        let ev = |n| CopyEvidence {
            inliers: n,
            matches: n,
            catalog_points: 150,
            map: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            mirrored: false,
            region: [0.0, 0.0, 1.0, 1.0],
            pairs: vec![],
        };
        assert!(m.p_copy(None, None) < 0.01);
        assert!(m.p_copy(Some(&ev(5)), Some(0.9)) < m.p_copy(Some(&ev(20)), Some(0.9)));
        assert!(m.p_copy(Some(&ev(40)), Some(0.8)) < m.p_copy(Some(&ev(40)), Some(0.99)), "pixels that agree make a copy likelier");
        assert!(m.p_copy(Some(&ev(75)), Some(0.99)) > 0.9);
        assert!(m.p_copy(Some(&ev(75)), None) < 0.5, "many matches alone are a second photo of the scene as often as a copy");
    }
}
