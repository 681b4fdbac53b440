//! Bytes → RGB pixels, with a pixel limit and a side limit checked from the
//! header before any pixel is decoded (and the decoder's own allocations capped), EXIF orientation applied, alpha flattened onto white,
//! and grey / CMYK / 16-bit images converted to 8-bit RGB.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use super::EmbedError;

/// Formats knockoff decodes. Anything else is rejected as unsupported.
pub const SUPPORTED_FORMATS: &[ImageFormat] =
    &[ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::Tiff];

/// Default maximum number of pixels of an input image (40 MP).
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// Default longest side of an input image, in pixels. Resizing to the model's
/// input keeps an intermediate of (longest side × model side) pixels, so the
/// side, not only the pixel count, bounds memory: a 40,000,000 × 1 image has
/// few pixels but would need 27 GB there.
pub const DEFAULT_MAX_SIDE: u32 = 16_384;

/// What an input image may be, checked from its header before any pixel is decoded.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Width × height above which an image is refused.
    pub max_pixels: u64,
    /// Width or height above which an image is refused.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_pixels: DEFAULT_MAX_PIXELS, max_side: DEFAULT_MAX_SIDE }
    }
}

/// A decoded, upright, 8-bit RGB image.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub rgb: RgbImage,
    pub format: ImageFormat,
}

impl DecodedImage {
    pub fn width(&self) -> u32 {
        self.rgb.width()
    }
    pub fn height(&self) -> u32 {
        self.rgb.height()
    }
}

/// Decodes `bytes`; `source_name` names the image in errors.
pub fn decode_image(bytes: &[u8], source_name: &str, limits: DecodeLimits) -> Result<DecodedImage, EmbedError> {
    let name = || source_name.to_string();
    if bytes.is_empty() {
        return Err(EmbedError::Empty { source_name: name() });
    }
    let Ok(format) = image::guess_format(bytes) else {
        // ISO-BMFF containers (HEIC, AVIF) are images we do not decode.
        if bytes.len() > 12 && &bytes[4..8] == b"ftyp" {
            let brand = String::from_utf8_lossy(&bytes[8..12]).to_string();
            return Err(EmbedError::UnsupportedFormat { source_name: name(), format: format!("HEIF/AVIF ({brand})") });
        }
        return Err(EmbedError::NotAnImage { source_name: name() });
    };
    if !SUPPORTED_FORMATS.contains(&format) {
        return Err(EmbedError::UnsupportedFormat { source_name: name(), format: format!("{format:?}") });
    }

    let reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder = reader.into_decoder().map_err(|e| classify(&e, source_name))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(EmbedError::TooLarge { source_name: name(), width, height, pixels, limit: limits.max_pixels });
    }
    if width.max(height) > limits.max_side {
        return Err(EmbedError::TooLong { source_name: name(), width, height, limit: limits.max_side });
    }
    if pixels == 0 {
        return Err(EmbedError::Corrupt { source_name: name(), detail: "image has zero width or height".into() });
    }
    // Belt and braces against formats whose header lies: cap the decoder's allocations.
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(width);
    lim.max_image_height = Some(height);
    lim.max_alloc = Some(pixels.saturating_mul(16).saturating_add(64 << 20));
    decoder.set_limits(lim).map_err(|e| classify(&e, source_name))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);

    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| classify(&e, source_name))?;
    if format == ImageFormat::Jpeg && !jpeg_has_eoi(bytes) {
        return Err(EmbedError::Truncated { source_name: name(), detail: "JPEG end-of-image marker missing".into() });
    }
    img.apply_orientation(orientation);
    Ok(DecodedImage { rgb: to_rgb_on_white(img), format })
}

/// A complete JPEG ends with the EOI marker (FF D9), possibly followed by padding.
fn jpeg_has_eoi(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    let trimmed = match tail.iter().rposition(|b| *b != 0 && *b != b'\n' && *b != b'\r') {
        Some(i) => &tail[..=i],
        None => return false,
    };
    trimmed.windows(2).rev().take(1024).any(|w| w == [0xFF, 0xD9])
}

fn classify(e: &image::ImageError, source_name: &str) -> EmbedError {
    let source_name = source_name.to_string();
    let detail = e.to_string();
    let lower = detail.to_ascii_lowercase();
    match e {
        image::ImageError::Unsupported(_) => {
            return EmbedError::UnsupportedFormat { source_name, format: detail };
        }
        image::ImageError::Limits(_) => {
            return EmbedError::Corrupt { source_name, detail: format!("decoder limit exceeded: {detail}") };
        }
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            return EmbedError::Truncated { source_name, detail };
        }
        _ => {}
    }
    let truncated = ["eof", "end of file", "unexpected end", "truncat", "not enough data", "no more data", "insufficient"];
    if truncated.iter().any(|t| lower.contains(t)) {
        EmbedError::Truncated { source_name, detail }
    } else {
        EmbedError::Corrupt { source_name, detail }
    }
}

/// 8-bit RGB; transparent pixels are composited onto white.
fn to_rgb_on_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in rgba.pixels() {
        let [r, g, b, a] = px.0;
        let a = u32::from(a);
        for c in [r, g, b] {
            out.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    RgbImage::from_raw(w, h, out).expect("buffer has w*h*3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_is_flattened_onto_white() {
        let mut img = image::RgbaImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgba([0, 0, 0, 0]));
        img.put_pixel(1, 0, image::Rgba([0, 0, 0, 255]));
        let rgb = to_rgb_on_white(DynamicImage::ImageRgba8(img));
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [0, 0, 0]);
    }

    #[test]
    fn eoi_detection() {
        assert!(jpeg_has_eoi(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9]));
        assert!(jpeg_has_eoi(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9, 0, 0]));
        assert!(!jpeg_has_eoi(&[0xFF, 0xD8, 1, 2, 3, 4]));
    }
}
