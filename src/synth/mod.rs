//! Synthetic photos, made from real ones by seeded edits: what a listing
//! photo does to a catalog packshot ([`listing`], the fitting's synthetic
//! views) and what counterfeit sellers do to a stolen photo ([`copies`], the
//! copy-detection protocol and tests). The pixel operations they share are
//! here. Used by fitting and by evaluation alike; depends on nothing above it.

pub mod copies;
pub mod listing;

/// The pixel of `src` at (`x`, `y`), interpolated bilinearly between its four
/// neighbours (edges repeated); `x`, `y` within the image.
pub fn bilinear<P: image::Pixel<Subpixel = u8>>(src: &image::ImageBuffer<P, Vec<u8>>, x: f32, y: f32) -> P {
    let (x0, y0) = ((x as u32).min(src.width() - 1), (y as u32).min(src.height() - 1));
    let (x1, y1) = ((x0 + 1).min(src.width() - 1), (y0 + 1).min(src.height() - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |xx: u32, yy: u32, k: usize| f32::from(src.get_pixel(xx, yy).channels()[k]);
    let mut out = [0u8; 4];
    let n = usize::from(P::CHANNEL_COUNT);
    for (k, o) in out.iter_mut().enumerate().take(n) {
        let top = p(x0, y0, k) * (1.0 - fx) + p(x1, y0, k) * fx;
        let bottom = p(x0, y1, k) * (1.0 - fx) + p(x1, y1, k) * fx;
        *o = (top * (1.0 - fy) + bottom * fy).round() as u8;
    }
    *P::from_slice(&out[..n])
}

/// `img` after a JPEG round trip at `quality` (unchanged if encoding fails).
pub fn recompress(img: &image::RgbImage, quality: u8) -> image::RgbImage {
    let mut buf = Vec::new();
    if image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality).encode_image(img).is_err() {
        return img.clone();
    }
    image::load_from_memory(&buf).map_or_else(|_| img.clone(), |i| i.to_rgb8())
}
