//! Preprocessing as small composable transforms, built from the model
//! manifest: [`FocusCrop`] (which region of the photo to use, decided once per
//! image), [`Resize`] (RGB → RGB at the model's input size) and [`ToTensor`]
//! (RGB → normalised `f32` in the model's layout, written straight into a
//! batch buffer). A fused model runs one resize + to-tensor [`Chain`] per part
//! and lays the parts' tensors back to back. (This example is a doctest: it
//! fails if the shipped default model's preprocessing changes.)
//!
//! ```
//! use knockoff::embed::{InputLayout, ModelRegistry, Preprocessor, ResizeMode};
//! let reg = ModelRegistry::open(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models")).unwrap();
//! let pre = Preprocessor::for_model(reg.get(Some("efficientnet-lite0")).unwrap());
//! assert_eq!(pre.focus.map(|f| f.fraction), Some(0.7));
//! assert_eq!(pre.chains.len(), 1);
//! let c = &pre.chains[0];
//! assert_eq!((c.resize.width, c.resize.height, c.resize.mode), (224, 224, ResizeMode::Squash));
//! assert_eq!((c.to_tensor.layout, c.to_tensor.norm.mean, c.to_tensor.norm.std), (InputLayout::Nchw, [127.0; 3], [128.0; 3]));
//! ```

use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::model::{InputLayout, ModelManifest, Normalization, ResizeMode};

/// `img` resized to `w` × `h` (antialiased bilinear, SIMD).
pub fn resize_rgb(img: &RgbImage, w: u32, h: u32, resizer: &mut Resizer) -> RgbImage {
    if img.dimensions() == (w, h) {
        return img.clone();
    }
    Resize { width: w, height: h, mode: ResizeMode::Squash }.apply(img, resizer)
}

/// Resize with Pillow-compatible antialiased bilinear filtering.
#[derive(Debug, Clone, Copy)]
pub struct Resize {
    pub width: u32,
    pub height: u32,
    pub mode: ResizeMode,
}

/// A source rectangle: left, top, width, height (pixels, fractional allowed).
pub type Region = (f64, f64, f64, f64);

impl Resize {
    /// Source region to sample: the whole image, or its centred crop with the
    /// target's aspect ratio.
    #[cfg(test)]
    fn crop_box(&self, w: u32, h: u32) -> Region {
        self.crop_box_in((0.0, 0.0, f64::from(w), f64::from(h)))
    }

    /// Like `crop_box`, inside `region` of the image.
    fn crop_box_in(&self, region: Region) -> Region {
        let (l, t, w, h) = region;
        match self.mode {
            ResizeMode::Squash => region,
            ResizeMode::CenterCrop => {
                let target = f64::from(self.width) / f64::from(self.height);
                if w / h > target {
                    let cw = h * target;
                    (l + (w - cw) / 2.0, t, cw, h)
                } else {
                    let ch = w / target;
                    (l, t + (h - ch) / 2.0, w, ch)
                }
            }
        }
    }

    pub fn apply(&self, img: &RgbImage, resizer: &mut Resizer) -> RgbImage {
        self.apply_region(img, (0.0, 0.0, f64::from(img.width()), f64::from(img.height())), resizer)
    }

    /// Resizes `region` of `img` (see [`FocusCrop`]) to the target size.
    pub fn apply_region(&self, img: &RgbImage, region: Region, resizer: &mut Resizer) -> RgbImage {
        let whole = region == (0.0, 0.0, f64::from(img.width()), f64::from(img.height()));
        if whole && img.width() == self.width && img.height() == self.height && self.mode == ResizeMode::Squash {
            return img.clone();
        }
        let src = fast_image_resize::images::ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
            .expect("RgbImage buffer matches its dimensions");
        let mut dst = Image::new(self.width, self.height, PixelType::U8x3);
        let (l, t, w, h) = self.crop_box_in(region);
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(l, t, w, h);
        resizer.resize(&src, &mut dst, &opts).expect("same pixel type, non-empty sizes");
        RgbImage::from_raw(self.width, self.height, dst.into_vec()).expect("dst buffer matches its dimensions")
    }
}

/// Shelf and street photos show the product in the middle of clutter; studio
/// shots show it on a plain background. `FocusCrop` keeps the central
/// `fraction` (of width and of height) of a photo whose border is busy and
/// the whole of one whose border is plain, so catalog packshots are never cut.
/// In between the crop eases linearly from `fraction` (plain share ≤ 0.5) to
/// none (≥ 0.8), so a small change of the photo never flips the crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FocusCrop {
    pub fraction: f32,
}

impl FocusCrop {
    /// Plain-border shares between which the crop eases off (studio shots
    /// measure ≥ 0.77, shelf photos ≤ 0.64, median 0.17, on the grocery set).
    pub const BUSY: f32 = 0.5;
    pub const PLAIN: f32 = 0.8;

    /// The share of width and height kept for a border this plain.
    pub fn fraction_for(self, plain_share: f32) -> f32 {
        let t = ((plain_share - Self::BUSY) / (Self::PLAIN - Self::BUSY)).clamp(0.0, 1.0);
        self.fraction + (1.0 - self.fraction) * t
    }

    pub fn region(self, img: &RgbImage) -> Region {
        let (w, h) = (f64::from(img.width()), f64::from(img.height()));
        if self.fraction >= 1.0 {
            return (0.0, 0.0, w, h);
        }
        let f = f64::from(self.fraction_for(plain_border_share(img)));
        if f >= 1.0 {
            return (0.0, 0.0, w, h);
        }
        (w * (1.0 - f) / 2.0, h * (1.0 - f) / 2.0, w * f, h * f)
    }
}

/// Share of pixels in the outer 4% band whose channels are all within 24
/// levels of the band's per-channel median (sampled, at most ~4k pixels).
pub fn plain_border_share(img: &RgbImage) -> f32 {
    let (w, h) = img.dimensions();
    if w < 8 || h < 8 {
        return 1.0;
    }
    let (bw, bh) = ((w / 25).max(1), (h / 25).max(1));
    let step = ((f64::from(2 * (w * bh + h * bw)) / 4096.0).sqrt().ceil() as u32).max(1);
    let mut px: Vec<[u8; 3]> = Vec::new();
    for y in (0..h).step_by(step as usize) {
        for x in (0..w).step_by(step as usize) {
            if x < bw || x >= w - bw || y < bh || y >= h - bh {
                px.push(img.get_pixel(x, y).0);
            }
        }
    }
    if px.is_empty() {
        return 1.0;
    }
    let median: [i16; 3] = std::array::from_fn(|c| {
        let mut v: Vec<u8> = px.iter().map(|p| p[c]).collect();
        v.sort_unstable();
        i16::from(v[v.len() / 2])
    });
    let near = px.iter().filter(|p| (0..3).all(|c| (i16::from(p[c]) - median[c]).abs() <= 24)).count();
    near as f32 / px.len() as f32
}

/// 8-bit RGB → normalised `f32` in NCHW or NHWC.
#[derive(Debug, Clone)]
pub struct ToTensor {
    pub layout: InputLayout,
    pub norm: Normalization,
}

impl ToTensor {
    /// Writes one image into `out`, which must hold exactly `3 * w * h` values.
    pub fn apply(&self, img: &RgbImage, out: &mut [f32]) {
        let plane = (img.width() * img.height()) as usize;
        assert_eq!(out.len(), plane * 3, "tensor slot has the wrong size");
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / self.norm.std[c]);
        let shift: [f32; 3] = std::array::from_fn(|c| -self.norm.mean[c] / self.norm.std[c]);
        let raw = img.as_raw();
        match self.layout {
            InputLayout::Nchw => {
                let (r, rest) = out.split_at_mut(plane);
                let (g, b) = rest.split_at_mut(plane);
                for (i, px) in raw.chunks_exact(3).enumerate() {
                    r[i] = f32::from(px[0]) * scale[0] + shift[0];
                    g[i] = f32::from(px[1]) * scale[1] + shift[1];
                    b[i] = f32::from(px[2]) * scale[2] + shift[2];
                }
            }
            InputLayout::Nhwc => {
                for (o, (v, c)) in out.iter_mut().zip(raw.iter().zip((0..3).cycle())) {
                    *o = f32::from(*v) * scale[c] + shift[c];
                }
            }
        }
    }
}

/// The preprocessing chain of one ONNX model.
#[derive(Debug, Clone)]
pub struct Chain {
    pub resize: Resize,
    pub to_tensor: ToTensor,
}

impl Chain {
    /// Number of `f32` values of one preprocessed image.
    pub fn tensor_len(&self) -> usize {
        3 * self.resize.width as usize * self.resize.height as usize
    }

    /// Resizes `region` of `img` and normalises it into `out` (exactly `tensor_len` values).
    pub fn apply(&self, img: &RgbImage, region: Region, resizer: &mut Resizer, out: &mut [f32]) {
        let resized = self.resize.apply_region(img, region, resizer);
        self.to_tensor.apply(&resized, out);
    }
}

/// The full preprocessing of a model: the focus crop (decided once per
/// image), then one [`Chain`] per ONNX model it runs (one for a single model,
/// one per part for a fused one).
#[derive(Debug, Clone)]
pub struct Preprocessor {
    pub focus: Option<FocusCrop>,
    pub chains: Vec<Chain>,
}

impl Preprocessor {
    pub fn for_model(m: &ModelManifest) -> Self {
        let focus = m.focus_crop.map(|fraction| FocusCrop { fraction });
        let chains = m
            .onnx_parts()
            .into_iter()
            .filter_map(|(part, _)| part.input.as_ref())
            .map(|input| Chain {
                resize: Resize { width: input.width, height: input.height, mode: input.resize },
                to_tensor: ToTensor { layout: input.layout, norm: input.normalization.clone() },
            })
            .collect();
        Preprocessor { focus, chains }
    }

    /// Number of `f32` values of one preprocessed image (all parts).
    pub fn tensor_len(&self) -> usize {
        self.chains.iter().map(Chain::tensor_len).sum()
    }

    /// Resizes and normalises `img` into a new tensor slot.
    pub fn run(&self, img: &RgbImage, resizer: &mut Resizer) -> Vec<f32> {
        let mut out = vec![0f32; self.tensor_len()];
        self.apply(img, resizer, &mut out);
        out
    }

    /// Writes `img`'s tensors (parts back to back) into `out`.
    pub fn apply(&self, img: &RgbImage, resizer: &mut Resizer, out: &mut [f32]) {
        let region = match self.focus {
            Some(f) => f.region(img),
            None => (0.0, 0.0, f64::from(img.width()), f64::from(img.height())),
        };
        let mut rest = out;
        for c in &self.chains {
            let (slot, tail) = rest.split_at_mut(c.tensor_len());
            c.apply(img, region, resizer, slot);
            rest = tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_crop_box_keeps_target_aspect() {
        let r = Resize { width: 100, height: 100, mode: ResizeMode::CenterCrop };
        assert_eq!(r.crop_box(400, 200), (100.0, 0.0, 200.0, 200.0));
        assert_eq!(r.crop_box(200, 400), (0.0, 100.0, 200.0, 200.0));
        let s = Resize { width: 100, height: 100, mode: ResizeMode::Squash };
        assert_eq!(s.crop_box(400, 200), (0.0, 0.0, 400.0, 200.0));
    }

    #[test]
    fn focus_crop_cuts_busy_photos_and_keeps_packshots_whole() {
        // A packshot: a busy object on a white background.
        let shot = RgbImage::from_fn(200, 100, |x, y| {
            if (40..160).contains(&x) && (20..80).contains(&y) {
                image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, 90])
            } else {
                image::Rgb([252, 252, 250])
            }
        });
        // A shelf photo: clutter up to the edges.
        let shelf = RgbImage::from_fn(200, 100, |x, y| {
            image::Rgb([((x * 37 + y * 11) % 256) as u8, ((x * 5 + y * 71) % 256) as u8, ((x ^ y) % 256) as u8])
        });
        assert!(plain_border_share(&shot) > 0.95);
        assert!(plain_border_share(&shelf) < 0.3);
        let f = FocusCrop { fraction: 0.7 };
        assert_eq!(f.region(&shot), (0.0, 0.0, 200.0, 100.0));
        assert_eq!((f.fraction_for(0.2), f.fraction_for(0.9)), (0.7, 1.0));
        assert!((f.fraction_for(0.65) - 0.85).abs() < 1e-6, "eases linearly in between");
        let (l, t, w, h) = f.region(&shelf);
        assert!(
            (l - 30.0).abs() < 1e-3 && (t - 15.0).abs() < 1e-3 && (w - 140.0).abs() < 1e-3 && (h - 70.0).abs() < 1e-3,
            "{l} {t} {w} {h}"
        );
        // The crop really selects the centre: a resized crop of a busy image
        // whose centre is red comes out red (the filter may reach a few
        // pixels past the crop, so the red reaches a little further).
        let mut two = shelf.clone();
        for y in 5..95 {
            for x in 12..188 {
                two.put_pixel(x, y, image::Rgb([200, 0, 0]));
            }
        }
        let r = Resize { width: 8, height: 8, mode: ResizeMode::Squash };
        let out = r.apply_region(&two, f.region(&two), &mut Resizer::new());
        assert!(out.pixels().all(|p| p.0 == [200, 0, 0]));
    }

    #[test]
    fn to_tensor_normalises_and_lays_out_planes() {
        let img = RgbImage::from_raw(2, 1, vec![255, 0, 127, 0, 255, 127]).unwrap();
        let norm = Normalization { mean: [127.0; 3], std: [128.0; 3] };
        let mut out = vec![0.0; 6];
        ToTensor { layout: InputLayout::Nchw, norm: norm.clone() }.apply(&img, &mut out);
        assert_eq!(out, vec![1.0, -127.0 / 128.0, -127.0 / 128.0, 1.0, 0.0, 0.0]);
        ToTensor { layout: InputLayout::Nhwc, norm }.apply(&img, &mut out);
        assert_eq!(out, vec![1.0, -127.0 / 128.0, 0.0, -127.0 / 128.0, 1.0, 0.0]);
    }

    #[test]
    fn resize_squash_hits_target_size_and_keeps_flat_colour() {
        let img = RgbImage::from_pixel(37, 91, image::Rgb([10, 200, 30]));
        let out = Resize { width: 16, height: 20, mode: ResizeMode::Squash }.apply(&img, &mut Resizer::new());
        assert_eq!(out.dimensions(), (16, 20));
        assert!(out.pixels().all(|p| p.0 == [10, 200, 30]));
    }
}
