//! Preprocessing as two small transforms, driven by the model manifest:
//! [`Resize`] (RGB → RGB at the model's input size) and [`ToTensor`]
//! (RGB → normalised `f32` in the model's layout, written straight into a
//! batch buffer). A fused model runs one such chain per part and lays the
//! parts' tensors back to back.

use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::model::{InputLayout, ModelManifest, Normalization, ResizeMode};

/// Resize with Pillow-compatible antialiased bilinear filtering.
#[derive(Debug, Clone, Copy)]
pub struct Resize {
    pub width: u32,
    pub height: u32,
    pub mode: ResizeMode,
}

impl Resize {
    /// Source region to sample: the whole image, or its centred crop with the
    /// target's aspect ratio.
    fn crop_box(&self, w: u32, h: u32) -> (f64, f64, f64, f64) {
        match self.mode {
            ResizeMode::Squash => (0.0, 0.0, w as f64, h as f64),
            ResizeMode::CenterCrop => {
                let target = self.width as f64 / self.height as f64;
                let (w, h) = (w as f64, h as f64);
                if w / h > target {
                    let cw = h * target;
                    ((w - cw) / 2.0, 0.0, cw, h)
                } else {
                    let ch = w / target;
                    (0.0, (h - ch) / 2.0, w, ch)
                }
            }
        }
    }

    pub fn apply(&self, img: &RgbImage, resizer: &mut Resizer) -> RgbImage {
        if img.width() == self.width && img.height() == self.height && self.mode == ResizeMode::Squash {
            return img.clone();
        }
        let src = fast_image_resize::images::ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
            .expect("RgbImage buffer matches its dimensions");
        let mut dst = Image::new(self.width, self.height, PixelType::U8x3);
        let (l, t, w, h) = self.crop_box(img.width(), img.height());
        let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(l, t, w, h);
        resizer.resize(&src, &mut dst, &opts).expect("same pixel type, non-empty sizes");
        RgbImage::from_raw(self.width, self.height, dst.into_vec()).expect("dst buffer matches its dimensions")
    }
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
                    r[i] = px[0] as f32 * scale[0] + shift[0];
                    g[i] = px[1] as f32 * scale[1] + shift[1];
                    b[i] = px[2] as f32 * scale[2] + shift[2];
                }
            }
            InputLayout::Nhwc => {
                for (o, (v, c)) in out.iter_mut().zip(raw.iter().zip((0..3).cycle())) {
                    *o = *v as f32 * scale[c] + shift[c];
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

    /// Resizes and normalises `img` into `out` (exactly `tensor_len` values).
    pub fn apply(&self, img: &RgbImage, resizer: &mut Resizer, out: &mut [f32]) {
        let resized = self.resize.apply(img, resizer);
        self.to_tensor.apply(&resized, out);
    }
}

/// The full preprocessing of a model: one [`Chain`] per ONNX model it runs
/// (one for a single model, one per part for a fused one).
#[derive(Debug, Clone)]
pub struct Preprocessor {
    pub chains: Vec<Chain>,
}

impl Preprocessor {
    pub fn for_model(m: &ModelManifest) -> Self {
        let chains = m
            .onnx_parts()
            .into_iter()
            .filter_map(|(part, _)| part.input.as_ref())
            .map(|input| Chain {
                resize: Resize { width: input.width, height: input.height, mode: input.resize },
                to_tensor: ToTensor { layout: input.layout, norm: input.normalization.clone() },
            })
            .collect();
        Preprocessor { chains }
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
        let mut rest = out;
        for c in &self.chains {
            let (slot, tail) = rest.split_at_mut(c.tensor_len());
            c.apply(img, resizer, slot);
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
