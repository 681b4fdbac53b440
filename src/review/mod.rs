//! The review loop: a lookup becomes a case ([`record`]); analysts list the
//! cases worth a look ([`list`]) and decide them ([`decide`], [`undo`]); a
//! decision teaches the catalog at once (the listing photo becomes a
//! reference of the product, or of the counterfeit product imitating it).
//! One home for each step: the HTTP routes and the review page only
//! translate. The records themselves are [`crate::catalog::store`]'s
//! `cases` kind.
//!
//! Review priority (highest first): a photo that copies a counterfeit
//! reference, then an `uncertain` answer, each ordered by `p_counterfeit`
//! ([`priority`]).

pub mod clusters;
mod decide;
mod error;
mod evidence;
mod listing;

pub use clusters::{Cluster, ClusterWorker, Clusterer};
pub use decide::{decide, repair, undo, upkeep, Decision, DecisionInput};
pub use error::ReviewError;
pub use evidence::evidence_pack;
pub use listing::{ListingContext, MAX_CONTEXT_CHARS};

use serde::{Deserialize, Serialize};

use crate::catalog::store::{AuditRow, CaseQuery, CaseRow, DecisionRow, NewCase};
use crate::catalog::{Catalog, CatalogError, Label, Page};
use crate::search::{Lookup, VerdictKind};

/// When a lookup is recorded as a case (`[cases] record`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordPolicy {
    /// Every lookup.
    Always,
    /// Lookups that carry listing context, or ask with `record=true` (the default).
    #[default]
    Listing,
    /// Only lookups that ask with `record=true`.
    Asked,
}

impl RecordPolicy {
    /// Whether a lookup with this context (and `record` as asked) becomes a case.
    #[must_use]
    pub fn records(self, context: &ListingContext, asked: Option<bool>) -> bool {
        match (asked, self) {
            (Some(asked), _) => asked,
            (None, RecordPolicy::Always) => true,
            (None, RecordPolicy::Listing) => !context.is_empty(),
            (None, RecordPolicy::Asked) => false,
        }
    }
}

/// The `[cases]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasesConfig {
    pub record: RecordPolicy,
    /// Case photos stored longer ago than this are dropped (decisions and the audit trail stay).
    pub keep_photos_days: u32,
}

impl Default for CasesConfig {
    fn default() -> Self {
        CasesConfig { record: RecordPolicy::Listing, keep_photos_days: 90 }
    }
}

/// How much reviewing an answer is worth: a copy of a counterfeit reference
/// first, then `uncertain` answers, each by `p_counterfeit` (in millionths).
#[must_use]
pub fn priority(answer: &Lookup) -> i64 {
    let copies_fake = answer.copies.iter().any(|c| c.label == Label::Counterfeit);
    let uncertain = answer.verdict == VerdictKind::Uncertain;
    i64::from(copies_fake) * 2_000_000 + i64::from(uncertain) * 1_000_000 + crate::catalog::store::ppm(answer.p_counterfeit)
}

/// A lookup to record: the photo, its model vector and what it was answered.
pub struct Seen<'a> {
    pub photo: &'a [u8],
    pub sha256: &'a str,
    pub embedding: &'a [f32],
    /// The vectors of its content regions (a collage's tiles, the picture inside a border), if any.
    pub regions: &'a [Vec<f32>],
    pub model: &'a str,
    pub answer: &'a Lookup,
    pub context: &'a ListingContext,
    /// When the calibration in force was fitted (`None`: the model's shipped one).
    pub calibration: Option<&'a str>,
}

/// Records a lookup as a case; returns its id.
pub fn record(catalog: &Catalog, seen: &Seen<'_>) -> Result<i64, ReviewError> {
    let answer = serde_json::to_string(seen.answer).map_err(|e| CatalogError::Engine { engine: "review", detail: e.to_string() })?;
    let context = serde_json::to_string(seen.context).map_err(|e| CatalogError::Engine { engine: "review", detail: e.to_string() })?;
    let top = seen.answer.matches.first();
    let verdict = seen.answer.verdict.as_str();
    let id = catalog.records().add_case(&NewCase {
        photo: seen.photo,
        sha256: seen.sha256,
        embedding: seen.embedding,
        regions: seen.regions,
        model: seen.model,
        context: &context,
        answer: &answer,
        verdict,
        p_counterfeit: seen.answer.p_counterfeit,
        priority: priority(seen.answer),
        brand: top.and_then(|m| m.brand.as_deref()),
        top_product: top.map(|m| m.product_id.as_str()),
        seller_id: seen.context.seller_id.as_deref(),
        catalog_generation: catalog.records().generation()?,
        calibration: seen.calibration,
    })?;
    Ok(id)
}

/// A case as every front-end shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Case {
    pub id: i64,
    pub created_at: String,
    /// `open`, `decided` or `skipped`.
    pub status: String,
    /// Bumped by every decision and undo; the HTTP `ETag`.
    pub version: i64,
    pub verdict: String,
    pub p_counterfeit: f32,
    /// Review priority (higher first; see [`priority`]).
    pub priority: i64,
    pub brand: Option<String>,
    pub top_product: Option<String>,
    /// The listing context (`ListingContext`).
    #[schema(value_type = Object)]
    pub context: serde_json::Value,
    /// The answer the lookup got (`LookupResponse` without query, timing and picture).
    #[schema(value_type = Object)]
    pub answer: serde_json::Value,
    pub photo_sha256: String,
    pub model: String,
    pub catalog_generation: u64,
    pub calibration: Option<String>,
    pub decision: Option<DecisionRow>,
    /// The seller network the case is in: the id of `GET /v1/clusters/{id}`
    /// (null until it is clustered, moments after the lookup; its own id while no other case copies its photo).
    pub cluster_id: Option<i64>,
    /// That network, when it holds other cases (only when one case is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    /// Decisions and undos, oldest first (only when one case is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Vec<AuditRow>>,
}

impl From<CaseRow> for Case {
    fn from(c: CaseRow) -> Case {
        Case {
            id: c.id,
            created_at: c.created_at,
            status: c.status,
            version: c.version,
            verdict: c.verdict,
            p_counterfeit: c.p_counterfeit,
            priority: c.priority,
            brand: c.brand,
            top_product: c.top_product,
            context: serde_json::from_str(&c.context).unwrap_or_default(),
            answer: serde_json::from_str(&c.answer).unwrap_or_default(),
            photo_sha256: c.sha256,
            model: c.model,
            catalog_generation: c.catalog_generation,
            calibration: c.calibration,
            decision: c.decision,
            cluster_id: c.cluster,
            cluster: None,
            audit: None,
        }
    }
}

/// One case with its audit trail.
pub fn get(catalog: &Catalog, id: i64) -> Result<Case, ReviewError> {
    let row = catalog.records().case(id)?.ok_or(ReviewError::UnknownCase(id))?;
    let mut case = Case::from(row);
    case.audit = Some(catalog.records().case_audit(id)?);
    case.cluster = match case.cluster_id {
        Some(c) => clusters::get(catalog, c)?,
        None => None,
    };
    Ok(case)
}

/// The most cases one page lists.
pub const MAX_PAGE: usize = 200;

/// The cases `q` asks for, one page of `q.limit`, after the case
/// `starting_after` (the last of the previous page) in the order `q.sort` asks for.
pub fn list(catalog: &Catalog, mut q: CaseQuery, starting_after: Option<&str>) -> Result<Page<Case>, ReviewError> {
    let limit = q.limit;
    if limit == 0 || limit > MAX_PAGE {
        return Err(ReviewError::Invalid { field: "limit", detail: format!("between 1 and {MAX_PAGE}") });
    }
    q.after = match starting_after {
        None => None,
        Some(s) => {
            let unknown = || ReviewError::Invalid { field: "starting_after", detail: format!("names no case ('{s}')") };
            let id: i64 = s.parse().map_err(|_| unknown())?;
            Some((catalog.records().case(id)?.ok_or_else(unknown)?.priority, id))
        }
    };
    q.limit = limit + 1;
    let rows = catalog.records().cases(&q)?;
    Ok(Page::of(rows.into_iter().map(Case::from).collect(), limit))
}

/// A case's photo bytes (`None`: purged by retention).
pub fn photo(catalog: &Catalog, id: i64) -> Result<Option<Vec<u8>>, ReviewError> {
    Ok(catalog.records().case_photo(id)?.ok_or(ReviewError::UnknownCase(id))?.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_is_recorded_when_it_carries_a_listing_or_asks() {
        let listing = ListingContext { seller_id: Some("s1".into()), ..Default::default() };
        let none = ListingContext::default();
        assert!(RecordPolicy::Listing.records(&listing, None));
        assert!(!RecordPolicy::Listing.records(&none, None));
        assert!(RecordPolicy::Listing.records(&none, Some(true)));
        assert!(!RecordPolicy::Always.records(&listing, Some(false)));
        assert!(RecordPolicy::Always.records(&none, None));
        assert!(!RecordPolicy::Asked.records(&listing, None));
    }
}
