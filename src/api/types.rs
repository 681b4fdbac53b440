//! Request and response bodies of the HTTP API, kept apart from the
//! library's types: each response type converts from the library's result
//! with `From`, and only these types carry `OpenAPI` schemas.

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogStats, ImageRecord, Product};
use crate::search;

pub use super::pages::{JobAccepted, JobView};

/// Whether a product's reference photos show the genuine article or a known fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Authentic,
    Counterfeit,
}

impl From<crate::catalog::Label> for Label {
    fn from(l: crate::catalog::Label) -> Self {
        match l {
            crate::catalog::Label::Authentic => Label::Authentic,
            crate::catalog::Label::Counterfeit => Label::Counterfeit,
        }
    }
}

impl From<Label> for crate::catalog::Label {
    fn from(l: Label) -> Self {
        match l {
            Label::Authentic => crate::catalog::Label::Authentic,
            Label::Counterfeit => crate::catalog::Label::Counterfeit,
        }
    }
}

/// What a marketplace acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    LikelyAuthentic,
    LikelyCounterfeit,
    Uncertain,
    NoMatch,
}

impl From<search::VerdictKind> for Verdict {
    fn from(v: search::VerdictKind) -> Self {
        match v {
            search::VerdictKind::LikelyAuthentic => Verdict::LikelyAuthentic,
            search::VerdictKind::LikelyCounterfeit => Verdict::LikelyCounterfeit,
            search::VerdictKind::Uncertain => Verdict::Uncertain,
            search::VerdictKind::NoMatch => Verdict::NoMatch,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupParams {
    /// Products to return (1 to the service's `max_k`, 100 unless configured; default 5).
    #[param(minimum = 1, maximum = 100, default = 5)]
    pub k: Option<usize>,
    pub brand: Option<String>,
    pub label: Option<Label>,
    pub category: Option<String>,
    /// Also return `explain`: the photo and the catalog image it copies side
    /// by side, the copied region and the matched points drawn (PNG data URL).
    pub explain: Option<bool>,
    /// Keep this lookup as a review case (default: when listing context is
    /// given; the service's `[cases] record` setting decides otherwise).
    pub record: Option<bool>,
    /// Listing context: the marketplace listing the photo comes from (any of these makes the lookup a case by default).
    pub listing_id: Option<String>,
    pub seller_id: Option<String>,
    pub marketplace: Option<String>,
    pub listing_url: Option<String>,
    pub title: Option<String>,
    pub price: Option<f64>,
    /// Three-letter currency code of `price`.
    pub currency: Option<String>,
}

/// A photo given in JSON: exactly one of the two.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageJson {
    pub image_base64: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timing {
    pub embed_ms: f64,
    pub search_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueryInfo {
    pub sha256: String,
    pub bytes: usize,
    pub model: String,
    pub timing: Timing,
}

/// One matched product: the same shape as `knockoff search --json` and
/// eval's per-query records print ([`search::Match`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MatchOut {
    pub product_id: String,
    pub label: Label,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    pub image_id: i64,
    pub similarity: f32,
    pub confidence: f32,
}

impl From<search::Match> for MatchOut {
    fn from(m: search::Match) -> Self {
        MatchOut {
            product_id: m.product_id,
            label: m.label.into(),
            brand: m.brand,
            name: m.name,
            category: m.category,
            image_id: m.image_id,
            similarity: m.similarity,
            confidence: m.confidence,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LookupResponse {
    pub query: QueryInfo,
    pub matches: Vec<MatchOut>,
    /// Probability that the photo shows a counterfeit-labelled catalog product.
    pub p_counterfeit: f32,
    /// Probability that it shows an authentic-labelled catalog product.
    pub p_authentic: f32,
    /// Probability that it shows none of the catalog's products (the three sum to 1).
    pub p_no_match: f32,
    pub verdict: Verdict,
    /// One plain sentence an analyst can act on.
    pub summary: String,
    /// The facts the verdict rests on: probabilities, thresholds, the top product, the nearest references, the copy.
    pub evidence: search::Evidence,
    /// Deprecated alias of `summary` (the same string), kept one release.
    #[schema(deprecated)]
    pub reason: String,
    /// Catalog images the photo is a copy of (reuses, possibly edited), best first.
    pub copies: Vec<CopyOut>,
    /// With `explain=true` and a copy found: a PNG data URL showing why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
    /// The review case this lookup was recorded as (`GET /v1/cases/{id}`), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<i64>,
}

/// A catalog image the photo copies ([`search::CopyMatch`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CopyOut {
    pub image_id: i64,
    pub product_id: String,
    pub label: Label,
    /// Probability that the photo is a copy of this image, not just another photo of the product.
    pub p_copy: f32,
    /// Where the image appears in the photo, 0–1 from the top left.
    pub region: search::Region,
    /// Matched points the geometric check explains.
    pub inliers: usize,
    /// Pixel correlation between the photo and the image warped onto it (null when not compared).
    pub correlation: Option<f32>,
    pub mirrored: bool,
    /// The image's similarity to the photo under the model.
    pub similarity: f32,
}

impl From<search::CopyMatch> for CopyOut {
    fn from(c: search::CopyMatch) -> Self {
        CopyOut {
            image_id: c.image_id,
            product_id: c.product_id,
            label: c.label.into(),
            p_copy: c.p_copy,
            region: c.region,
            inliers: c.inliers,
            correlation: c.correlation,
            mirrored: c.mirrored,
            similarity: c.similarity,
        }
    }
}

impl LookupResponse {
    #[must_use]
    pub fn new(query: QueryInfo, lookup: search::Lookup) -> Self {
        LookupResponse {
            query,
            matches: lookup.matches.into_iter().map(MatchOut::from).collect(),
            p_counterfeit: lookup.p_counterfeit,
            p_authentic: lookup.p_authentic,
            p_no_match: lookup.p_no_match,
            verdict: lookup.verdict.into(),
            summary: lookup.summary,
            evidence: lookup.evidence,
            reason: lookup.reason,
            copies: lookup.copies.into_iter().map(CopyOut::from).collect(),
            explain: None,
            case_id: None,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductIn {
    pub label: Label,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl ProductIn {
    #[must_use]
    pub fn into_product(self, product_id: String) -> Product {
        Product {
            product_id,
            label: self.label.into(),
            brand: self.brand,
            name: self.name,
            category: self.category,
            attributes: self.attributes,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImageOut {
    pub image_id: i64,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub source: String,
    pub added_at: String,
}

impl From<ImageRecord> for ImageOut {
    fn from(i: ImageRecord) -> Self {
        ImageOut { image_id: i.id, sha256: i.sha256, width: i.width, height: i.height, source: i.source, added_at: i.added_at }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductOut {
    pub product_id: String,
    pub label: Label,
    pub brand: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub images: Vec<ImageOut>,
}

impl ProductOut {
    #[must_use]
    pub fn new(p: Product, images: Vec<ImageRecord>) -> Self {
        ProductOut {
            product_id: p.product_id,
            label: p.label.into(),
            brand: p.brand,
            name: p.name,
            category: p.category,
            attributes: p.attributes,
            images: images.into_iter().map(ImageOut::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddImageOut {
    pub product_id: String,
    /// The new image's id (`null` when these bytes were already indexed for the product).
    pub image_id: Option<i64>,
    pub already_indexed: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeletedOut {
    pub deleted_images: usize,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub images: Vec<ImageJson>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<LookupResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchItem>,
}

/// An error (RFC 9457 problem details), served as `application/problem+json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem, e.g. `https://knockoff.dev/problems/invalid-image/truncated`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The same kind as a stable identifier a program can switch on, e.g. `invalid_parameter`, `image_truncated`.
    pub code: String,
    /// The query or path parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request's `x-request-id` (given or made), to quote in a support request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LabelCount {
    pub label: String,
    pub products: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BrandCount {
    /// Empty for products without a brand.
    pub brand: String,
    pub products: i64,
}

/// Catalog counts and index settings (no storage details).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsOut {
    pub model: String,
    pub dim: usize,
    pub products: i64,
    pub images: i64,
    /// Deleted images awaiting compaction.
    pub tombstones: i64,
    pub per_label: Vec<LabelCount>,
    pub per_brand: Vec<BrandCount>,
    /// Points in the vector graph (tombstones included).
    pub graph_points: usize,
    pub hnsw_m: usize,
    pub hnsw_ef_construction: usize,
    pub hnsw_ef_search: usize,
    /// Id of the learned projection the graph is built in (`knockoff tune`), if any.
    pub projection: Option<String>,
    /// What lookups are calibrated with (refitted in the background as the catalog grows).
    pub calibration: Option<CalibrationOut>,
    /// Background refits this server began and finished, and verdict settings it swapped in.
    pub refits: Option<crate::fit::refit::RefitCounts>,
}

/// What an index is calibrated with, and when.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CalibrationOut {
    pub file: String,
    pub fitted_at: String,
    pub fitted_on: String,
    pub n_queries: usize,
    pub presence: bool,
    pub counterfeit_thresholds: bool,
    /// The verdict thresholds lookups use (above 1: never), at the rates the service states.
    pub thresholds: crate::search::calibration::ThresholdsInUse,
}

impl From<crate::search::calibration::CalibrationInfo> for CalibrationOut {
    fn from(c: crate::search::calibration::CalibrationInfo) -> Self {
        CalibrationOut {
            file: c.file,
            fitted_at: c.fitted_at,
            fitted_on: c.fitted_on,
            n_queries: c.n_queries,
            presence: c.presence,
            counterfeit_thresholds: c.counterfeit_thresholds,
            thresholds: c.thresholds,
        }
    }
}

impl From<CatalogStats> for StatsOut {
    fn from(s: CatalogStats) -> Self {
        StatsOut {
            model: s.model,
            dim: s.dim,
            products: s.counts.products,
            images: s.counts.images,
            tombstones: s.counts.tombstones,
            per_label: s.counts.per_label.into_iter().map(|(label, products)| LabelCount { label, products }).collect(),
            per_brand: s.counts.per_brand.into_iter().map(|(brand, products)| BrandCount { brand, products }).collect(),
            graph_points: s.graph_points,
            hnsw_m: s.params.m,
            hnsw_ef_construction: s.params.ef_construction,
            hnsw_ef_search: s.params.ef_search,
            projection: s.projection.map(|p| p.id),
            calibration: None,
            refits: None,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub ready: bool,
    pub model: String,
    pub images: usize,
    /// What an operator should know although the service answers: an empty
    /// catalog (every lookup is `no_match` until images are added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_match_has_one_json_shape_in_the_library_and_the_api() {
        let m = search::Match {
            product_id: "p".into(),
            label: crate::catalog::Label::Counterfeit,
            brand: Some("b".into()),
            name: None,
            category: Some("c".into()),
            image_id: 7,
            similarity: 0.5,
            confidence: 0.25,
            second: None,
            score: 0.5,
        };
        assert_eq!(serde_json::to_value(MatchOut::from(m.clone())).unwrap(), serde_json::to_value(&m).unwrap());
        for l in [crate::catalog::Label::Authentic, crate::catalog::Label::Counterfeit] {
            assert_eq!(serde_json::to_value(Label::from(l)).unwrap(), serde_json::to_value(l).unwrap());
        }
        for v in [
            search::VerdictKind::LikelyAuthentic,
            search::VerdictKind::LikelyCounterfeit,
            search::VerdictKind::Uncertain,
            search::VerdictKind::NoMatch,
        ] {
            assert_eq!(serde_json::to_value(Verdict::from(v)).unwrap(), serde_json::to_value(v).unwrap());
        }
    }
}
