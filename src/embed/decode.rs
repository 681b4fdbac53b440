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

    if format == ImageFormat::Png {
        return png_rgb(bytes, source_name, limits);
    }
    let reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder = reader.into_decoder().map_err(|e| classify(&e, source_name))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    check_size(width, height, limits, source_name)?;
    // More than 8 bits per channel (16-bit or float TIFF) decodes at up to 16 bytes a pixel
    // before it is reduced to 8-bit RGB: bounded like an 8-bit RGBA image at the pixel limit.
    let (decoded, limit) = (decoder.total_bytes(), limits.max_pixels.saturating_mul(4));
    if decoded > limit {
        return Err(EmbedError::TooDeep { source_name: name(), width, height, bytes: decoded, limit });
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

/// Refuses an image over the pixel or side limit, or with no pixels.
fn check_size(width: u32, height: u32, limits: DecodeLimits, source_name: &str) -> Result<(), EmbedError> {
    let name = || source_name.to_string();
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
    Ok(())
}

/// A PNG decoded row by row straight into 8-bit RGB: 16-bit channels are
/// stripped and palettes expanded as each row arrives, so an image costs
/// 3 bytes a pixel (plus one row; a whole 8-bit frame only when interlaced)
/// whatever its depth. Through `image` a 16-bit RGBA PNG peaked at about
/// 12 bytes a pixel (the 16-bit frame, then an 8-bit copy, then the RGB
/// result; `tests/decode_memory.rs`).
fn png_rgb(bytes: &[u8], source_name: &str, limits: DecodeLimits) -> Result<DecodedImage, EmbedError> {
    let corrupt = |e: png::DecodingError| match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            EmbedError::Truncated { source_name: source_name.to_string(), detail: io.to_string() }
        }
        e => EmbedError::Corrupt { source_name: source_name.to_string(), detail: e.to_string() },
    };
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let (width, height) = {
        let info = decoder.read_header_info().map_err(corrupt)?;
        (info.width, info.height)
    };
    check_size(width, height, limits, source_name)?;
    let pixels = u64::from(width) * u64::from(height);
    decoder.set_limits(png::Limits { bytes: usize::try_from(pixels.saturating_mul(4).saturating_add(64 << 20)).unwrap_or(usize::MAX) });
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (color, _) = reader.output_color_type();
    let channels = color.samples();
    let orientation = reader.info().exif_metadata.as_deref().and_then(image::metadata::Orientation::from_exif_chunk);
    let mut out = Vec::with_capacity(usize::try_from(pixels.saturating_mul(3)).unwrap_or(usize::MAX));
    if reader.info().interlaced {
        let mut frame = vec![0; reader.output_buffer_size().unwrap_or(0)];
        let info = reader.next_frame(&mut frame).map_err(corrupt)?;
        for row in frame.chunks_exact(info.line_size).take(height as usize) {
            push_rgb(&row[..width as usize * channels], channels, &mut out);
        }
    } else {
        while let Some(row) = reader.next_row().map_err(corrupt)? {
            push_rgb(&row.data()[..width as usize * channels], channels, &mut out);
        }
    }
    let Some(rgb) = RgbImage::from_raw(width, height, out) else {
        return Err(EmbedError::Truncated { source_name: source_name.to_string(), detail: "fewer rows than the header says".into() });
    };
    let mut img = DynamicImage::ImageRgb8(rgb);
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(DecodedImage { rgb: img.into_rgb8(), format: ImageFormat::Png })
}

/// Appends one row of 8-bit grey, grey+alpha, RGB or RGBA samples as RGB,
/// transparent pixels composited onto white.
fn push_rgb(row: &[u8], channels: usize, out: &mut Vec<u8>) {
    match channels {
        1 => row.iter().for_each(|&g| out.extend_from_slice(&[g, g, g])),
        2 => row.chunks_exact(2).for_each(|p| {
            let g = on_white(p[0], p[1]);
            out.extend_from_slice(&[g, g, g]);
        }),
        3 => out.extend_from_slice(row),
        _ => row.chunks_exact(4).for_each(|p| out.extend_from_slice(&[on_white(p[0], p[3]), on_white(p[1], p[3]), on_white(p[2], p[3])])),
    }
}

/// Channel `c` of a pixel with alpha `a`, composited onto white.
fn on_white(c: u8, a: u8) -> u8 {
    ((u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8
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
    push_rgb(rgba.as_raw(), 4, &mut out);
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

    /// `image`'s own decode of the same bytes, flattened as before the PNG path existed.
    fn through_image(bytes: &[u8]) -> RgbImage {
        to_rgb_on_white(image::load_from_memory(bytes).unwrap())
    }

    fn assert_close(a: &RgbImage, b: &RgbImage, what: &str) {
        assert_eq!(a.dimensions(), b.dimensions(), "{what}");
        let worst = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
        // 16 → 8 bits: the PNG path keeps the high byte, `image` rounds (twice
        // over where a pixel is partly transparent: its colour and its alpha).
        assert!(worst <= 2, "{what}: a channel differs by {worst}");
    }

    #[test]
    fn png_rows_decode_to_the_picture_image_decodes_at_every_depth() {
        let (w, h) = (29, 17);
        let v = |x: u32, y: u32, k: u32| ((x * 977 + y * 1543 + k * 4099) % 65_536) as u16;
        let rgba16 = image::ImageBuffer::from_fn(w, h, |x, y| {
            image::Rgba([v(x, y, 0), v(x, y, 1), v(x, y, 2), if (x + y) % 4 == 0 { v(x, y, 3) } else { 65_535 }])
        });
        let base = DynamicImage::ImageRgba16(rgba16);
        let variants = [
            ("L8", DynamicImage::ImageLuma8(base.to_luma8())),
            ("La8", DynamicImage::ImageLumaA8(base.to_luma_alpha8())),
            ("Rgb8", DynamicImage::ImageRgb8(base.to_rgb8())),
            ("Rgba8", DynamicImage::ImageRgba8(base.to_rgba8())),
            ("L16", DynamicImage::ImageLuma16(base.to_luma16())),
            ("La16", DynamicImage::ImageLumaA16(base.to_luma_alpha16())),
            ("Rgb16", DynamicImage::ImageRgb16(base.to_rgb16())),
            ("Rgba16", base.clone()),
        ];
        for (what, img) in variants {
            let mut bytes = Vec::new();
            img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
            let ours = decode_image(&bytes, what, DecodeLimits::default()).unwrap();
            assert_close(&ours.rgb, &through_image(&bytes), what);
        }
        // Adam7-interlaced 16-bit RGBA (neither `image` nor `png` writes one: made with pypng).
        let adam7 = include_bytes!("../../tests/fixtures/formats/gradient-adam7-rgba16.png");
        let ours = decode_image(adam7, "adam7", DecodeLimits::default()).unwrap();
        assert_eq!(ours.rgb.dimensions(), (37, 23));
        assert_close(&ours.rgb, &through_image(adam7), "adam7");
    }

    #[test]
    fn png_palette_and_truncation() {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, 3, 2);
            enc.set_color(png::ColorType::Indexed);
            enc.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255]);
            enc.set_trns(vec![255, 255, 0]);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[0, 1, 2, 2, 1, 0]).unwrap();
        }
        let ours = decode_image(&bytes, "palette", DecodeLimits::default()).unwrap();
        assert_eq!(ours.rgb.as_raw()[..9], [255, 0, 0, 0, 255, 0, 255, 255, 255]);
        let cut = &bytes[..bytes.len() - 20];
        assert!(matches!(
            decode_image(cut, "cut", DecodeLimits::default()),
            Err(EmbedError::Truncated { .. } | EmbedError::Corrupt { .. })
        ));
    }

    #[test]
    fn deep_non_png_images_are_bounded_by_their_decoded_size() {
        let img = image::ImageBuffer::from_pixel(30, 30, image::Rgba([1000u16, 2000, 3000, 65_535]));
        let mut tiff = Vec::new();
        DynamicImage::ImageRgba16(img).write_to(&mut Cursor::new(&mut tiff), ImageFormat::Tiff).unwrap();
        let roomy = DecodeLimits { max_pixels: 2000, ..DecodeLimits::default() };
        assert!(decode_image(&tiff, "deep.tiff", roomy).is_ok());
        // 900 pixels fit under 1000, but 900 × 8 bytes do not fit in 1000 × 4.
        let tight = DecodeLimits { max_pixels: 1000, ..DecodeLimits::default() };
        let err = decode_image(&tiff, "deep.tiff", tight).unwrap_err();
        assert!(matches!(err, EmbedError::TooDeep { bytes: 7200, limit: 4000, .. }), "{err}");
    }

    #[test]
    fn eoi_detection() {
        assert!(jpeg_has_eoi(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9]));
        assert!(jpeg_has_eoi(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9, 0, 0]));
        assert!(!jpeg_has_eoi(&[0xFF, 0xD8, 1, 2, 3, 4]));
    }
}
