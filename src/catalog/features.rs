//! What the catalog stores per image besides its embedding, computed from
//! the decoded photo: a thumbnail and the copy-detection features.

/// A small JPEG (at most 256 px on a side) for display (and the copy check's pixel comparison).
pub fn thumbnail(rgb: &image::RgbImage, resizer: &mut fast_image_resize::Resizer) -> Vec<u8> {
    let (w, h) = rgb.dimensions();
    let scale = (256.0 / w.max(h) as f32).min(1.0);
    let (tw, th) = (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1));
    let small = crate::embed::resize_rgb(rgb, tw, th, resizer);
    // `jpeg-encoder` (SIMD): the image crate's encoder took a tenth of `knockoff index`.
    let mut out = Vec::new();
    let _ = jpeg_encoder::Encoder::new(&mut out, 80).encode(small.as_raw(), tw as u16, th as u16, jpeg_encoder::ColorType::Rgb);
    out
}

/// An image's stored copy-detection features (`embed::local`, catalog scale).
pub fn copy_features(rgb: &image::RgbImage, resizer: &mut fast_image_resize::Resizer) -> Vec<u8> {
    crate::embed::local::LocalFeatures::extract(rgb, &crate::embed::local::CATALOG, false, resizer).to_bytes()
}
