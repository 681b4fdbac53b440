//! Seller networks, measured: `knockoff eval --networks N` plays the query
//! photos as a marketplace stream in which `N` of them are each posted by
//! one seller and re-posted by `--reposts` others, each re-post edited the
//! way resellers edit (every edit of [`crate::synth::copies::EDITS`], in
//! turn), among the other query photos posted once each by sellers of their
//! own (other photos of the same products among them: the hard case). Every
//! listing is looked up and recorded as a case ([`crate::review::record`])
//! and clustered at once ([`Clusterer::step`], timed), as the service does.
//!
//! Reported: pairwise precision (of the pairs of listings put in one
//! cluster, the share that truly share a photo) and recall (of the pairs
//! that do, the share put together), per edit the re-posts that joined
//! their network, and the time one listing takes to join, after
//! `--filler-cases` earlier cases (random vectors, no photo) fill the store.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError};
use crate::embed::{DecodeLimits, Embedder};
use crate::ingest::Query;
use crate::review::{self, Clusterer, ListingContext, Seen};
use crate::search::{SearchRequest, VerdictConfig};
use crate::synth::copies::{apply, Rng, EDITS};

/// The stream's make-up.
#[derive(Debug, Clone, Copy)]
pub struct NetworkOptions {
    pub networks: usize,
    pub reposts: usize,
    /// Other photos posted once each (at most).
    pub unrelated: usize,
    pub filler: usize,
    pub seed: u64,
}

/// What one stream measured.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkReport {
    pub model: String,
    pub listings: usize,
    pub networks: usize,
    pub reposts_per_network: usize,
    pub unrelated: usize,
    pub filler_cases: usize,
    /// Pairs of listings that share a photo, that were put in one cluster, and both.
    pub pairs_true: usize,
    pub pairs_found: usize,
    pub pairs_right: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Networks found whole (every listing in one cluster, nothing else in it).
    pub networks_whole: usize,
    /// Per edit: re-posts that joined their network, of those made.
    pub reposts_joined: BTreeMap<&'static str, [usize; 2]>,
    /// Milliseconds one listing took to be clustered (p50, p99, max).
    pub join_ms: [f64; 3],
    /// Listings that could not be read or looked up.
    pub failed: usize,
    /// Links between listings that share no photo (at most 20): what joined them, and their sellers.
    pub wrong_links: Vec<(crate::review::clusters::CaseLink, String, String)>,
}

/// One listing of the stream: its photo, who posted it, which network it belongs to (`None`: unrelated), and its edit.
struct Listing {
    bytes: Vec<u8>,
    seller: String,
    network: Option<usize>,
    edit: Option<&'static str>,
}

fn jpeg(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = jpeg_encoder::Encoder::new(&mut out, 90).encode(
        img.as_raw(),
        img.width() as u16,
        img.height() as u16,
        jpeg_encoder::ColorType::Rgb,
    );
    out
}

/// The stream: each source's original and re-posts, and the unrelated photos, in a fixed mixed order.
fn stream(queries: &[Query], o: &NetworkOptions) -> Vec<Listing> {
    let fetch = crate::ingest::FetchOptions { allow_private: true, ..Default::default() };
    let mut order: Vec<&Query> = queries.iter().collect();
    order.sort_by_cached_key(|q| crate::util::sha256_hex(format!("{}{}", o.seed, q.image).as_bytes()));
    let read = |q: &&Query| crate::ingest::fetch(&q.image, &fetch).ok();
    let decode = |b: &Vec<u8>| crate::embed::decode_image(b, "photo", DecodeLimits::default()).ok().map(|d| d.rgb);
    // A collage's other tiles: photos the stream does not otherwise show (else the collage truly
    // copies them), a few of its own per network (else two networks' collages share a tile).
    let pool = (4 * o.networks).min(order.len() / 4).max(1);
    let unrelated = o.unrelated.min(order.len().saturating_sub(o.networks + pool));
    let photos: Vec<Vec<u8>> = order.iter().take(o.networks + unrelated).filter_map(read).collect();
    let decoded: Vec<image::RgbImage> = photos.iter().take(o.networks).filter_map(decode).collect();
    let tiles: Vec<image::RgbImage> = order.iter().rev().take(pool).filter_map(read).filter_map(|b| decode(&b)).collect();
    let per_network = (tiles.len() / o.networks.max(1)).max(1);
    let mut rng = Rng::new(o.seed);
    let mut out = Vec::new();
    for (n, src) in decoded.iter().enumerate() {
        out.push(Listing { bytes: jpeg(src), seller: format!("net{n}-seller0"), network: Some(n), edit: None });
        let others: Vec<&image::RgbImage> = tiles.iter().cycle().skip(n * per_network).take(per_network.min(tiles.len())).collect();
        for r in 0..o.reposts {
            let edit = EDITS[(n * o.reposts + r) % EDITS.len()];
            let image = apply(edit, src, &others, &mut rng).image;
            out.push(Listing { bytes: jpeg(&image), seller: format!("net{n}-seller{}", r + 1), network: Some(n), edit: Some(edit.name()) });
        }
    }
    for (i, bytes) in photos.into_iter().skip(decoded.len()).enumerate() {
        out.push(Listing { bytes, seller: format!("seller-u{i}"), network: None, edit: None });
    }
    out.sort_by_cached_key(|l| crate::util::sha256_hex(&l.bytes));
    out
}

/// Records `n` cases with random vectors and no readable photo, clustered, before the stream.
fn fill(
    catalog: &Catalog,
    embedder: &Embedder,
    clusterer: &mut Clusterer,
    n: usize,
    log: &mut dyn FnMut(String),
) -> Result<(), CatalogError> {
    let mut rng = Rng::new(7);
    let context = ListingContext { seller_id: Some("filler".into()), ..Default::default() };
    for i in 0..n {
        let v = crate::embed::l2_normalize((0..embedder.dim()).map(|_| rng.range(-1.0, 1.0)).collect());
        let described = crate::embed::Described { vector: v, copy: None, regions: Vec::new() };
        let answer = crate::search::lookup(catalog, &described, &SearchRequest::default(), &VerdictConfig::default())?;
        let photo = format!("filler case {i}").into_bytes();
        let sha256 = crate::util::sha256_hex(&photo);
        let seen = Seen {
            photo: &photo,
            sha256: &sha256,
            embedding: &described.vector,
            regions: &[],
            model: embedder.name(),
            answer: &answer,
            context: &context,
            calibration: None,
        };
        review::record(catalog, &seen).map_err(review_error)?;
        if (i + 1) % 10_000 == 0 {
            clusterer.catch_up(catalog).map_err(review_error)?;
            log(format!("{} filler cases recorded", i + 1));
        }
    }
    clusterer.catch_up(catalog).map_err(review_error)?;
    Ok(())
}

fn review_error(e: review::ReviewError) -> CatalogError {
    match e {
        review::ReviewError::Catalog(c) => c,
        other => CatalogError::Engine { engine: "review", detail: other.to_string() },
    }
}

/// Plays the stream (see the module doc) on `catalog`, whose record store must hold no cases yet.
pub fn measure(
    catalog: &Catalog,
    embedder: &Embedder,
    queries: &[Query],
    verdict: &VerdictConfig,
    o: &NetworkOptions,
    log: &mut dyn FnMut(String),
) -> Result<NetworkReport, CatalogError> {
    let mut clusterer = Clusterer::new(embedder.name(), verdict.copy, DecodeLimits::default());
    fill(catalog, embedder, &mut clusterer, o.filler, log)?;
    let listings = stream(queries, o);
    log(format!("{} listings in the stream", listings.len()));
    let (mut seen, mut times, mut failed) = (Vec::new(), Vec::new(), 0);
    for (i, l) in listings.iter().enumerate() {
        let Ok(described) = embedder.describe_bytes(&l.bytes, "listing") else {
            failed += 1;
            continue;
        };
        let answer = crate::search::lookup(catalog, &described, &SearchRequest::default(), verdict)?;
        let sha256 = crate::util::sha256_hex(&l.bytes);
        let context = ListingContext { seller_id: Some(l.seller.clone()), listing_id: Some(format!("listing-{i}")), ..Default::default() };
        let case = Seen {
            photo: &l.bytes,
            sha256: &sha256,
            embedding: &described.vector,
            regions: &described.regions,
            model: embedder.name(),
            answer: &answer,
            context: &context,
            calibration: None,
        };
        let id = review::record(catalog, &case).map_err(review_error)?;
        let t = Instant::now();
        clusterer.catch_up(catalog).map_err(review_error)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        seen.push((id, l));
    }
    let clusters: Vec<i64> =
        seen.iter().map(|(id, _)| catalog.records().case_cluster(*id).map(|c| c.unwrap_or(*id))).collect::<Result<_, _>>()?;
    let mut report = score(embedder.name(), o, &seen, &clusters, times, failed);
    let mut found: Vec<i64> = clusters.clone();
    found.sort_unstable();
    found.dedup();
    let of = |id: i64| seen.iter().find(|(c, _)| *c == id).map(|(_, l)| l);
    for c in found {
        for link in catalog.records().cluster_members(c)?.1 {
            let (Some(a), Some(b)) = (of(link.a), of(link.b)) else { continue };
            if (a.network.is_none() || a.network != b.network) && report.wrong_links.len() < 20 {
                report.wrong_links.push((link, a.seller.clone(), b.seller.clone()));
            }
        }
    }
    Ok(report)
}

fn score(model: &str, o: &NetworkOptions, seen: &[(i64, &Listing)], clusters: &[i64], mut times: Vec<f64>, failed: usize) -> NetworkReport {
    let (mut pairs_true, mut pairs_found, mut pairs_right) = (0, 0, 0);
    for i in 0..seen.len() {
        for j in i + 1..seen.len() {
            let truly = seen[i].1.network.is_some() && seen[i].1.network == seen[j].1.network;
            let found = clusters[i] == clusters[j];
            pairs_true += usize::from(truly);
            pairs_found += usize::from(found);
            pairs_right += usize::from(truly && found);
        }
    }
    let mut reposts_joined: BTreeMap<&'static str, [usize; 2]> = BTreeMap::new();
    let mut networks_whole = 0;
    for n in 0..o.networks {
        let members: Vec<usize> = (0..seen.len()).filter(|&i| seen[i].1.network == Some(n)).collect();
        let Some(&origin) = members.iter().find(|&&i| seen[i].1.edit.is_none()) else { continue };
        for &m in &members {
            if let Some(edit) = seen[m].1.edit {
                let e = reposts_joined.entry(edit).or_default();
                e[0] += usize::from(clusters[m] == clusters[origin]);
                e[1] += 1;
            }
        }
        let c = clusters[members[0]];
        let whole = members.iter().all(|&m| clusters[m] == c) && clusters.iter().filter(|&&x| x == c).count() == members.len();
        networks_whole += usize::from(whole);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    NetworkReport {
        model: model.to_string(),
        listings: seen.len(),
        networks: o.networks,
        reposts_per_network: o.reposts,
        unrelated: seen.iter().filter(|(_, l)| l.network.is_none()).count(),
        filler_cases: o.filler,
        pairs_true,
        pairs_found,
        pairs_right,
        precision: ratio(pairs_right, pairs_found),
        recall: ratio(pairs_right, pairs_true),
        networks_whole,
        reposts_joined,
        join_ms: [at(0.5), at(0.99), at(1.0)],
        failed,
        wrong_links: Vec::new(),
    }
}
