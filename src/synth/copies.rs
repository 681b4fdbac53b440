//! The edits counterfeit sellers make to a stolen photo, as a seeded
//! generator: the copy-detection protocol (`knockoff make-copies`,
//! [`crate::eval::protocol`]) and the tests build their copies with it. Each edit returns the edited image and
//! where the original's content lies in it (a 0–1 box), so region answers can
//! be checked.

use image::{imageops, Rgb, RgbImage};

use super::{bilinear, recompress};

/// Every edit the generator knows, in the order the protocol cycles through them.
pub const EDITS: [Edit; 17] = [
    Edit::Crop,
    Edit::Rescale,
    Edit::Jpeg,
    Edit::Mirror,
    Edit::Rotate,
    Edit::Colour,
    Edit::Greyscale,
    Edit::Banner,
    Edit::Sticker,
    Edit::Padding,
    Edit::Card,
    Edit::Collage,
    Edit::Blur,
    Edit::Aspect,
    Edit::CropPad,
    Edit::Border,
    Edit::Upscale,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edit {
    Crop,
    Rescale,
    Jpeg,
    Mirror,
    Rotate,
    Colour,
    Greyscale,
    Banner,
    Sticker,
    Padding,
    Card,
    Collage,
    Blur,
    Aspect,
    /// Cropped by 3–10 % a side, then padded by 10–40 px: the commonest reseller edit.
    CropPad,
    /// Inside a plain border 1–4 times the photo's side on each side.
    Border,
    /// Enlarged 3–6 times.
    Upscale,
}

impl Edit {
    pub fn name(self) -> &'static str {
        match self {
            Edit::Crop => "crop",
            Edit::Rescale => "rescale",
            Edit::Jpeg => "jpeg",
            Edit::Mirror => "mirror",
            Edit::Rotate => "rotate",
            Edit::Colour => "colour",
            Edit::Greyscale => "greyscale",
            Edit::Banner => "banner",
            Edit::Sticker => "sticker",
            Edit::Padding => "padding",
            Edit::Card => "card",
            Edit::Collage => "collage",
            Edit::Blur => "blur",
            Edit::Aspect => "aspect",
            Edit::CropPad => "crop+pad",
            Edit::Border => "border",
            Edit::Upscale => "upscale",
        }
    }
}

pub use crate::util::Rng;

/// An edited copy and where the original's content is in it (left, top, right, bottom, 0–1).
pub struct Edited {
    pub image: RgbImage,
    pub region: [f32; 4],
}

/// Applies `edit` to `src`; `others` are unrelated photos a collage may use.
pub fn apply(edit: Edit, src: &RgbImage, others: &[&RgbImage], rng: &mut Rng) -> Edited {
    let whole = [0.0, 0.0, 1.0, 1.0];
    let (w, h) = src.dimensions();
    match edit {
        Edit::Crop => {
            let (fw, fh) = (rng.range(0.6, 0.85), rng.range(0.6, 0.85));
            let (cw, ch) = (((w as f32) * fw) as u32, ((h as f32) * fh) as u32);
            let (x, y) = (rng.below((w - cw + 1) as usize) as u32, rng.below((h - ch + 1) as usize) as u32);
            let image = imageops::crop_imm(src, x, y, cw, ch).to_image();
            // The visible part of the original fills the whole frame.
            Edited { image, region: whole }
        }
        Edit::Rescale => {
            let f = rng.range(0.35, 0.7);
            Edited { image: resize(src, (w as f32 * f) as u32, (h as f32 * f) as u32), region: whole }
        }
        Edit::Jpeg => Edited { image: recompress(src, rng.range(15.0, 35.0) as u8), region: whole },
        Edit::Mirror => Edited { image: imageops::flip_horizontal(src), region: whole },
        Edit::Rotate => Edited { image: rotate(src, rng.range(3.0, 10.0) * if rng.below(2) == 0 { 1.0 } else { -1.0 }), region: whole },
        Edit::Colour => Edited { image: recolour(src, rng), region: whole },
        Edit::Greyscale => Edited { image: imageops::colorops::grayscale(src).convert(), region: whole },
        Edit::Banner => Edited { image: banner(src, rng), region: whole },
        Edit::Sticker => Edited { image: sticker(src, rng), region: whole },
        Edit::Padding => padding(src, rng),
        Edit::Card => card(src, rng),
        Edit::Collage => collage(src, others, rng),
        Edit::Blur => Edited { image: imageops::blur(src, rng.range(1.2, 2.2)), region: whole },
        Edit::CropPad => crop_pad(src, rng),
        Edit::Border => border(src, rng),
        Edit::Upscale => {
            let f = rng.range(3.0, 6.0);
            Edited { image: resize(src, (w as f32 * f) as u32, (h as f32 * f) as u32), region: whole }
        }
        Edit::Aspect => {
            let f = rng.range(1.25, 1.6);
            let image = if rng.below(2) == 0 { resize(src, (w as f32 * f) as u32, h) } else { resize(src, w, (h as f32 * f) as u32) };
            Edited { image, region: whole }
        }
    }
}

trait Convert {
    fn convert(self) -> RgbImage;
}
impl Convert for image::GrayImage {
    fn convert(self) -> RgbImage {
        image::DynamicImage::ImageLuma8(self).to_rgb8()
    }
}

fn resize(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    imageops::resize(src, w.max(1), h.max(1), imageops::FilterType::Triangle)
}

/// Rotation by `deg` degrees about the centre, the corners filled with a flat colour.
fn rotate(src: &RgbImage, deg: f32) -> RgbImage {
    let (w, h) = src.dimensions();
    let (s, c) = deg.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let (sx, sy) = (c * dx + s * dy + cx, -s * dx + c * dy + cy);
        if sx < 0.0 || sy < 0.0 || sx >= w as f32 - 1.0 || sy >= h as f32 - 1.0 {
            Rgb([240, 240, 240])
        } else {
            bilinear(src, sx, sy)
        }
    })
}

/// Hue rotation by channel mixing, with a brightness and contrast change.
fn recolour(src: &RgbImage, rng: &mut Rng) -> RgbImage {
    let shift = rng.range(0.15, 0.35);
    let (gain, bias) = (rng.range(0.8, 1.2), rng.range(-25.0, 25.0));
    let mut out = src.clone();
    for p in out.pixels_mut() {
        let [r, g, b] = p.0.map(f32::from);
        let mixed = [r * (1.0 - shift) + g * shift, g * (1.0 - shift) + b * shift, b * (1.0 - shift) + r * shift];
        p.0 = mixed.map(|v| (v * gain + bias).clamp(0.0, 255.0) as u8);
    }
    out
}

/// Blocky "text": a row of glyph-sized rectangles in `colour` inside the box.
fn text(img: &mut RgbImage, x0: u32, y0: u32, w: u32, h: u32, colour: Rgb<u8>, rng: &mut Rng) {
    let glyph = (h * 6 / 10).max(2);
    let mut x = x0;
    while x + glyph < x0 + w {
        let gw = (glyph as f32 * rng.range(0.4, 0.9)) as u32;
        if rng.below(6) != 0 {
            fill(img, x, y0 + (h - glyph) / 2, gw.max(1), glyph, colour);
        }
        x += gw + glyph / 3 + 1;
    }
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, colour);
        }
    }
}

/// A "SALE -70%" band across the top or bottom.
fn banner(src: &RgbImage, rng: &mut Rng) -> RgbImage {
    let mut out = src.clone();
    let (w, h) = src.dimensions();
    let bh = (h as f32 * rng.range(0.12, 0.2)) as u32;
    let y = if rng.below(2) == 0 { 0 } else { h - bh };
    fill(&mut out, 0, y, w, bh, Rgb([200, 20, 30]));
    text(&mut out, w / 10, y + bh / 6, w * 8 / 10, bh * 2 / 3, Rgb([255, 255, 255]), rng);
    out
}

/// A round price sticker somewhere on the photo.
fn sticker(src: &RgbImage, rng: &mut Rng) -> RgbImage {
    let mut out = src.clone();
    let (w, h) = src.dimensions();
    let r = (w.min(h) as f32 * rng.range(0.12, 0.2)) as i64;
    let (cx, cy) = (rng.range(r as f32, (i64::from(w) - r) as f32) as i64, rng.range(r as f32, (i64::from(h) - r) as f32) as i64);
    for y in (cy - r).max(0)..(cy + r).min(i64::from(h)) {
        for x in (cx - r).max(0)..(cx + r).min(i64::from(w)) {
            if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                out.put_pixel(x as u32, y as u32, Rgb([250, 210, 0]));
            }
        }
    }
    text(
        &mut out,
        (cx - r * 2 / 3).max(0) as u32,
        (cy - r / 4).max(0) as u32,
        (r * 4 / 3) as u32,
        (r / 2).max(2) as u32,
        Rgb([20, 20, 20]),
        rng,
    );
    out
}

/// Pastes `src` at (x, y) on `canvas`, returning its 0–1 box.
fn paste(canvas: &mut RgbImage, src: &RgbImage, x: u32, y: u32) -> [f32; 4] {
    imageops::replace(canvas, src, i64::from(x), i64::from(y));
    let (cw, ch) = (canvas.width() as f32, canvas.height() as f32);
    [x as f32 / cw, y as f32 / ch, ((x + src.width()) as f32 / cw).min(1.0), ((y + src.height()) as f32 / ch).min(1.0)]
}

/// A uniform border of 8–30 % on each side.
fn padding(src: &RgbImage, rng: &mut Rng) -> Edited {
    let (w, h) = src.dimensions();
    let colour = if rng.below(2) == 0 { Rgb([255, 255, 255]) } else { Rgb([15, 15, 15]) };
    let [l, t, r, b] = [(); 4].map(|()| rng.range(0.08, 0.3));
    let (pl, pt) = ((w as f32 * l) as u32, (h as f32 * t) as u32);
    let mut canvas = RgbImage::from_pixel(w + pl + (w as f32 * r) as u32, h + pt + (h as f32 * b) as u32, colour);
    let region = paste(&mut canvas, src, pl, pt);
    Edited { image: canvas, region }
}

/// Cropped by 3–10 % on each side, then padded by 10–40 px of white or light grey.
fn crop_pad(src: &RgbImage, rng: &mut Rng) -> Edited {
    let (w, h) = src.dimensions();
    let [l, t, r, b] = [(); 4].map(|()| rng.range(0.03, 0.1));
    let (x0, y0) = ((w as f32 * l) as u32, (h as f32 * t) as u32);
    let (cw, ch) = (w - x0 - (w as f32 * r) as u32, h - y0 - (h as f32 * b) as u32);
    let crop = imageops::crop_imm(src, x0, y0, cw, ch).to_image();
    let colour = if rng.below(2) == 0 { Rgb([255, 255, 255]) } else { Rgb([235, 235, 235]) };
    let [pl, pt, pr, pb] = [(); 4].map(|()| rng.range(10.0, 40.0) as u32);
    let mut canvas = RgbImage::from_pixel(cw + pl + pr, ch + pt + pb, colour);
    paste(&mut canvas, &crop, pl, pt);
    // Where the whole original lands (its cropped-off margins reach into the padding).
    let (fw, fh) = (canvas.width() as f32, canvas.height() as f32);
    let at = |v: f32, full: f32| (v / full).clamp(0.0, 1.0);
    let (ox, oy) = (pl as f32 - x0 as f32, pt as f32 - y0 as f32);
    let region = [at(ox, fw), at(oy, fh), at(ox + w as f32, fw), at(oy + h as f32, fh)];
    Edited { image: canvas, region }
}

/// The photo in the middle of a plain border 1–4 times its side on each side.
fn border(src: &RgbImage, rng: &mut Rng) -> Edited {
    let (w, h) = src.dimensions();
    let colour = if rng.below(2) == 0 { Rgb([255, 255, 255]) } else { Rgb([0, 0, 0]) };
    let side = (w.max(h) as f32 * rng.range(1.0, 4.0)) as u32;
    let mut canvas = RgbImage::from_pixel(w + 2 * side, h + 2 * side, colour);
    let region = paste(&mut canvas, src, side, side);
    Edited { image: canvas, region }
}

/// A marketplace listing card: the photo at 50–70 % on white, a title and a price.
fn card(src: &RgbImage, rng: &mut Rng) -> Edited {
    let (cw, ch) = (800u32, 1000u32);
    let mut canvas = RgbImage::from_pixel(cw, ch, Rgb([255, 255, 255]));
    let f = rng.range(0.5, 0.7);
    let scale = (cw as f32 * f / src.width() as f32).min(ch as f32 * 0.6 / src.height() as f32);
    let photo = resize(src, (src.width() as f32 * scale) as u32, (src.height() as f32 * scale) as u32);
    let x = (cw - photo.width()) / 2;
    let y = 60 + rng.below(40) as u32;
    let region = paste(&mut canvas, &photo, x, y);
    let below = y + photo.height() + 30;
    text(&mut canvas, 60, below, cw - 120, 40, Rgb([40, 40, 40]), rng);
    text(&mut canvas, 60, below + 60, cw / 2, 40, Rgb([90, 90, 90]), rng);
    fill(&mut canvas, 60, below + 130, 220, 70, Rgb([230, 60, 20]));
    text(&mut canvas, 80, below + 145, 180, 40, Rgb([255, 255, 255]), rng);
    Edited { image: canvas, region }
}

/// A 2×2 or 3×3 grid of photos, one of them the original.
fn collage(src: &RgbImage, others: &[&RgbImage], rng: &mut Rng) -> Edited {
    let n = if rng.below(3) == 0 { 3 } else { 2 };
    let tile = 960 / n;
    let mut canvas = RgbImage::from_pixel(tile * n, tile * n, Rgb([255, 255, 255]));
    let at = rng.below((n * n) as usize) as u32;
    let mut region = [0.0; 4];
    for i in 0..n * n {
        let img = if i == at || others.is_empty() { src } else { others[rng.below(others.len())] };
        let s = (tile - 8) as f32 / img.width().max(img.height()) as f32;
        let t = resize(img, (img.width() as f32 * s) as u32, (img.height() as f32 * s) as u32);
        let (x, y) = ((i % n) * tile + (tile - t.width()) / 2, (i / n) * tile + (tile - t.height()) / 2);
        let r = paste(&mut canvas, &t, x, y);
        if i == at {
            region = r;
        }
    }
    Edited { image: canvas, region }
}
