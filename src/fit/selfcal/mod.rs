//! Self-calibration: the index fits its own projection, confidence mapping,
//! presence model and verdict thresholds from its catalog alone, without
//! labelled queries. `knockoff index` ends with [`fit_index`]; the service's
//! background refit runs it too; `knockoff tune` (an explicit projection)
//! ends with [`self_calibrate`].
//!
//! **The held-out lookups.** Each product's photos, in source order (file
//! name or URL, so the split does not depend on how indexing ran), are
//! cut in two halves; each half (at most `max_lookups` photos in all, evenly
//! spread) is looked up (exhaustively, nearest image per product) against
//! the other half — raw, and in a projection fitted on that other half only.
//! The same pass says whether the projection helps (top-1 with and without
//! it) and gives the lookups everything is fitted on: each is a positive case
//! (its product is in the gallery) and, with its product dropped from the
//! ranking, a "none of these" case. The top-product mapping is a logistic of
//! (top similarity, margin) fitted on the positives, the presence model a
//! weighted logistic of the same, positives against none-cases, with an
//! assumed share of out-of-catalog queries; the verdict thresholds come from
//! all of them, the none-cases weighted by the share of uncatalogued products
//! assumed among authentic (5 %) and counterfeit (50 %) listings
//! ([`super::fit_risk_thresholds`]).
//!
//! **Small catalogs.** A brand's catalog of a few products is fitted on its
//! halves too when most of its products have several photos and those hold
//! [`MIN_HELD_OUT_PHOTOS`] photos: without a presence model every photo, of
//! anything, would match one of its products. No projection is tried below
//! [`MIN_PRODUCTS`] products with several photos: fitted on so few it learns
//! the shoot (halves' top-1 near 1, real listings' confidence far too high),
//! and the presence model fitted in it stops telling other products apart.
//! Its thresholds are fitted like any other's; with so few lookups the 2 %
//! bound may allow no `likely_counterfeit` at all (docs/evaluation.md).
//!
//! **One photo per product.** Any other catalog of at least 10 products
//! (most with one photo) has nothing to hold out: with the index's model at
//! hand (`knockoff index`, the service's refit) it fits its confidence
//! mapping — a logistic of the margin over the spread of the next products'
//! similarities, which transfers from made-up photos to real ones where one
//! of similarity and margin does not — and presence model on synthetic
//! listing photos of its own images instead ([`super::views`]). On a
//! catalog with both labels the verdict thresholds are fitted on the same
//! views but only ever raised above the defaults by them, never lowered: a
//! bound on made-up photos may promise what real listings do not keep, so
//! it may only make a verdict more cautious (without it the default 0.5 let
//! 13–16 of 16 look-alike counterfeits through as `likely_authentic`:
//! diffuse mass over the many authentic products reached it even when the
//! counterfeit ranked first). A catalog of fewer than 10 products with one photo each
//! keeps the model's shipped calibration (synthetic views of so few
//! products, tried, calibrated no better and told other products apart
//! little).
//!
//! **Photos that copy one another.** A brand often publishes one shot per
//! product re-cropped, re-lit or mirrored several times. Held out, such a
//! photo finds its own copy (top-1 0.98–1.00) and the presence model learns
//! that a catalogued product looks like a copy: every real listing then
//! reads as `no_match` (measured: 296 of 296). So before the halves, up to
//! [`COPY_SAMPLE`] products are checked — the first photo's thumbnail
//! against its nearest photo of the product in the other half, by the copy
//! check lookups run — and when at least half are copies (and the model is
//! at hand) the catalog is calibrated on synthetic views instead, as a
//! catalog with one photo per product is (below 10 products it keeps the
//! shipped calibration, and says why).
//!
//! **Reviewed cases.** What analysts decided joins the lookups above as
//! labelled real listing photos, weighted above them once there are
//! [`REVIEWS_TO_LEAD`] ([`reviewed`] states the rule): calibration moves
//! toward the marketplace's own photos as reviews accumulate.
//!
//! **Why halves by order.** Photos of one product taken one after another are
//! near-duplicates; interleaved folds would let each photo find its twin.
//! (A harder split — each product's photos in two clusters, "another shoot" —
//! was measured and dropped: it makes the mapping far too cautious on real
//! shelf photos; see docs/evaluation.md.)

mod fitted;
mod halves;
mod reviewed;

use rayon::prelude::*;
use serde::Serialize;

use fitted::{calibrate_from, fit_presence, fit_thresholds, mapping_fitted_on, relative_margin_mapping, top1, without_truth, Shares};
use halves::{held_out_lookups, members};
pub use reviewed::REVIEWS_TO_LEAD;
use reviewed::{reviewed_lookups, Reviewed};

use super::views::{view_lookups, ViewOptions};

use super::{save_calibration, FitError};
use crate::catalog::{Catalog, FitOptions};
use crate::embed::Embedder;
use crate::metrics::RankedLookup;
use crate::search::calibration::Calibration;

/// Settings of [`self_calibrate`] and [`fit_index`].
#[derive(Debug, Clone)]
pub struct SelfCalOptions {
    /// Held-out lookups in all (spread evenly over the catalog's photos).
    pub max_lookups: usize,
    /// Share of queries assumed to show a product outside the catalog (and
    /// of authentic listings, for the false-accusation bound).
    pub prior_none: f64,
    /// Share of counterfeit listings assumed to show a fake the catalog does
    /// not hold (for the bound on counterfeits called `likely_authentic`).
    pub counterfeit_none_share: f64,
    /// How a projection is fitted when one is tried.
    pub projection: FitOptions,
    /// The synthetic views a catalog with one photo per product is fitted on.
    pub views: ViewOptions,
}

impl Default for SelfCalOptions {
    fn default() -> Self {
        SelfCalOptions {
            max_lookups: 1200,
            prior_none: 0.05,
            counterfeit_none_share: 0.5,
            projection: FitOptions::default(),
            views: ViewOptions::default(),
        }
    }
}

impl SelfCalOptions {
    fn shares(&self) -> Shares {
        Shares { none: self.prior_none, counterfeit_none: self.counterfeit_none_share }
    }
}

/// What [`self_calibrate`] or [`fit_index`] found.
#[derive(Debug, Clone, Serialize)]
pub struct SelfCalReport {
    /// What the lookups were.
    pub evidence: Evidence,
    /// Lookups fitted on (held-out photos whose product kept photos in the other half, or synthetic views).
    pub n_lookups: usize,
    /// Their top-1 accuracy in the model's own space and, when tried, in a projection.
    pub top1_raw: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_projected: Option<f64>,
    /// Whether the index now searches in a projection.
    pub projected: bool,
    pub seconds: f64,
    #[serde(skip)]
    pub calibration: Calibration,
}

/// The lookups self-calibration fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Catalog photos looked up against the other half of their product's photos.
    HeldOutHalves,
    /// Synthetic listing photos made from the catalog's images ([`super::views`]):
    /// a catalog with one photo per product; mapping and presence, and
    /// thresholds only where stricter than the defaults.
    SyntheticViews,
    /// The same, for a catalog whose photos of a product are copies of one
    /// another (crops, re-lit or mirrored versions of one shot): its halves
    /// would be near-copies, far easier than any listing.
    SyntheticViewsOverCopies,
}

impl Evidence {
    /// Why the views were made, in words (for `fitted_on` and the log).
    #[must_use]
    pub fn why_views(self) -> &'static str {
        match self {
            Evidence::SyntheticViewsOverCopies => {
                "the photos of a product are copies of one another: held-out photos would find their own copies"
            }
            _ => "one photo per product: none to hold out",
        }
    }
}

/// Products a catalog needs for self-calibration on synthetic views, and
/// products with several photos for a projection (fitted on fewer, it
/// learns the shoot: measured in docs/evaluation.md).
const MIN_PRODUCTS: usize = 10;

/// Photos (of products with several) a small catalog needs to calibrate on
/// held-out halves: one where most products have several photos is fitted
/// on them from this many on, whatever its number of products.
const MIN_HELD_OUT_PHOTOS: usize = 50;

/// Products whose photos are checked for copies of one another (evenly spread).
const COPY_SAMPLE: usize = 100;

/// Share of checked products whose held-out photo is a copy of its nearest
/// photo in the other half from which a catalog is calibrated on synthetic
/// views instead of its halves.
const COPY_SHARE_FOR_VIEWS: f64 = 0.5;

/// Why self-calibration did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Skipped {
    /// Fewer than 10 products with two or more photos (and not most of a
    /// small catalog's, with 50 photos among them), and no model at hand to
    /// make synthetic views.
    TooFewPhotos { products: usize, with_two_photos: usize },
    /// Fewer than 10 products (and too few photos to hold out): a ranking of
    /// synthetic views among so few says little.
    TooFewProducts { products: usize },
    /// Photos of a product copy one another (no halves to hold out) in a
    /// catalog of fewer than 10 products (too few for synthetic views).
    CopiesOfFewProducts { products: usize },
    /// No stored thumbnail to make synthetic views from.
    NoThumbnails,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::TooFewPhotos { products, with_two_photos } => write!(
                f,
                "{products} products, {with_two_photos} with two or more photos: fitting needs {MIN_PRODUCTS} products with several photos, or most products with several and {MIN_HELD_OUT_PHOTOS} photos among them (the model's shipped calibration applies)"
            ),
            Skipped::TooFewProducts { products } => {
                write!(
                    f,
                    "{products} products: fitting needs {MIN_PRODUCTS}, or most with several photos and {MIN_HELD_OUT_PHOTOS} photos among them (the model's shipped calibration applies)"
                )
            }
            Skipped::CopiesOfFewProducts { products } => write!(
                f,
                "{products} products whose photos are copies of one another: held-out photos would find their own copies, and synthetic views need {MIN_PRODUCTS} products (the model's shipped calibration applies)"
            ),
            Skipped::NoThumbnails => write!(f, "no stored thumbnails to make synthetic views from (the model's shipped calibration applies)"),
        }
    }
}

/// Live photo vectors with their product keys.
type Photos = Vec<(i64, Vec<f32>)>;

/// Live images as (image id, product key, vector), in source order.
type Images = Vec<(i64, i64, Vec<f32>)>;

/// The catalog's live images (id, product key, vector) and whether there are
/// enough products with several photos to try a projection, or why there
/// are too few to hold photos out: fewer than [`MIN_PRODUCTS`] products with
/// several photos, unless most products have several and those have
/// [`MIN_HELD_OUT_PHOTOS`] among them (a small brand catalog).
/// (Counted in the store first: a catalog too small is told apart without loading its vectors.)
fn catalog_photos(catalog: &Catalog) -> Result<Result<(Images, bool), Skipped>, FitError> {
    let sizes = catalog.records().image_counts()?;
    let several: Vec<usize> = sizes.values().copied().filter(|n| *n >= 2).collect();
    let with_two = several.len();
    let small_but_enough = with_two >= 2 && with_two * 2 >= sizes.len() && several.iter().sum::<usize>() >= MIN_HELD_OUT_PHOTOS;
    if with_two < MIN_PRODUCTS && !small_but_enough {
        return Ok(Err(Skipped::TooFewPhotos { products: sizes.len(), with_two_photos: with_two }));
    }
    Ok(Ok((catalog.labelled_images()?, with_two >= MIN_PRODUCTS)))
}

/// What `knockoff index` ends with: one held-out pass decides whether a
/// projection helps (applied, or an earlier one removed, accordingly) and
/// calibrates the index in the space it now searches. A catalog without
/// several photos per product is calibrated on synthetic views made with
/// `embedder` instead (without one, it keeps the shipped calibration).
pub fn fit_index(
    catalog: &Catalog,
    embedder: Option<&Embedder>,
    opts: &SelfCalOptions,
) -> Result<Result<SelfCalReport, Skipped>, FitError> {
    run(catalog, embedder, opts, Projecting::Decide(opts.projection))
}

/// Calibrates the index as it is (in its projection, if any, refitted per
/// held-out half) and writes `<index>/calibration.json`; with the model at
/// hand (`embedder`), a catalog whose photos copy one another is calibrated
/// on synthetic views as [`fit_index`] does. `Ok(Err(skipped))` when the
/// catalog cannot calibrate itself (an earlier calibration file is then left
/// as it is).
pub fn self_calibrate(
    catalog: &Catalog,
    embedder: Option<&Embedder>,
    opts: &SelfCalOptions,
) -> Result<Result<SelfCalReport, Skipped>, FitError> {
    let current = catalog.projection().map(|p| FitOptions { shrinkage: p.info.shrinkage, dims: Some(p.info.out_dim) });
    run(catalog, embedder, opts, Projecting::Keep(current))
}

/// Whether the held-out pass decides the projection or keeps the index's own.
#[derive(Clone, Copy)]
enum Projecting {
    Decide(FitOptions),
    Keep(Option<FitOptions>),
}

fn run(
    catalog: &Catalog,
    embedder: Option<&Embedder>,
    opts: &SelfCalOptions,
    how: Projecting,
) -> Result<Result<SelfCalReport, Skipped>, FitError> {
    let t0 = std::time::Instant::now();
    let (images, may_project) = match (catalog_photos(catalog)?, embedder) {
        (Ok(l), _) => l,
        (Err(_), Some(embedder)) => return from_views(catalog, embedder, &catalog.labelled_images()?, opts, t0, Evidence::SyntheticViews),
        (Err(skipped), None) => return Ok(Err(skipped)),
    };
    // Photos of a product that are copies of one another (one shot cropped,
    // re-lit, mirrored) would make held-out lookups near-copies: made-up
    // listing photos are the better evidence then.
    if let Some(embedder) = embedder.filter(|_| copy_share(catalog, &images) >= COPY_SHARE_FOR_VIEWS) {
        return from_views(catalog, embedder, &images, opts, t0, Evidence::SyntheticViewsOverCopies);
    }
    let reviewed = reviewed_lookups(catalog, &images)?;
    let labelled: Photos = images.into_iter().map(|(_, p, v)| (p, v)).collect();
    let tried = match how {
        Projecting::Decide(o) => may_project.then_some(o),
        Projecting::Keep(o) => o,
    };
    let held = held_out_lookups(&labelled, opts.max_lookups, tried, catalog.model())?;
    let (top1_raw, top1_projected) = (top1(&held.raw), held.projected.as_deref().map(top1));
    let (projected, lookups) = match how {
        Projecting::Decide(o) if top1_projected.is_some_and(|p| p > top1_raw) => {
            catalog.fit_projection(o)?;
            (true, held.projected.unwrap_or_default())
        }
        Projecting::Decide(_) => {
            catalog.clear_projection()?;
            (false, held.raw)
        }
        Projecting::Keep(o) => (o.is_some(), held.projected.unwrap_or(held.raw)),
    };
    let calibration = calibrate_from(catalog, &lookups, &reviewed, &opts.shares())?;
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Ok(SelfCalReport {
        evidence: Evidence::HeldOutHalves,
        n_lookups: lookups.len(),
        top1_raw,
        top1_projected,
        projected,
        seconds,
        calibration,
    }))
}

/// Self-calibration of a catalog with one photo per product, or whose photos
/// copy one another (`evidence` says which): the confidence mapping and the
/// presence model, fitted on synthetic views of its live `images` (as
/// [`Catalog::labelled_images`]; [`super::views`]) as the held-out lookups are otherwise; the
/// verdict thresholds too, marked [`VerdictThresholds::on_views`]: they only
/// ever raise the defaults — a bound fitted on made-up photos may promise
/// what real listings do not keep.
fn from_views(
    catalog: &Catalog,
    embedder: &Embedder,
    images: &[(i64, i64, Vec<f32>)],
    opts: &SelfCalOptions,
    t0: std::time::Instant,
    evidence: Evidence,
) -> Result<Result<SelfCalReport, Skipped>, FitError> {
    let products = images.iter().map(|i| i.1).collect::<std::collections::HashSet<_>>().len();
    if products < MIN_PRODUCTS {
        return Ok(Err(if evidence == Evidence::SyntheticViewsOverCopies {
            Skipped::CopiesOfFewProducts { products }
        } else {
            Skipped::TooFewProducts { products }
        }));
    }
    let views = view_lookups(catalog, embedder, images, &opts.views)?;
    if views.is_empty() {
        return Ok(Err(Skipped::NoThumbnails));
    }
    let reviewed = reviewed_lookups(catalog, images)?;
    let times = reviewed.weight(views.len());
    let lookups = Reviewed::joined(&views, &reviewed.positives, times);
    let mut calibration = mapping_fitted_on(
        catalog,
        relative_margin_mapping(&lookups),
        &lookups,
        format!(
            "self-calibration: {} synthetic listing photos made from the catalog's own images ({}), looked up against the catalog, and again with their product removed{}",
            views.len(),
            evidence.why_views(),
            reviewed.described(views.len())
        ),
    );
    let own_nones: Vec<RankedLookup<i64>> = views.iter().map(without_truth).collect();
    calibration.presence =
        Some(fit_presence(&lookups, &Reviewed::joined(&own_nones, &reviewed.nones, times), reviewed.none_share(opts.prior_none)));
    let (positives, nones) = (Reviewed::joined(&views, &reviewed.positives, 1), Reviewed::joined(&own_nones, &reviewed.nones, 1));
    fit_thresholds(catalog, &mut calibration, &positives, &nones, &opts.shares(), true);
    if let (Some(_), Some(said)) = (&calibration.verdict, calibration.queries.first_mut()) {
        said.push_str("; verdict thresholds from them only where stricter than the defaults");
    }
    save_calibration(catalog, &calibration, None)?;
    Ok(Ok(SelfCalReport {
        evidence,
        n_lookups: lookups.len(),
        top1_raw: top1(&lookups),
        top1_projected: None,
        projected: catalog.projection().is_some(),
        seconds: t0.elapsed().as_secs_f64(),
        calibration,
    }))
}

/// Share of products (up to [`COPY_SAMPLE`], spread evenly) whose first
/// photo is a copy of its nearest photo of the same product in the other
/// half of the split the held-out lookups use ([`split_by_order`]): the
/// copy check a lookup runs (`p_copy` at its reporting level), the first photo's stored
/// thumbnail as the query. Products without a thumbnail or stored copy
/// features are not counted.
fn copy_share(catalog: &Catalog, images: &[(i64, i64, Vec<f32>)]) -> f64 {
    let members = members(images.iter().map(|i| i.1));
    let several: Vec<&Vec<usize>> = members.values().filter(|m| m.len() >= 2).collect();
    let n = several.len().min(COPY_SAMPLE);
    let model = crate::search::CopyModel::default();
    let is_copy = |photos: &Vec<usize>| -> Option<bool> {
        // The first photo is in the first half; the second half is what split_by_order puts there.
        let q = photos[0];
        let nearest = photos[photos.len().div_ceil(2)..]
            .iter()
            .map(|j| (images[*j].0, crate::catalog::vectors::dot(&images[q].2, &images[*j].2)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let rgb = image::load_from_memory(&catalog.records().thumbnail(images[q].0).ok()??).ok()?.to_rgb8();
        let query = crate::embed::local::describe_query(&rgb, &[], &mut fast_image_resize::Resizer::new());
        let found = crate::search::copy::rank_copies(catalog, &query, &[nearest], &model);
        Some(found.first().is_some_and(|c| c.p_copy >= model.report_at))
    };
    let checked: Vec<bool> = (0..n).into_par_iter().filter_map(|k| is_copy(several[k * several.len() / n.max(1)])).collect();
    if checked.is_empty() {
        0.0
    } else {
        checked.iter().filter(|c| **c).count() as f64 / checked.len() as f64
    }
}
