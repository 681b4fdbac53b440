//! Local features for copy detection: corners (FAST-9) with binary
//! descriptors (BRIEF, 256 intensity comparisons on a smoothed image), so that
//! a photo reused after cropping, padding, banners or a collage can be matched
//! part by part and verified geometrically (`search::copy`).
//!
//! A catalog image is described once, at one scale (longest side
//! [`CATALOG.max_side`](LocalParams), at most [`CATALOG.max_points`](LocalParams)
//! points), and stored in under 6 KB ([`LocalFeatures::to_bytes`]). A query is
//! described over a scale pyramid, so the copied picture can appear at any size
//! in it; each query point also gets the descriptor of its mirror image, so a
//! mirrored copy costs no second pass. Descriptors are upright: rotations up
//! to about 15° keep most bits, which covers the "slight tilt" edit.
//!
//! Nothing here is learned, and nothing is downloaded: it works with only the
//! committed model.

use std::sync::OnceLock;

use fast_image_resize::Resizer;
use image::RgbImage;

use super::preprocess::Resize;
use super::ResizeMode;

/// A query's features: [`QUERY`] on the whole photo, or, for a photo made of
/// content `regions`, each region on its own in a frame twice as fine.
pub fn describe_query(rgb: &RgbImage, regions: &[[u32; 4]], resizer: &mut Resizer) -> LocalFeatures {
    if regions.is_empty() {
        return LocalFeatures::extract(rgb, &QUERY, true, resizer);
    }
    let per_region = (2 * QUERY.max_points / regions.len()).max(300);
    // Enough pyramid levels that the largest region comes down to the catalog's
    // scale: a large photo copied inside a wide border is described from
    // 1024 px, and seven levels stop at 268, where a catalog image described at
    // 200 px no longer matches (5 of 21 found).
    let largest = regions.iter().map(|r| r[2].max(r[3])).max().unwrap_or(0).min(2 * QUERY.max_side);
    let down = (largest as f32 / (0.8 * CATALOG.max_side as f32)).max(1.0).ln() / QUERY.step.ln();
    let levels = (down.ceil() as usize + 1).clamp(QUERY.levels, 12);
    let frame = LocalParams { max_side: 2 * QUERY.max_side, max_points: per_region, levels, ..QUERY };
    LocalFeatures::extract_regions(rgb, regions, &frame, resizer)
}

/// Bytes in one descriptor (256 bits).
pub const DESCRIPTOR_BYTES: usize = 32;
/// A descriptor as four 64-bit words.
pub type Descriptor = [u64; 4];

/// How an image is described.
#[derive(Debug, Clone, Copy)]
pub struct LocalParams {
    /// The image is resized so that its longest side is this (never enlarged).
    pub max_side: u32,
    /// Pyramid levels (1 = the working scale only).
    pub levels: usize,
    /// Scale between pyramid levels.
    pub step: f32,
    /// Most points kept, over all levels.
    pub max_points: usize,
    /// FAST intensity threshold.
    pub threshold: i16,
}

impl LocalParams {
    /// The size a `w` × `h` image is described at: longest side `max_side`, never enlarged.
    #[must_use]
    pub fn working_size(&self, w: u32, h: u32) -> (u32, u32) {
        let scale = (self.max_side as f32 / w.max(h).max(1) as f32).min(1.0);
        (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1))
    }
}

/// Catalog images: one scale, few points (they are stored).
pub const CATALOG: LocalParams = LocalParams { max_side: 200, levels: 1, step: 1.25, max_points: 150, threshold: 12 };
/// Queries: a pyramid, more points (they are thrown away after the lookup).
pub const QUERY: LocalParams = LocalParams { max_side: 512, levels: 7, step: 1.25, max_points: 500, threshold: 12 };

/// The points and descriptors of one image, in the working scale's pixels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocalFeatures {
    /// Working-scale size (the coordinate frame of `points`).
    pub width: u16,
    pub height: u16,
    pub points: Vec<[f32; 2]>,
    pub descriptors: Vec<Descriptor>,
    /// Each point's descriptor in the horizontally mirrored image (queries only; empty for catalog images).
    pub mirrored: Vec<Descriptor>,
    /// The grey working-scale image, row by row (queries only): the
    /// photometric check compares it with the catalog image it seems to copy.
    pub pixels: Vec<u8>,
}

const FORMAT_VERSION: u8 = 1;

impl LocalFeatures {
    /// Describes `rgb` with `params`; `mirror` also computes mirrored descriptors.
    pub fn extract(rgb: &RgbImage, params: &LocalParams, mirror: bool, resizer: &mut Resizer) -> LocalFeatures {
        let (ww, wh) = params.working_size(rgb.width(), rgb.height());
        let small = Resize { width: ww, height: wh, mode: ResizeMode::Squash }.apply(rgb, resizer);
        let base = Gray::from_rgb(&small);
        let mut out = LocalFeatures { width: ww as u16, height: wh as u16, ..LocalFeatures::default() };
        if mirror {
            out.pixels.clone_from(&base.px);
        }
        let total_area: f32 = (0..params.levels).map(|l| params.step.powi(-2 * l as i32)).sum();
        let mut level = base;
        for l in 0..params.levels {
            if params.max_points == 0 || level.w < 2 * BORDER + 8 || level.h < 2 * BORDER + 8 {
                break;
            }
            let quota = ((params.max_points as f32) * params.step.powi(-2 * l as i32) / total_area).ceil() as usize;
            let (fx, fy) = (ww as f32 / level.w as f32, wh as f32 / level.h as f32);
            let smooth = level.box_blur();
            for (x, y) in select(&level, fast_corners(&level, params.threshold), quota) {
                out.points.push([x as f32 * fx, y as f32 * fy]);
                out.descriptors.push(describe(&smooth, x, y, false));
                if mirror {
                    out.mirrored.push(describe(&smooth, x, y, true));
                }
            }
            if l + 1 < params.levels {
                // Levels below the first sit on the catalog's scale grid (CATALOG.max_side × step^k),
                // so a query that is a catalog image at its own size meets it exactly.
                let side = level.w.max(level.h) as f32;
                let k = ((side / CATALOG.max_side as f32).ln() / params.step.ln()).ceil() - 1.0;
                let target = CATALOG.max_side as f32 * params.step.powf(k);
                level = level.downscale(if l == 0 && target < side { side / target } else { params.step }, resizer);
            }
        }
        out
    }

    /// Describes a photo made of several regions (a collage, a card): each
    /// region on its own with `params` (so each keeps a whole photo's points
    /// and scale), the points mapped into one frame — the whole photo at
    /// `params.max_side` — whose grey pixels are kept for the photometric check.
    pub fn extract_regions(rgb: &RgbImage, regions: &[[u32; 4]], params: &LocalParams, resizer: &mut Resizer) -> LocalFeatures {
        let whole = LocalParams { levels: 1, max_points: 0, ..*params };
        let mut out = LocalFeatures::extract(rgb, &whole, true, resizer);
        let (fx, fy) = (f32::from(out.width) / rgb.width() as f32, f32::from(out.height) / rgb.height() as f32);
        for &[x, y, w, h] in regions {
            let crop = image::imageops::crop_imm(rgb, x, y, w, h).to_image();
            let part = LocalFeatures::extract(&crop, params, true, resizer);
            let (sx, sy) = (w as f32 / f32::from(part.width.max(1)), h as f32 / f32::from(part.height.max(1)));
            out.points.extend(part.points.iter().map(|p| [(x as f32 + p[0] * sx) * fx, (y as f32 + p[1] * sy) * fy]));
            out.descriptors.extend(part.descriptors);
            out.mirrored.extend(part.mirrored);
        }
        out
    }

    /// The stored form: a version byte, width, height (u16 LE), the point
    /// count (u16), then per point x, y (u16 LE, in 1/16 pixel) and then the
    /// 32-byte descriptors. Mirrored descriptors and pixels are not stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.points.len().min(usize::from(u16::MAX));
        let mut out = Vec::with_capacity(7 + n * (4 + DESCRIPTOR_BYTES));
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&(n as u16).to_le_bytes());
        for p in &self.points[..n] {
            for c in p {
                out.extend_from_slice(&((c * 16.0).round().clamp(0.0, 65535.0) as u16).to_le_bytes());
            }
        }
        for d in &self.descriptors[..n] {
            for word in d {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)' format; `None` if it is not that.
    pub fn from_bytes(b: &[u8]) -> Option<LocalFeatures> {
        let u16_at = |i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
        if b.first() != Some(&FORMAT_VERSION) {
            return None;
        }
        let (width, height, n) = (u16_at(1)?, u16_at(3)?, usize::from(u16_at(5)?));
        if b.len() != 7 + n * (4 + DESCRIPTOR_BYTES) {
            return None;
        }
        let points =
            (0..n).map(|i| [f32::from(u16_at(7 + 4 * i).unwrap_or(0)) / 16.0, f32::from(u16_at(9 + 4 * i).unwrap_or(0)) / 16.0]).collect();
        let base = 7 + 4 * n;
        let descriptors = (0..n)
            .map(|i| {
                let mut d = [0u64; 4];
                for (k, word) in d.iter_mut().enumerate() {
                    let at = base + i * DESCRIPTOR_BYTES + 8 * k;
                    *word = u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
                }
                d
            })
            .collect();
        Some(LocalFeatures { width, height, points, descriptors, mirrored: Vec::new(), pixels: Vec::new() })
    }
}

/// Pixels kept clear of the border: the descriptor patch's radius plus the blur's.
const BORDER: usize = 16;

/// An 8-bit grey image.
struct Gray {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Gray {
    #[inline(never)]
    fn from_rgb(rgb: &RgbImage) -> Gray {
        let px = rgb.pixels().map(|p| ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8) as u8).collect();
        Gray { w: rgb.width() as usize, h: rgb.height() as usize, px }
    }

    /// 5×5 box blur (edges clamped), for the descriptor's comparisons.
    #[inline(never)]
    fn box_blur(&self) -> Gray {
        let (w, h) = (self.w, self.h);
        let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
        let mut tmp = vec![0u16; w * h];
        for y in 0..h {
            let row = &self.px[y * w..(y + 1) * w];
            let out = &mut tmp[y * w..(y + 1) * w];
            let mut sum: u16 = (-2..=2).map(|k| u16::from(row[clamp(k, w)])).sum();
            for (x, o) in out.iter_mut().enumerate() {
                *o = sum;
                sum = sum + u16::from(row[clamp(x as isize + 3, w)]) - u16::from(row[clamp(x as isize - 2, w)]);
            }
        }
        let mut px = vec![0u8; w * h];
        let mut sums: Vec<u32> = vec![0; w];
        for k in -2..=2 {
            let r = clamp(k, h) * w;
            for (s, v) in sums.iter_mut().zip(&tmp[r..r + w]) {
                *s += u32::from(*v);
            }
        }
        for y in 0..h {
            for (o, s) in px[y * w..(y + 1) * w].iter_mut().zip(&sums) {
                *o = ((s * 2622) >> 16) as u8; // s / 25
            }
            let (add, sub) = (clamp(y as isize + 3, h) * w, clamp(y as isize - 2, h) * w);
            for x in 0..w {
                sums[x] = sums[x] + u32::from(tmp[add + x]) - u32::from(tmp[sub + x]);
            }
        }
        Gray { w, h, px }
    }

    /// Antialiased (bilinear convolution) downscale by `step`, as the catalog's own resize.
    #[inline(never)]
    fn downscale(&self, step: f32, resizer: &mut Resizer) -> Gray {
        use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions};
        let (nw, nh) = (((self.w as f32 / step).round() as usize).max(1), ((self.h as f32 / step).round() as usize).max(1));
        let src = fast_image_resize::images::ImageRef::new(self.w as u32, self.h as u32, &self.px, PixelType::U8);
        let mut dst = Image::new(nw as u32, nh as u32, PixelType::U8);
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        match src.map(|src| resizer.resize(&src, &mut dst, &opts)) {
            Ok(Ok(())) => Gray { w: nw, h: nh, px: dst.into_vec() },
            _ => Gray { w: nw, h: nh, px: vec![0; nw * nh] },
        }
    }
}

/// The 16-pixel Bresenham circle of radius 3 used by FAST.
const CIRCLE: [(isize, isize); 16] = [
    (0, -3),
    (1, -3),
    (2, -2),
    (3, -1),
    (3, 0),
    (3, 1),
    (2, 2),
    (1, 3),
    (0, 3),
    (-1, 3),
    (-2, 2),
    (-3, 1),
    (-3, 0),
    (-3, -1),
    (-2, -2),
    (-1, -3),
];

/// Whether a 16-bit circular mask has 9 consecutive set bits.
fn has_arc9(mask: u32) -> bool {
    let m = mask | (mask << 16);
    let mut a = m;
    for k in 1..9 {
        a &= m >> k;
    }
    a & 0xFFFF != 0
}

/// FAST-9 corners with their scores, after 3×3 non-maximum suppression.
/// Row at a time: the 16 circle comparisons are made for the whole row into
/// bit masks (a loop the compiler vectorises), then the arc test runs on the masks.
#[inline(never)]
fn fast_corners(img: &Gray, t: i16) -> Vec<(usize, usize, u32)> {
    let (w, h) = (img.w, img.h);
    let t = t.clamp(1, 255) as u8;
    let px = &img.px;
    let mut score = vec![0u32; w * h];
    let mut found = Vec::new();
    let (x0, x1) = (BORDER, w - BORDER);
    let (mut hi, mut lo) = (vec![0u8; w], vec![0u8; w]);
    let (mut bm, mut dm) = (vec![0u16; w], vec![0u16; w]);
    for y in BORDER..h - BORDER {
        let centre = &px[y * w..(y + 1) * w];
        for x in x0..x1 {
            hi[x] = centre[x].saturating_add(t);
            lo[x] = centre[x].saturating_sub(t);
        }
        bm[x0..x1].fill(0);
        dm[x0..x1].fill(0);
        for (k, &(dx, dy)) in CIRCLE.iter().enumerate() {
            let start = ((y as isize + dy) * w as isize + dx) as usize;
            let ring = &px[start + x0..start + x1];
            let bits = bm[x0..x1].iter_mut().zip(dm[x0..x1].iter_mut());
            for ((b, d), ((&v, &h), &l)) in bits.zip(ring.iter().zip(&hi[x0..x1]).zip(&lo[x0..x1])) {
                *b |= u16::from(v > h) << k;
                *d |= u16::from(v < l) << k;
            }
        }
        for x in x0..x1 {
            let (b, d) = (u32::from(bm[x]), u32::from(dm[x]));
            if b == 0 && d == 0 {
                continue;
            }
            let c = i16::from(centre[x]);
            let ring = |k: usize| {
                let (dx, dy) = CIRCLE[k];
                i16::from(px[((y as isize + dy) * w as isize + x as isize + dx) as usize])
            };
            // Nine in a row need nine set bits: one popcount rules most pixels out.
            let s: u32 = if b.count_ones() >= 9 && has_arc9(b) {
                (0..16).map(|k| (ring(k) - c - i16::from(t)).max(0) as u32).sum()
            } else if d.count_ones() >= 9 && has_arc9(d) {
                (0..16).map(|k| (c - i16::from(t) - ring(k)).max(0) as u32).sum()
            } else {
                0
            };
            if s > 0 {
                score[y * w + x] = s;
                found.push((x, y));
            }
        }
    }
    found
        .into_iter()
        .filter_map(|(x, y)| {
            let s = score[y * w + x];
            let beaten = (y - 1..=y + 1).any(|yy| {
                (x - 1..=x + 1).any(|xx| (xx, yy) != (x, y) && (score[yy * w + xx] > s || (score[yy * w + xx] == s && (yy, xx) < (y, x))))
            });
            (!beaten).then_some((x, y, s))
        })
        .collect()
}

/// The strongest `quota` corners, spread over the image: at most a few per grid cell.
#[inline(never)]
fn select(img: &Gray, mut corners: Vec<(usize, usize, u32)>, quota: usize) -> Vec<(usize, usize)> {
    corners.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
    let cell = (img.w.max(img.h) / 12).max(8);
    let (cw, ch) = (img.w.div_ceil(cell), img.h.div_ceil(cell));
    let cap = (2 * quota).div_ceil(cw * ch).max(2);
    let mut used = vec![0usize; cw * ch];
    let mut out = Vec::with_capacity(quota);
    for (x, y, _) in corners {
        let c = (y / cell) * cw + x / cell;
        if used[c] < cap {
            used[c] += 1;
            out.push((x, y));
            if out.len() == quota {
                break;
            }
        }
    }
    out
}

/// The 256 comparison pairs (dx1, dy1, dx2, dy2), isotropic Gaussian around
/// the point (σ = patch / 5, clipped to the 31×31 patch), from a fixed seed.
fn pattern() -> &'static [[i8; 4]; 256] {
    static P: OnceLock<[[i8; 4]; 256]> = OnceLock::new();
    P.get_or_init(|| {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut gauss = || {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * 31.0 / 5.0).round().clamp(-13.0, 13.0) as i8
        };
        let mut p = [[0i8; 4]; 256];
        for pair in &mut p {
            *pair = [gauss(), gauss(), gauss(), gauss()];
        }
        p
    })
}

/// The descriptor of point (x, y); `mirror` flips the pattern left–right
/// (the descriptor the point would have in the mirrored image).
#[inline(never)]
fn describe(smooth: &Gray, x: usize, y: usize, mirror: bool) -> Descriptor {
    let sign: isize = if mirror { -1 } else { 1 };
    let w = smooth.w as isize;
    let centre = &smooth.px[(y - BORDER) * smooth.w + x - BORDER..(y + BORDER) * smooth.w + x + BORDER];
    let at = |dx: i8, dy: i8| centre[((BORDER as isize + isize::from(dy)) * w + BORDER as isize + sign * isize::from(dx)) as usize];
    let mut d = [0u64; 4];
    for (i, &[x1, y1, x2, y2]) in pattern().iter().enumerate() {
        d[i / 64] |= u64::from(at(x1, y1) < at(x2, y2)) << (i % 64);
    }
    d
}

/// Hamming distance between two descriptors.
#[inline(always)]
pub fn hamming(a: &Descriptor, b: &Descriptor) -> u32 {
    (a[0] ^ b[0]).count_ones() + (a[1] ^ b[1]).count_ones() + (a[2] ^ b[2]).count_ones() + (a[3] ^ b[3]).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = ((x / 7 * 31 + y / 5 * 17 + seed) % 97) as u8;
            let u = ((x * y / 13 + seed * 7) % 89) as u8;
            image::Rgb([v.wrapping_mul(2), u.wrapping_mul(2), v.wrapping_add(u)])
        })
    }

    #[test]
    fn arc_test_needs_nine_in_a_row_around_the_circle() {
        assert!(has_arc9(0b1_1111_1111));
        assert!(!has_arc9(0b1111_1111));
        assert!(has_arc9(0b1111_0000_0000_0001_1111 & 0xFFFF | 0xF000), "wraps around");
        assert!(!has_arc9(0b0101_0101_0101_0101));
    }

    #[test]
    fn features_round_trip_through_bytes_and_fit_the_budget() {
        let f = LocalFeatures::extract(&textured(400, 300, 3), &CATALOG, false, &mut Resizer::new());
        assert!(f.points.len() > 50, "{} points", f.points.len());
        assert!(f.points.len() <= CATALOG.max_points);
        let b = f.to_bytes();
        assert!(b.len() < 6 * 1024, "{} bytes", b.len());
        let back = LocalFeatures::from_bytes(&b).unwrap();
        assert_eq!(back.descriptors, f.descriptors);
        for (p, q) in back.points.iter().zip(&f.points) {
            assert!((p[0] - q[0]).abs() < 0.05 && (p[1] - q[1]).abs() < 0.05);
        }
        assert!(LocalFeatures::from_bytes(&b[..b.len() - 1]).is_none());
        assert!(LocalFeatures::from_bytes(&[]).is_none());
    }

    #[test]
    fn mirrored_descriptor_equals_the_descriptor_in_the_mirrored_image() {
        let img = textured(200, 160, 5);
        let flipped = image::imageops::flip_horizontal(&img);
        let (g, gf) = (Gray::from_rgb(&img).box_blur(), Gray::from_rgb(&flipped).box_blur());
        let (x, y) = (60, 70);
        assert_eq!(describe(&g, x, y, true), describe(&gf, 199 - x, y, false));
    }
}
