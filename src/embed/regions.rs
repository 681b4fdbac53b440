//! Content regions of a listing photo: a collage's tiles, or the photo on a
//! listing card or inside a plain border. Each region is embedded on its own
//! too, so that the catalog image a region copies is among the candidates the
//! copy check verifies even when the whole picture looks like something else.

use image::RgbImage;

/// A region in pixels: left, top, width, height.
pub type PixelRect = [u32; 4];

/// Longest side of the grey thumbnail the regions are found on.
const SIDE: u32 = 400;
/// A row or column whose grey values vary less than this (standard deviation) is a gutter.
const FLAT: f32 = 6.0;
/// Regions thinner than this share of the side are ignored (text lines, rules).
const MIN_SHARE: f32 = 0.15;
/// The smallest picture (thumbnail pixels a side) trimmed out of a plain border.
const MIN_TRIMMED: u32 = 12;
/// At most this many regions.
pub const MAX_REGIONS: usize = 9;

/// The content regions between plain gutters and borders, largest first;
/// empty when the photo is one region filling (nearly) the whole frame.
pub fn content_regions(rgb: &RgbImage, resizer: &mut fast_image_resize::Resizer) -> Vec<PixelRect> {
    let (w, h) = rgb.dimensions();
    if w < 32 || h < 32 {
        return Vec::new();
    }
    let s = (SIDE as f32 / w.max(h) as f32).min(1.0);
    let (sw, sh) = (((w as f32 * s) as u32).max(1), ((h as f32 * s) as u32).max(1));
    let small;
    let src = if (sw, sh) == (w, h) {
        rgb
    } else {
        small = super::resize_rgb(rgb, sw, sh, resizer);
        &small
    };
    // Grey values once: every row and column below reads them.
    let grey: Vec<f32> = src.pixels().map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])).collect();
    let px = |x: u32, y: u32| grey[(y * sw + x) as usize];
    let mut cells = Vec::new();
    for (y0, y1) in runs(sh, MIN_SHARE, |y| flat((0..sw).map(|x| px(x, y)), FLAT)) {
        // Each column's sums over the band, row by row (the order `flat` adds in).
        let (mut sum, mut sq) = (vec![0f32; sw as usize], vec![0f32; sw as usize]);
        for y in y0..y1 {
            let row = &grey[(y * sw) as usize..((y + 1) * sw) as usize];
            for ((s, q), v) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                (*s, *q) = (*s + v, *q + v * v);
            }
        }
        let n = (y1 - y0) as f32;
        let column_flat = |x: u32| spread_below(n, sum[x as usize], sq[x as usize], FLAT);
        for (x0, x1) in runs(sw, MIN_SHARE, column_flat) {
            cells.push([x0, y0, x1 - x0, y1 - y0]);
        }
    }
    if cells.is_empty() {
        // One picture too small for a region of its own inside a wide plain
        // border (a 348 px photo in 1400 px of white): the border trimmed off.
        cells.extend(inside_plain_margins(sw, sh, FLAT, px).filter(|c| c[2] >= MIN_TRIMMED && c[3] >= MIN_TRIMMED));
    }
    let area = |c: &PixelRect| c[2] * c[3];
    cells.sort_by_key(|c| std::cmp::Reverse(area(c)));
    cells.truncate(MAX_REGIONS);
    if cells.is_empty() || (cells.len() == 1 && area(&cells[0]) as f32 > 0.8 * (sw * sh) as f32) {
        return Vec::new();
    }
    let back = |v: u32, full: u32, small: u32| (v as f32 * full as f32 / small as f32).round() as u32;
    cells
        .into_iter()
        .map(|[x, y, cw, ch]| {
            let (l, t) = (back(x, w, sw), back(y, h, sh));
            [l, t, back(cw, w, sw).min(w - l).max(1), back(ch, h, sh).min(h - t).max(1)]
        })
        .collect()
}

/// Whether `vals` vary less than `max_std` (standard deviation); no values are not flat.
fn flat(vals: impl Iterator<Item = f32>, max_std: f32) -> bool {
    let (mut n, mut sum, mut sq) = (0f32, 0f32, 0f32);
    for v in vals {
        (n, sum, sq) = (n + 1.0, sum + v, sq + v * v);
    }
    spread_below(n, sum, sq, max_std)
}

/// Whether `n` values with this sum and sum of squares have a standard deviation under `max_std` (none: no).
fn spread_below(n: f32, sum: f32, sq: f32, max_std: f32) -> bool {
    n > 0.0 && (sq / n - (sum / n).powi(2)).max(0.0).sqrt() < max_std
}

/// What lies inside an image's plain margins (left, top, width, height): from
/// the first to the last row whose values `at(x, y)` vary by `max_std` or more,
/// then likewise the columns within those rows. `None` when every row is plain.
pub fn inside_plain_margins(w: u32, h: u32, max_std: f32, at: impl Fn(u32, u32) -> f32) -> Option<PixelRect> {
    let row = |y: u32| !flat((0..w).map(|x| at(x, y)), max_std);
    let (top, bottom) = ((0..h).find(|&y| row(y))?, (0..h).rev().find(|&y| row(y))?);
    let col = |x: u32| !flat((top..=bottom).map(|y| at(x, y)), max_std);
    let (left, right) = ((0..w).find(|&x| col(x))?, (0..w).rev().find(|&x| col(x))?);
    Some([left, top, right - left + 1, bottom - top + 1])
}

/// Runs of positions in 0..n that are not flat, at least `min_share` of n long.
fn runs(n: u32, min_share: f32, is_flat: impl Fn(u32) -> bool) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut start = None;
    for i in 0..=n {
        let content = i < n && !is_flat(i);
        match (content, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if (i - s) as f32 >= min_share * n as f32 {
                    out.push((s, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x * y) % 256) as u8]))
    }

    #[test]
    fn a_full_frame_photo_is_one_region_and_a_grid_splits() {
        let mut r = fast_image_resize::Resizer::new();
        assert!(content_regions(&busy(400, 300), &mut r).is_empty());
        let mut grid = RgbImage::from_pixel(800, 800, image::Rgb([255, 255, 255]));
        for (x, y) in [(10, 10), (410, 10), (10, 410), (410, 410)] {
            image::imageops::replace(&mut grid, &busy(380, 380), x, y);
        }
        let r = content_regions(&grid, &mut r);
        assert_eq!(r.len(), 4, "{r:?}");
        for [x, y, w, h] in r {
            assert!((370..=400).contains(&w) && (370..=400).contains(&h), "{x} {y} {w} {h}");
        }
    }

    #[test]
    fn a_small_picture_in_a_wide_plain_border_is_trimmed_out() {
        let mut r = fast_image_resize::Resizer::new();
        // 348 px inside 1400 px of white a side: 11 % of the frame, under MIN_SHARE.
        let mut framed = RgbImage::from_pixel(3148, 3148, image::Rgb([255, 255, 255]));
        image::imageops::replace(&mut framed, &busy(348, 348), 1400, 1400);
        let regions = content_regions(&framed, &mut r);
        assert_eq!(regions.len(), 1, "{regions:?}");
        let [x, y, w, h] = regions[0];
        assert!(x.abs_diff(1400) <= 16 && y.abs_diff(1400) <= 16 && w.abs_diff(348) <= 24 && h.abs_diff(348) <= 24, "{regions:?}");
        // A plain image has nothing to trim out.
        assert!(content_regions(&RgbImage::from_pixel(500, 500, image::Rgb([9, 9, 9])), &mut r).is_empty());
    }
}
