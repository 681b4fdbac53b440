//! Synthetic listing photos, for catalogs that cannot hold photos out.
//!
//! A catalog with one photo per product has nothing to look up against the
//! rest, so self-calibration makes queries up: each sampled catalog image
//! (its stored thumbnail, so a refit needs no source files) becomes a few
//! listing-like photos — part of it cut out, seen at a slant, scaled into a
//! scene cluttered with other catalog images, tilted, most of the time partly
//! hidden behind another one, re-lit, blurred, downscaled and re-compressed —
//! which the index's model embeds and the whole catalog ranks. The confidence
//! mapping (the margin over the ranking's own spread,
//! [`crate::search::Mapping::RelativeMargin`]) and the presence model
//! (`p_no_match`, the same views with their product removed as the
//! none-cases) are fitted on those lookups.
//!
//! **Why, and how far it goes** (docs/evaluation.md, "Catalogs with one photo
//! per product"): the model's shipped calibration was fitted on one catalog
//! make-up (studio packshots, shelf photos as queries); on a catalog of
//! another make-up (one shelf photo per product) it is far too confident
//! (ECE 0.25–0.39). Views without the slant and the occluder were far easier
//! than real listings (top-1 0.61–0.81 against 0.39–0.44), and a mapping fitted
//! on them too steep (ECE 0.09–0.19); these come to 0.37–0.56, and the mapping
//! fitted on them is off by 0.04–0.13 on the make-ups measured, on the
//! cautious side where it is off. Synthetic views are not real listings, so
//! the verdict thresholds fitted on them (a catalog with both labels) only
//! ever raise the defaults: a bound from made-up photos may promise what
//! real listings do not keep, so it may only make a verdict more cautious
//! (the reason says so).

use image::RgbaImage;
use rayon::prelude::*;

use super::FitError;
use crate::catalog::Catalog;
use crate::embed::Embedder;
use crate::metrics::RankedLookup;
use crate::synth::listing::synthetic_view;
use crate::util::Rng;

/// How many synthetic views [`view_lookups`] makes.
#[derive(Debug, Clone, Copy)]
pub struct ViewOptions {
    /// Views of each sampled catalog image.
    pub per_image: usize,
    /// Views in all (images are sampled evenly when the catalog is larger).
    pub max_views: usize,
    pub seed: u64,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions { per_image: 8, max_views: 1200, seed: 0x005E_ED0F_71E5 }
    }
}

/// Views embedded per model call.
const BATCH: usize = 16;
/// Catalog images whose thumbnails are held at once (about 33 MB decoded).
const SOURCES_IN_MEMORY: usize = 128;

/// Which of `n` images get views, and how many each: every image when
/// `n · per_image` fits in `max_views`, else at least one view each of
/// `max_views` images spread evenly.
fn sample(n: usize, opts: &ViewOptions) -> (Vec<usize>, usize) {
    let per = (opts.max_views / n.max(1)).clamp(1, opts.per_image.max(1));
    if n <= opts.max_views {
        ((0..n).collect(), per)
    } else {
        ((0..opts.max_views).map(|k| k * n / opts.max_views).collect(), 1)
    }
}

/// Synthetic views of the catalog's own `images` ((image id, product key,
/// model vector), as [`Catalog::labelled_images`]) looked up against all of
/// them: the best 11 products (nearest image each) per view, in the space
/// the index searches. Images without a stored thumbnail are skipped.
pub fn view_lookups(
    catalog: &Catalog,
    embedder: &Embedder,
    images: &[(i64, i64, Vec<f32>)],
    opts: &ViewOptions,
) -> Result<Vec<RankedLookup<i64>>, FitError> {
    let projection = catalog.projection();
    let space = |v: &[f32]| projection.as_ref().map_or_else(|| v.to_vec(), |p| p.apply(v));
    let projected: Option<Vec<Vec<f32>>> = projection.as_ref().map(|p| images.iter().map(|(_, _, v)| p.apply(v)).collect());
    let gallery: Vec<&[f32]> = match &projected {
        Some(g) => g.iter().map(Vec::as_slice).collect(),
        None => images.iter().map(|(_, _, v)| v.as_slice()).collect(),
    };
    let labels: Vec<i64> = images.iter().map(|(_, p, _)| *p).collect();
    let (chosen, per) = sample(images.len(), opts);
    let mut lookups = Vec::with_capacity(chosen.len() * per);
    // A group of images at a time in memory (thumbnails are at most 256 px): the
    // views of an image take their clutter from the other images of its group.
    for (g, group) in chosen.chunks(SOURCES_IN_MEMORY).enumerate() {
        let mut sources: Vec<(i64, RgbaImage)> = Vec::with_capacity(group.len());
        for &i in group {
            let Some(bytes) = catalog.records().thumbnail(images[i].0)? else { continue };
            if let Ok(img) = image::load_from_memory(&bytes) {
                sources.push((labels[i], img.to_rgba8()));
            }
        }
        // Each view is made by its own generator, so the views do not depend on
        // how many threads make them; a batch is made in parallel, then embedded.
        let jobs: Vec<usize> = (0..sources.len()).flat_map(|k| std::iter::repeat_n(k, per)).collect();
        for (b, batch) in jobs.chunks(BATCH).enumerate() {
            let first = (g * SOURCES_IN_MEMORY * per + b * BATCH) as u64;
            let views: Vec<image::RgbImage> = batch
                .par_iter()
                .enumerate()
                .map(|(i, k)| {
                    let mut rng = Rng::new(opts.seed ^ (first + i as u64).wrapping_mul(0x9E37_79B9));
                    let clutter: Vec<&RgbaImage> =
                        (0..5).map(|_| rng.below(sources.len())).filter(|j| j != k).map(|j| &sources[j].1).collect();
                    synthetic_view(&sources[*k].1, &clutter, &mut rng)
                })
                .collect();
            let embedded: Vec<Vec<f32>> = embedder.embed_batch(&views)?.iter().map(|v| space(v)).collect();
            for (k, top) in batch.iter().zip(super::cv::rank_products_many(&embedded, &gallery, &labels, 11)) {
                lookups.push(RankedLookup { truth: sources[*k].0, top });
            }
        }
    }
    Ok(lookups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_spreads_the_views_over_the_catalog() {
        let opts = ViewOptions { per_image: 8, max_views: 1200, seed: 1 };
        assert_eq!(sample(81, &opts), ((0..81).collect(), 8));
        let (chosen, per) = sample(400, &opts);
        assert_eq!((chosen.len(), per), (400, 3));
        let (chosen, per) = sample(5000, &opts);
        assert_eq!((chosen.len(), per), (1200, 1));
        assert!(chosen.windows(2).all(|w| w[0] < w[1]) && *chosen.last().unwrap() < 5000);
    }
}
