//! A picture a person can check: the listing photo and the catalog image it
//! copies side by side, the copied region boxed on the photo and the matched
//! points joined by lines (`POST /v1/lookup?explain=true`, the web page,
//! a case's evidence pack).

use image::{imageops, Rgb, RgbImage};

use super::CopyMatch;
use crate::catalog::{Catalog, CatalogError};

/// What can go wrong drawing an explanation.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("drawing the explanation: {0}")]
    Draw(#[from] image::ImageError),
}

/// The explanation picture (PNG) of `copy` for the (decoded) photo, beside
/// the copied catalog image's stored thumbnail (`None`: the image has none).
pub fn picture(catalog: &Catalog, photo: &RgbImage, copy: &CopyMatch) -> Result<Option<Vec<u8>>, ExplainError> {
    let Some(thumb) = catalog.records().thumbnail(copy.image_id)? else { return Ok(None) };
    let reference = image::load_from_memory(&thumb)?.to_rgb8();
    Ok(Some(explain_png(photo, &reference, copy)?))
}

/// Height of both panels, in pixels.
const HEIGHT: u32 = 320;
/// At most this many matched points are drawn.
const MAX_LINES: usize = 60;

/// The side-by-side explanation as a PNG: `query` (the photo) on the left,
/// `catalog` (the copied image, e.g. its thumbnail) on the right.
pub fn explain_png(query: &RgbImage, catalog: &RgbImage, copy: &CopyMatch) -> Result<Vec<u8>, image::ImageError> {
    let fit = |img: &RgbImage| {
        let s = HEIGHT as f32 / img.height().max(1) as f32;
        let w = ((img.width() as f32 * s).round() as u32).clamp(1, 2 * HEIGHT);
        imageops::resize(img, w, HEIGHT, imageops::FilterType::Triangle)
    };
    let (q, c) = (fit(query), fit(catalog));
    let gap = 16;
    let mut canvas = RgbImage::from_pixel(q.width() + gap + c.width(), HEIGHT, Rgb([255, 255, 255]));
    imageops::replace(&mut canvas, &q, 0, 0);
    imageops::replace(&mut canvas, &c, i64::from(q.width() + gap), 0);
    let (qw, cw, h) = (q.width() as f32, c.width() as f32, HEIGHT as f32);
    let r = copy.region;
    let red = Rgb([230, 30, 40]);
    for k in 0..3 {
        let k = k as f32;
        let (l, t, rr, b) = (r.left * qw + k, r.top * h + k, r.right * qw - 1.0 - k, r.bottom * h - 1.0 - k);
        line(&mut canvas, (l, t), (rr, t), red);
        line(&mut canvas, (rr, t), (rr, b), red);
        line(&mut canvas, (rr, b), (l, b), red);
        line(&mut canvas, (l, b), (l, t), red);
    }
    let step = copy.pairs.len().div_ceil(MAX_LINES).max(1);
    for (pq, pc) in copy.pairs.iter().step_by(step) {
        let a = (pq[0] * qw, pq[1] * h);
        let b = (qw + gap as f32 + pc[0] * cw, pc[1] * h);
        line(&mut canvas, a, b, Rgb([20, 200, 60]));
    }
    let mut out = std::io::Cursor::new(Vec::new());
    canvas.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// A one-pixel line, clipped to the canvas.
fn line(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), colour: Rgb<u8>) {
    let n = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
    for i in 0..=n {
        let t = i as f32 / n as f32;
        let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, colour);
        }
    }
}
