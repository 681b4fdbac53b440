//! What a listing photo does to a catalog packshot: part of it cut out,
//! seen at a slant, scaled into a scene cluttered with other catalog images,
//! tilted, most of the time partly hidden behind another one, re-lit,
//! blurred, downscaled and re-compressed. The fitting's synthetic views
//! ([`crate::fit::views`]) are made of it.

use image::{imageops, Rgba, RgbaImage};

use super::{bilinear, recompress};
use crate::util::Rng;

/// One made-up listing photo of `src`, in a scene of `clutter` (other catalog
/// images): behind it, other images cut into a 3 × 3 grid and laid out again
/// ([`rearranged`]) — the catalog's colours and textures but no catalog
/// product, so a view's one product is `src` (a whole other product behind
/// it made the view a photo of two, and its "wrong" answers taught the mapping
/// to distrust margins real listings have); in front, over one side of it,
/// most of the time, part of another product.
pub fn synthetic_view(src: &RgbaImage, clutter: &[&RgbaImage], rng: &mut Rng) -> image::RgbImage {
    let side = [256u32, 320, 384][rng.below(3)];
    let backdrop = Rgba([rng.range(40.0, 220.0) as u8, rng.range(40.0, 220.0) as u8, rng.range(40.0, 220.0) as u8, 255]);
    let mut canvas = RgbaImage::from_pixel(side, side, backdrop);
    for _ in 0..2 + rng.below(4) {
        if clutter.is_empty() {
            break;
        }
        let other = rearranged(clutter[rng.below(clutter.len())], rng);
        let scaled = scale_to(&other, rng.range(0.4, 1.0) * side as f32);
        let (x, y) = (place(rng, side, scaled.width(), 0.5), place(rng, side, scaled.height(), 0.5));
        imageops::overlay(&mut canvas, &scaled, x, y);
    }
    let (w, h) = src.dimensions();
    let area = rng.range(0.5, 1.0).sqrt();
    let (cw, ch) = (cut(w, area * rng.range(0.85, 1.15)), cut(h, area * rng.range(0.85, 1.15)));
    let (cx, cy) = (rng.below((w - cw + 1) as usize) as u32, rng.below((h - ch + 1) as usize) as u32);
    let part = imageops::crop_imm(src, cx, cy, cw, ch).to_image();
    let part = perspective(&scale_to(&part, rng.range(0.45, 0.95) * side as f32), rng);
    let part = rotate_expand(&part, rng.range(-15.0, 15.0));
    let (x, y) = (place(rng, side, part.width(), 0.15), place(rng, side, part.height(), 0.15));
    imageops::overlay(&mut canvas, &part, x, y);
    // Something in front, over one side of the product, most of the time.
    if !clutter.is_empty() && rng.below(10) < 7 {
        let other = scale_to(clutter[rng.below(clutter.len())], rng.range(0.3, 0.6) * side as f32);
        let (ow, oh) = (i64::from(other.width()), i64::from(other.height()));
        let ox = x + if rng.below(2) == 0 { -ow / 2 } else { i64::from(part.width()) - ow / 2 };
        let oy = y + rng.below((i64::from(part.height()) - oh).max(1) as usize) as i64;
        imageops::overlay(&mut canvas, &other, ox, oy);
    }
    let mut photo = image::DynamicImage::ImageRgba8(canvas).to_rgb8();
    relight(&mut photo, rng);
    if rng.below(2) == 0 {
        photo = imageops::blur(&photo, rng.range(0.5, 2.0));
    }
    if rng.below(2) == 0 {
        let f = rng.range(0.3, 0.7);
        let small = imageops::resize(&photo, cut(side, f), cut(side, f), imageops::FilterType::Triangle);
        photo = imageops::resize(&small, side, side, imageops::FilterType::Triangle);
    }
    recompress(&photo, rng.range(40.0, 85.0) as u8)
}

/// `img` cut into a 3 × 3 grid whose tiles are laid out again with none in
/// its place: the same colours and textures, no longer the same thing.
fn rearranged(img: &RgbaImage, rng: &mut Rng) -> RgbaImage {
    let (tw, th) = ((img.width() / 3).max(1), (img.height() / 3).max(1));
    let order = loop {
        let mut o: [u32; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
        for i in (1..9).rev() {
            o.swap(i, rng.below(i + 1));
        }
        if o.iter().zip(0..).all(|(t, i)| *t != i) {
            break o;
        }
    };
    let mut out = RgbaImage::new(3 * tw, 3 * th);
    for (to, from) in (0u32..).zip(order) {
        let tile = imageops::crop_imm(img, (from % 3) * tw, (from / 3) * th, tw, th).to_image();
        imageops::replace(&mut out, &tile, i64::from((to % 3) * tw), i64::from((to / 3) * th));
    }
    out
}

/// `n · f` rounded, at least 1 and at most `n`.
fn cut(n: u32, f: f32) -> u32 {
    ((n as f32 * f.min(1.0)) as u32).clamp(1, n.max(1))
}

/// A position on a `side`-long canvas for something `len` long that may
/// stick out by up to `out` of its length on either side.
fn place(rng: &mut Rng, side: u32, len: u32, out: f32) -> i64 {
    let lo = -(len as f32 * out);
    let hi = (side as f32 - len as f32 * (1.0 - out)).max(lo);
    rng.range(lo, hi + 1.0) as i64
}

/// `img` scaled so that its longer side is `longest` pixels.
fn scale_to(img: &RgbaImage, longest: f32) -> RgbaImage {
    let s = longest / img.width().max(img.height()).max(1) as f32;
    let (w, h) = (((img.width() as f32 * s) as u32).max(1), ((img.height() as f32 * s) as u32).max(1));
    imageops::resize(img, w, h, imageops::FilterType::Triangle)
}

/// `img` seen at a slant: its corners each pulled in by up to 18 % of its
/// width and height, the rest transparent (a homography, sampled bilinearly).
fn perspective(img: &RgbaImage, rng: &mut Rng) -> RgbaImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let mut pull = |len: f32| f64::from(rng.range(0.0, 0.18) * len);
    let (w64, h64) = (f64::from(w), f64::from(h));
    let quad = [(pull(w), pull(h)), (w64 - pull(w), pull(h)), (w64 - pull(w), h64 - pull(h)), (pull(w), h64 - pull(h))];
    let corners = [(0.0, 0.0), (w64, 0.0), (w64, h64), (0.0, h64)];
    // The homography taking each point of the quad to the source pixel it shows.
    let (mut a, mut b) = ([[0.0f64; 8]; 8], [0.0f64; 8]);
    for (k, ((x, y), (u, v))) in quad.iter().zip(corners).enumerate() {
        a[2 * k] = [*x, *y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y];
        a[2 * k + 1] = [0.0, 0.0, 0.0, *x, *y, 1.0, -v * x, -v * y];
        (b[2 * k], b[2 * k + 1]) = (u, v);
    }
    let Some(m) = crate::util::solve(a, b, 1e-9) else { return img.clone() };
    RgbaImage::from_fn(img.width(), img.height(), |x, y| {
        let (x, y) = (f64::from(x), f64::from(y));
        let d = m[6] * x + m[7] * y + 1.0;
        let (sx, sy) = (((m[0] * x + m[1] * y + m[2]) / d) as f32, ((m[3] * x + m[4] * y + m[5]) / d) as f32);
        if !(0.0..=w - 1.0).contains(&sx) || !(0.0..=h - 1.0).contains(&sy) {
            return Rgba([0, 0, 0, 0]);
        }
        bilinear(img, sx, sy)
    })
}

/// Rotation by `deg` degrees on a canvas grown to hold it, transparent around it.
fn rotate_expand(src: &RgbaImage, deg: f32) -> RgbaImage {
    let (w, h) = (src.width() as f32, src.height() as f32);
    let (s, c) = deg.to_radians().sin_cos();
    let (nw, nh) = ((w * c.abs() + h * s.abs()).ceil(), (w * s.abs() + h * c.abs()).ceil());
    RgbaImage::from_fn(nw as u32, nh as u32, |x, y| {
        let (dx, dy) = (x as f32 - nw / 2.0, y as f32 - nh / 2.0);
        let (sx, sy) = (c * dx + s * dy + w / 2.0, -s * dx + c * dy + h / 2.0);
        if sx < 0.0 || sy < 0.0 || sx > w - 1.0 || sy > h - 1.0 {
            return Rgba([0, 0, 0, 0]);
        }
        bilinear(src, sx, sy)
    })
}

/// Brightness, contrast (about the mean grey) and saturation changes, as a phone and a shop's light make.
fn relight(img: &mut image::RgbImage, rng: &mut Rng) {
    let (bright, contrast, colour) = (rng.range(0.6, 1.3), rng.range(0.7, 1.3), rng.range(0.6, 1.3));
    let grey = |p: &[u8; 3]| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
    let mean = img.pixels().map(|p| grey(&p.0)).sum::<f32>() / (img.width() * img.height()).max(1) as f32;
    for p in img.pixels_mut() {
        let g = grey(&p.0);
        p.0 = p.0.map(|v| {
            let v = (g + (f32::from(v) - g) * colour) * bright;
            (mean * bright + (v - mean * bright) * contrast).clamp(0.0, 255.0) as u8
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_listing_sized_photos_that_differ_from_their_source() {
        let src = RgbaImage::from_fn(200, 120, |x, y| Rgba([(x % 256) as u8, (y * 2 % 256) as u8, 90, 255]));
        let other = RgbaImage::from_pixel(150, 150, Rgba([10, 200, 30, 255]));
        let mut rng = Rng::new(7);
        let views: Vec<image::RgbImage> = (0..6).map(|_| synthetic_view(&src, &[&other], &mut rng)).collect();
        for v in &views {
            assert_eq!(v.width(), v.height());
            assert!([256, 320, 384].contains(&v.width()));
        }
        assert_ne!(views[0], views[1], "views are random");
        let again: Vec<image::RgbImage> = {
            let mut rng = Rng::new(7);
            (0..6).map(|_| synthetic_view(&src, &[&other], &mut rng)).collect()
        };
        assert_eq!(views, again, "the same seed gives the same views");
        // A 1×1 thumbnail and no clutter still give a photo.
        let tiny = RgbaImage::from_pixel(1, 1, Rgba([255, 0, 0, 255]));
        assert!(synthetic_view(&tiny, &[], &mut rng).width() >= 256);
    }

    #[test]
    fn a_slanted_view_keeps_the_middle_and_clears_the_corners_it_pulls_in() {
        let src = RgbaImage::from_fn(100, 80, |x, y| Rgba([x as u8, y as u8, 200, 255]));
        let mut rng = Rng::new(11);
        for _ in 0..20 {
            let out = perspective(&src, &mut rng);
            assert_eq!(out.dimensions(), src.dimensions());
            // The middle still shows the image (about where it was), the corners only when not pulled in.
            let mid = out.get_pixel(50, 40);
            assert_eq!(mid[3], 255);
            assert!((i32::from(mid[0]) - 50).abs() <= 20 && (i32::from(mid[1]) - 40).abs() <= 16, "{mid:?}");
        }
        let corners_cleared = (0..20).filter(|_| perspective(&src, &mut rng).get_pixel(0, 0)[3] == 0).count();
        assert!(corners_cleared >= 15, "{corners_cleared}");
    }

    #[test]
    fn clutter_is_rearranged_with_no_tile_in_its_place() {
        // Each 3 × 3 tile of a 90 × 60 image is one flat colour: its index.
        let img = RgbaImage::from_fn(90, 60, |x, y| Rgba([(x / 30 + 3 * (y / 20)) as u8, 0, 0, 255]));
        for seed in 0..20 {
            let out = rearranged(&img, &mut Rng::new(seed));
            assert_eq!(out.dimensions(), (90, 60));
            let tiles: Vec<u8> = (0..9).map(|t| out.get_pixel((t % 3) * 30 + 15, (t / 3) * 20 + 10).0[0]).collect();
            let mut sorted = tiles.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..9).collect::<Vec<u8>>(), "every tile once: {tiles:?}");
            assert!(tiles.iter().zip(0..).all(|(t, i)| *t != i), "none in its place: {tiles:?}");
        }
    }
}
