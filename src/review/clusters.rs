//! Seller networks: listings whose photos are copies of one another — one
//! seller re-posting another's photo, cropped, padded, recoloured — or of
//! the same known fake, joined into clusters an analyst reviews together.
//!
//! Each recorded case is clustered once, oldest first, after its lookup
//! answered (the lookup does not wait): its candidates are the
//! [`CLUSTER_CANDIDATES`] earlier cases nearest by the model's vector, each
//! checked with the same copy check as a lookup's against the catalog
//! ([`crate::search::copy::check_candidates`]) and linked at `p_copy` ≥
//! [`LINK_AT`]; besides those, the same photo byte for
//! byte, and the same counterfeit catalog image copied, link cases
//! outright. Links join clusters (a cluster's id is its first case's).
//! [`Clusterer`] holds the earlier cases' vectors in memory; [`ClusterWorker`]
//! runs it in the service, in the one process holding the clustering lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::listing::ListingContext;
use super::ReviewError;
pub use crate::catalog::store::{CaseLink, LinkKind};
use crate::catalog::store::{ClusterRow, ClusterWrite, KeptColumn, MemberRow, Unclustered};
use crate::catalog::vectors::{HnswIndex, IndexParams};
use crate::catalog::{Catalog, CatalogError, Page};
use crate::embed::local::{LocalFeatures, LocalParams, CATALOG};
use crate::embed::DecodeLimits;
use crate::search::copy::{check_candidates, CopyModel, References};

/// Earlier cases (nearest by the model's vector) a new case is checked against.
pub const CLUSTER_CANDIDATES: usize = 8;

/// The `p_copy` at which two cases are linked. Stricter than a lookup's
/// report threshold (0.5): a link joins whole networks, so one false link
/// costs more pairs than one missed link (a re-post usually links to
/// several of its network). Chosen on the grocery val and train streams with
/// EfficientNet-Lite0; checked on streams it was not chosen on (README).
pub const LINK_AT: f32 = 0.7;

/// A seller network: cases whose photos copy one another.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Cluster {
    /// The cluster's first case.
    pub id: i64,
    pub cases: usize,
    /// The sellers of its listings, sorted (listings without a seller are not counted).
    pub sellers: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
    /// Its listings, oldest first.
    pub listings: Vec<ClusterListing>,
    /// The photos its listings show, each with the cases that show it.
    pub photos: Vec<SharedPhoto>,
    /// Counterfeit catalog images its listings copy.
    pub copied_fakes: Vec<i64>,
    /// Why its cases are together: one entry per link found.
    pub links: Vec<CaseLink>,
}

/// A listing in a cluster.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterListing {
    pub case_id: i64,
    pub created_at: String,
    pub verdict: String,
    pub photo_sha256: String,
    pub listing: ListingContext,
}

/// A photo a cluster's listings show.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SharedPhoto {
    pub sha256: String,
    pub cases: Vec<i64>,
    /// Where to fetch it (`GET /v1/cases/{id}/photo` of its first case).
    pub url: String,
}

fn cluster_of(row: &ClusterRow, members: Vec<MemberRow>, links: Vec<CaseLink>) -> Cluster {
    let mut sellers: Vec<String> = members.iter().filter_map(|m| m.seller_id.clone()).collect();
    sellers.sort();
    sellers.dedup();
    let mut photos: Vec<SharedPhoto> = Vec::new();
    for m in &members {
        match photos.iter_mut().find(|p| p.sha256 == m.sha256) {
            Some(p) => p.cases.push(m.case),
            None => photos.push(SharedPhoto { sha256: m.sha256.clone(), cases: vec![m.case], url: format!("/v1/cases/{}/photo", m.case) }),
        }
    }
    let mut copied_fakes: Vec<i64> = members.iter().filter_map(|m| m.copied_image).collect();
    copied_fakes.sort_unstable();
    copied_fakes.dedup();
    let listings = members
        .into_iter()
        .map(|m| ClusterListing {
            case_id: m.case,
            created_at: m.created_at,
            verdict: m.verdict,
            photo_sha256: m.sha256,
            listing: serde_json::from_str(&m.context).unwrap_or_default(),
        })
        .collect();
    Cluster {
        id: row.id,
        cases: usize::try_from(row.cases).unwrap_or(0),
        sellers,
        first_seen: row.first_seen.clone(),
        last_seen: row.last_seen.clone(),
        listings,
        photos,
        copied_fakes,
        links,
    }
}

/// The most clusters one page lists.
pub const MAX_CLUSTER_PAGE: usize = 100;

/// Clusters of at least two cases, newest first (by their first case), one
/// page of `limit` after cluster `starting_after`.
pub fn list(catalog: &Catalog, limit: usize, starting_after: Option<&str>) -> Result<Page<Cluster>, ReviewError> {
    if limit == 0 || limit > MAX_CLUSTER_PAGE {
        return Err(ReviewError::Invalid { field: "limit", detail: format!("between 1 and {MAX_CLUSTER_PAGE}") });
    }
    let after = match starting_after {
        None => None,
        Some(s) => Some(
            s.parse::<i64>().map_err(|_| ReviewError::Invalid { field: "starting_after", detail: format!("a cluster id, not '{s}'") })?,
        ),
    };
    let rows = catalog.records().clusters(after, limit + 1)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let (members, links) = catalog.records().cluster_members(row.id)?;
        out.push(cluster_of(row, members, links));
    }
    Ok(Page::of(out, limit))
}

/// One cluster (`None`: no cluster of at least two cases has this id).
pub fn get(catalog: &Catalog, id: i64) -> Result<Option<Cluster>, ReviewError> {
    let (members, links) = catalog.records().cluster_members(id)?;
    if members.len() < 2 {
        return Ok(None);
    }
    let first_seen = members.iter().map(|m| m.created_at.clone()).min().unwrap_or_default();
    let last_seen = members.iter().map(|m| m.created_at.clone()).max().unwrap_or_default();
    let row = ClusterRow { id, cases: i64::try_from(members.len()).unwrap_or(i64::MAX), first_seen, last_seen };
    Ok(Some(cluster_of(&row, members, links)))
}

/// Earlier cases as the references a new case's copy check reads.
struct EarlierCases<'a>(&'a Catalog);

impl References for EarlierCases<'_> {
    type About = ();
    fn features(&self, id: i64) -> Option<(Arc<LocalFeatures>, ())> {
        let features = self.0.records().case_photo_kept(id, KeptColumn::Features).ok()??;
        Some((Arc::new(LocalFeatures::from_bytes(&features)?), ()))
    }
    fn grey(&self, id: i64) -> Option<image::GrayImage> {
        let thumbnail = self.0.records().case_photo_kept(id, KeptColumn::Thumbnail).ok()??;
        Some(image::load_from_memory(&thumbnail).ok()?.to_luma8())
    }
}

/// The counterfeit catalog image a case's answer copies (the best such copy), from its stored answer.
fn copied_fake(answer: &str) -> Option<i64> {
    let answer: serde_json::Value = serde_json::from_str(answer).ok()?;
    let copies = answer.get("copies")?.as_array()?;
    copies.iter().find(|c| c.get("label").and_then(|l| l.as_str()) == Some("counterfeit"))?.get("image_id")?.as_i64()
}

/// What one photo gives clustering: the full description to check it with,
/// and the catalog-scale features and thumbnail later cases are checked against.
struct Described {
    query: LocalFeatures,
    kept: Vec<u8>,
    thumbnail: Vec<u8>,
}

fn describe(photo: &[u8], limits: DecodeLimits) -> Option<Described> {
    let decoded = crate::embed::decode_image(photo, "case photo", limits).ok()?;
    let mut resizer = fast_image_resize::Resizer::new();
    let (regions, query) = crate::embed::query::QueryFeatures::describe_now(&decoded.rgb, &mut resizer);
    // Kept as a catalog image is, or, for a photo of content regions (a border, a card, a collage),
    // each region as one: a later copy of the picture inside is checked against the picture, not the frame.
    let kept = if regions.is_empty() {
        crate::catalog::copy_features(&decoded.rgb, &mut resizer)
    } else {
        let frame = LocalParams { max_side: 2 * CATALOG.max_side, ..CATALOG };
        LocalFeatures::extract_regions(&decoded.rgb, &regions, &frame, &mut resizer).to_bytes()
    };
    let thumbnail = crate::catalog::thumbnail(&decoded.rgb, &mut resizer);
    Some(Described { query, kept, thumbnail })
}

/// Points the index holds per case: the whole photo's vector (`id * 16`) and
/// its regions' (`id * 16 + 1 …`; at most [`crate::embed::regions::MAX_REGIONS`]).
const POINTS_PER_CASE: i64 = 16;

/// A case's region vectors from their stored form.
fn region_vectors(stored: Option<&[u8]>, dim: usize) -> Vec<Vec<f32>> {
    let all = stored.map(crate::util::f32s_from_le_bytes).unwrap_or_default();
    all.chunks_exact(dim.max(1)).take(crate::embed::regions::MAX_REGIONS).map(<[f32]>::to_vec).collect()
}

/// The clustered cases nearest to `u` by any of its vectors (the whole
/// photo's, each region's) to any of theirs: [`CLUSTER_CANDIDATES`] for the
/// whole photo and as many per region, each case once at its best similarity.
fn nearest_cases(index: &HnswIndex, u: &Unclustered) -> Vec<(i64, f32)> {
    let ef = IndexParams::default().ef_search;
    let mut best: std::collections::HashMap<i64, f32> = std::collections::HashMap::new();
    let regions = region_vectors(u.regions.as_deref(), u.embedding.len());
    for v in std::iter::once(&u.embedding).chain(&regions) {
        for (point, sim) in index.nearest(v, CLUSTER_CANDIDATES * 2, ef, None) {
            let case = point.div_euclid(POINTS_PER_CASE);
            if case != u.id {
                let e = best.entry(case).or_insert(sim);
                *e = e.max(sim);
            }
        }
    }
    let mut out: Vec<(i64, f32)> = best.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(CLUSTER_CANDIDATES * (1 + regions.len()).min(3));
    out
}

/// Clusters cases one at a time, holding the clustered cases' vectors.
pub struct Clusterer {
    model: String,
    copy: CopyModel,
    limits: DecodeLimits,
    index: Option<HnswIndex>,
    loaded_to: i64,
}

impl Clusterer {
    /// A clusterer for cases embedded by `model`, checking copies with `copy` (linked at [`LINK_AT`]).
    #[must_use]
    pub fn new(model: &str, copy: CopyModel, limits: DecodeLimits) -> Clusterer {
        Clusterer { model: model.to_string(), copy, limits, index: None, loaded_to: 0 }
    }

    /// Adds a clustered case's vectors (the whole photo's and its regions') to the index.
    fn remember(&mut self, id: i64, model: &str, v: &[f32], regions: Option<&[u8]>) -> Result<(), CatalogError> {
        self.loaded_to = self.loaded_to.max(id);
        if model != self.model || v.is_empty() {
            return Ok(());
        }
        let index = self.index.get_or_insert_with(|| HnswIndex::new(v.len(), IndexParams::default(), 1024));
        if index.dim() != v.len() {
            return Ok(());
        }
        index.add(id * POINTS_PER_CASE, v)?;
        for (k, r) in region_vectors(regions, v.len()).iter().enumerate() {
            index.add(id * POINTS_PER_CASE + 1 + k as i64, r)?;
        }
        Ok(())
    }

    /// Forgets what it held and reads every clustered case's vector again
    /// (when it takes the lease: another process may have clustered since).
    pub fn reload(&mut self, catalog: &Catalog) -> Result<(), ReviewError> {
        self.index = None;
        self.loaded_to = 0;
        loop {
            let rows = catalog.records().clustered_embeddings(self.loaded_to, 2000)?;
            let Some(last) = rows.last().map(|r| r.0) else { return Ok(()) };
            for (id, model, v, regions) in &rows {
                self.remember(*id, model, v, regions.as_deref())?;
            }
            self.loaded_to = last;
        }
    }

    /// The links case `u` has to clustered cases.
    fn links(
        &self,
        catalog: &Catalog,
        u: &Unclustered,
        described: Option<&Described>,
        fake: Option<i64>,
    ) -> Result<Vec<CaseLink>, ReviewError> {
        let pair = |other: i64| (other.min(u.id), other.max(u.id));
        let mut links = Vec::new();
        let (same_photo, same_fake) = catalog.records().cluster_anchors(u.id, &u.sha256, fake)?;
        if let Some(o) = same_photo {
            let (a, b) = pair(o);
            links.push(CaseLink { a, b, kind: LinkKind::SamePhoto, p_copy: None, image_id: None });
        }
        if let Some(o) = same_fake {
            let (a, b) = pair(o);
            links.push(CaseLink { a, b, kind: LinkKind::SameFake, p_copy: None, image_id: fake });
        }
        let (Some(d), Some(index)) = (described, &self.index) else { return Ok(links) };
        if index.dim() != u.embedding.len() {
            return Ok(links);
        }
        let candidates = nearest_cases(index, u);
        // Every candidate with enough matches gets its pixel check: several earlier cases may each be a copy.
        for c in check_candidates(&EarlierCases(catalog), &d.query, &candidates, &self.copy, candidates.len()) {
            if c.p_copy >= LINK_AT && !links.iter().any(|l| pair(c.id) == (l.a, l.b)) {
                let (a, b) = pair(c.id);
                links.push(CaseLink { a, b, kind: LinkKind::Copy, p_copy: Some(c.p_copy), image_id: None });
            }
        }
        Ok(links)
    }

    /// Clusters the oldest case waiting; returns it and the cluster it
    /// joined (`None`: no case waits).
    pub fn step(&mut self, catalog: &Catalog) -> Result<Option<(i64, i64)>, ReviewError> {
        let Some(u) = catalog.records().next_unclustered()? else { return Ok(None) };
        let described = u.photo.as_deref().and_then(|p| describe(p, self.limits));
        let fake = copied_fake(&u.answer);
        let links = self.links(catalog, &u, described.as_ref(), fake)?;
        let write = ClusterWrite {
            case: u.id,
            sha256: &u.sha256,
            features: described.as_ref().map(|d| d.kept.as_slice()),
            thumbnail: described.as_ref().map(|d| d.thumbnail.as_slice()),
            copied_image: fake,
            links: &links,
        };
        let joined = catalog.records().write_cluster(&write)?;
        self.remember(u.id, &u.model, &u.embedding, u.regions.as_deref())?;
        Ok(Some((u.id, joined.unwrap_or(u.id))))
    }

    /// Clusters every case waiting; returns how many.
    pub fn catch_up(&mut self, catalog: &Catalog) -> Result<usize, ReviewError> {
        let mut n = 0;
        while self.step(catalog)?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

/// How long the clustering lease lasts; it is renewed every third of that.
const LEASE: Duration = Duration::from_secs(30);
/// How often an idle worker looks for new cases.
const POLL: Duration = Duration::from_millis(200);

/// The service's clustering thread; dropping it stops the thread after the case in hand.
pub struct ClusterWorker {
    stop: Arc<AtomicBool>,
}

impl ClusterWorker {
    #[must_use]
    pub fn start(catalog: Arc<Catalog>, clusterer: Clusterer) -> ClusterWorker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let started = std::thread::Builder::new().name("clusters".into()).spawn(move || run(&catalog, clusterer, &flag));
        if let Err(e) = started {
            tracing::error!("cannot start the clustering thread: {e}");
        }
        ClusterWorker { stop }
    }
}

impl Drop for ClusterWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn run(catalog: &Catalog, mut clusterer: Clusterer, stop: &AtomicBool) {
    let owner = crate::util::new_id("clusterer");
    let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(30_000);
    let mut held_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if held_since.is_none_or(|t| t.elapsed() > LEASE / 3) {
            match catalog.records().claim_clustering(&owner, lease_ms) {
                Ok(true) if held_since.is_some() => held_since = Some(Instant::now()),
                Ok(true) => match clusterer.reload(catalog) {
                    Ok(()) => held_since = Some(Instant::now()),
                    Err(e) => tracing::warn!("clustering: reading the clustered cases: {e}"),
                },
                Ok(false) => held_since = None,
                Err(e) => tracing::warn!("clustering: {e}"),
            }
            if held_since.is_none() {
                std::thread::sleep(LEASE / 3);
                continue;
            }
        }
        match clusterer.step(catalog) {
            Ok(Some((case, cluster))) if case != cluster => tracing::info!(case, cluster, "case joined a seller network"),
            Ok(Some(_)) => {}
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                tracing::warn!("clustering: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_a_case_copies_is_its_best_copy_of_a_counterfeit_image() {
        let answer = r#"{"copies": [{"image_id": 4, "label": "authentic"}, {"image_id": 9, "label": "counterfeit"}, {"image_id": 11, "label": "counterfeit"}]}"#;
        assert_eq!(copied_fake(answer), Some(9));
        assert_eq!(copied_fake(r#"{"copies": [{"image_id": 4, "label": "authentic"}]}"#), None);
        assert_eq!(copied_fake(r#"{"copies": []}"#), None);
        assert_eq!(copied_fake("not json"), None);
    }

    #[test]
    fn region_vectors_come_back_in_order_and_a_torn_tail_is_dropped() {
        let stored = crate::util::f32s_to_le_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(region_vectors(Some(&stored), 2), vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert!(region_vectors(None, 2).is_empty());
    }
}
