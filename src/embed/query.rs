//! A query photo's copy-detection features, prepared in two steps so that the
//! photos that copy nothing — most listings — pay little for the copy check.
//!
//! A photo made of content regions (a collage, a listing card, a picture in a
//! wide border: [`super::regions`]) is what copies look like; it is described
//! in full at once, region by region ([`describe_query`]). Any other photo
//! gets a *glance*: the photo described the way a catalog image is
//! ([`GLANCE`]: the catalog's scale and point budget, plus mirrored
//! descriptors; under a millisecond), and keeps its pixels at the query's
//! working scale. `search::copy::gate` verifies the glance against the
//! candidate images, and only when one of them holds up is the photo
//! described in full ([`QueryFeatures::full`]), from the kept pixels, exactly
//! as it would have been at once.

use std::sync::OnceLock;

use fast_image_resize::Resizer;
use image::RgbImage;

use super::local::{describe_query, LocalFeatures, LocalParams, CATALOG, QUERY};
use super::preprocess::resize_rgb;
use super::regions::PixelRect;

/// The glance: a query described as a catalog image is (so that an unedited
/// copy meets its source point for point), with mirrored descriptors.
pub const GLANCE: LocalParams = LocalParams { max_points: 100, ..CATALOG };

/// A query photo's copy-detection features.
#[derive(Debug, Clone)]
pub enum QueryFeatures {
    /// A photo of content regions: described in full, always checked.
    Full(LocalFeatures),
    /// One picture: the glance now, the full description on demand.
    Deferred(Deferred),
}

/// A one-picture photo before the gate has looked at it.
#[derive(Debug, Clone)]
pub struct Deferred {
    /// The photo described as a catalog image is.
    pub glance: LocalFeatures,
    /// The photo at the query's working scale ([`QUERY`]`.max_side`): all the full description reads.
    working: RgbImage,
    full: OnceLock<LocalFeatures>,
}

impl QueryFeatures {
    /// A decoded photo's content regions and its full query description, at
    /// once (what a copy check after the lookup — clustering, the evidence
    /// pack's picture — describes a stored photo with).
    pub fn describe_now(rgb: &RgbImage, resizer: &mut Resizer) -> (Vec<PixelRect>, LocalFeatures) {
        let regions = super::regions::content_regions(rgb, resizer);
        let features = describe_query(rgb, &regions, resizer);
        (regions, features)
    }

    /// Prepares a decoded photo whose content regions are `regions`.
    pub fn prepare(rgb: &RgbImage, regions: &[PixelRect], resizer: &mut Resizer) -> QueryFeatures {
        if !regions.is_empty() {
            return QueryFeatures::Full(describe_query(rgb, regions, resizer));
        }
        // The size `LocalFeatures::extract` resizes to, so describing `working` later skips that step.
        let (ww, wh) = QUERY.working_size(rgb.width(), rgb.height());
        let working = resize_rgb(rgb, ww, wh, resizer);
        let glance = LocalFeatures::extract(&working, &GLANCE, true, resizer);
        QueryFeatures::Deferred(Deferred { glance, working, full: OnceLock::new() })
    }

    /// The glance, for a photo that has one (not for a photo of content regions).
    pub fn glance(&self) -> Option<&LocalFeatures> {
        match self {
            QueryFeatures::Full(_) => None,
            QueryFeatures::Deferred(d) => Some(&d.glance),
        }
    }

    /// Whether the full description exists yet.
    pub fn is_described(&self) -> bool {
        match self {
            QueryFeatures::Full(_) => true,
            QueryFeatures::Deferred(d) => d.full.get().is_some(),
        }
    }

    /// The full description ([`describe_query`]), made on the first call.
    pub fn full(&self) -> &LocalFeatures {
        match self {
            QueryFeatures::Full(f) => f,
            QueryFeatures::Deferred(d) => d.full.get_or_init(|| describe_query(&d.working, &[], &mut Resizer::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = ((x * 7919 + y * 104_729) ^ (x * y)).wrapping_mul(2_654_435_761) >> 24;
            image::Rgb([v as u8, (v >> 1) as u8, 255 - v as u8])
        })
    }

    #[test]
    fn a_deferred_description_equals_the_description_made_at_once() {
        let mut r = Resizer::new();
        for (w, h) in [(900, 600), (300, 420)] {
            let img = textured(w, h);
            let q = QueryFeatures::prepare(&img, &[], &mut r);
            assert!(!q.is_described());
            assert!(q.glance().is_some_and(|g| !g.points.is_empty() && g.mirrored.len() == g.points.len()));
            assert_eq!(q.full(), &describe_query(&img, &[], &mut r), "{w}x{h}");
            assert!(q.is_described());
        }
    }

    #[test]
    fn a_photo_of_regions_is_described_in_full_at_once() {
        let img = textured(600, 400);
        let q = QueryFeatures::prepare(&img, &[[0, 0, 280, 400], [320, 0, 280, 400]], &mut Resizer::new());
        assert!(q.is_described() && q.glance().is_none());
        assert!(!q.full().points.is_empty());
    }
}
