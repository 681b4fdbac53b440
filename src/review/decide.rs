//! Deciding a case, and undoing a decision. A decision on a product teaches
//! the catalog at once: the listing photo becomes a reference image (source
//! `case:<id>`, so it can be told apart from the brand's own references)
//! of the product, or, for a counterfeit of an authentic product, of the
//! counterfeit product linked to it (`<product_id>~counterfeit`, created
//! with the same brand when missing).
//!
//! The reference is added before the decision is recorded, and removed
//! again if recording fails (a stale version, an engine error); a process
//! that stops in between leaves a reference no case names, which [`repair`]
//! removes at the next start. An undo records first, then removes.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{get, Case, CasesConfig, ReviewError};
use crate::catalog::store::{CasePhoto, CaseRow, DecisionRow, DecisionWrite, Versioned};
use crate::catalog::{check_product_id, Catalog, CatalogError, Label, NewImage, Product, LISTING_SOURCE_PREFIX};
use crate::embed::DecodeLimits;

/// What an analyst decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The photo shows a counterfeit (of `product_id`, or of the top match).
    Counterfeit,
    /// The photo shows the authentic product.
    Authentic,
    /// The photo shows none of the catalog's products.
    NotInCatalog,
    /// Not decided now; out of the open queue.
    Skip,
}

impl Decision {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Counterfeit => "counterfeit",
            Decision::Authentic => "authentic",
            Decision::NotInCatalog => "not_in_catalog",
            Decision::Skip => "skip",
        }
    }
}

/// A decision as an analyst sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    pub decision: Decision,
    /// The product the photo shows (default: the answer's top match).
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// One decision at a time in this process (two analysts on one case: the second is stale).
static DECIDING: Mutex<()> = Mutex::new(());

/// Decides case `id`, which the analyst read at `expected_version`; the photo
/// becomes a reference as the module doc says. Returns the case as it is now.
pub fn decide(
    catalog: &Catalog,
    limits: DecodeLimits,
    id: i64,
    expected_version: i64,
    actor: Option<&str>,
    input: &DecisionInput,
) -> Result<Case, ReviewError> {
    let _one = DECIDING.lock();
    let row = current(catalog, id, expected_version)?;
    if row.decision.is_some() {
        return Err(ReviewError::Invalid { field: "decision", detail: format!("case {id} is decided already; undo that decision first") });
    }
    if let Some(note) = &input.note {
        if note.chars().count() > MAX_NOTE_CHARS || note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ReviewError::Invalid { field: "note", detail: format!("at most {MAX_NOTE_CHARS} printable characters") });
        }
    }
    let product = match input.decision {
        Decision::Counterfeit | Decision::Authentic => Some(product_of(catalog, &row, input)?),
        Decision::NotInCatalog | Decision::Skip => None,
    };
    let target = match (input.decision, product) {
        (Decision::Counterfeit, Some(p)) => Some(counterfeit_of(catalog, p)?),
        (Decision::Authentic, Some(p)) if p.label == Label::Counterfeit => {
            let detail = format!("product '{}' is labelled counterfeit; an authentic photo of it cannot be", p.product_id);
            return Err(ReviewError::Invalid { field: "product_id", detail });
        }
        (_, p) => p,
    };
    let reference = match &target {
        Some(p) => add_reference(catalog, limits, &row, p)?,
        None => None,
    };
    let decision = DecisionRow {
        decision: input.decision.as_str().into(),
        product_id: target.as_ref().map(|p| p.product_id.clone()),
        note: input.note.clone(),
        by: actor.map(str::to_string),
        at: crate::util::now_rfc3339(),
        reference_image: reference,
    };
    let status = if input.decision == Decision::Skip { "skipped" } else { "decided" };
    let write = DecisionWrite { case: id, expected_version, actor, decision: Some(&decision), status };
    let written = catalog.records().write_decision(&write);
    if !matches!(written, Ok(Versioned::Written(_))) {
        if let Some(image) = reference {
            remove_reference(catalog, image);
        }
    }
    versioned(id, written?)?;
    get(catalog, id)
}

/// Undoes case `id`'s decision (read at `expected_version`): the case is
/// open again and the reference it added is removed.
pub fn undo(catalog: &Catalog, id: i64, expected_version: i64, actor: Option<&str>) -> Result<Case, ReviewError> {
    let _one = DECIDING.lock();
    let row = current(catalog, id, expected_version)?;
    let Some(decided) = row.decision else { return Err(ReviewError::NotDecided(id)) };
    let write = DecisionWrite { case: id, expected_version, actor, decision: None, status: "open" };
    versioned(id, catalog.records().write_decision(&write)?)?;
    if let Some(image) = decided.reference_image {
        remove_reference(catalog, image);
    }
    get(catalog, id)
}

/// Removes reference images no case names any more (a process stopped
/// between adding one and recording its decision, or between recording an
/// undo and removing its reference); returns how many.
pub fn repair(catalog: &Catalog) -> Result<usize, ReviewError> {
    let _one = DECIDING.lock();
    let stray = catalog.records().stray_case_images()?;
    for &image in &stray {
        remove_reference(catalog, image);
    }
    Ok(stray.len())
}

/// Housekeeping, at a server's start and hourly: removes references no case
/// names ([`repair`]) and drops case photos past `keep_photos_days`.
pub fn upkeep(catalog: &Catalog, config: CasesConfig) -> Result<(), ReviewError> {
    let stray = repair(catalog)?;
    let purged = catalog.records().purge_case_photos(config.keep_photos_days)?;
    if stray > 0 || purged > 0 {
        tracing::info!(stray_references = stray, photos_dropped = purged, "review upkeep");
    }
    Ok(())
}

fn current(catalog: &Catalog, id: i64, expected_version: i64) -> Result<CaseRow, ReviewError> {
    let row = catalog.records().case(id)?.ok_or(ReviewError::UnknownCase(id))?;
    if row.version != expected_version {
        return Err(ReviewError::Stale { case: id, current: row.version });
    }
    Ok(row)
}

fn versioned(id: i64, v: Versioned) -> Result<i64, ReviewError> {
    match v {
        Versioned::Written(v) => Ok(v),
        Versioned::Stale(current) => Err(ReviewError::Stale { case: id, current }),
        Versioned::Missing => Err(ReviewError::UnknownCase(id)),
    }
}

/// The product a decision names, or the answer's top match.
fn product_of(catalog: &Catalog, row: &CaseRow, input: &DecisionInput) -> Result<Product, ReviewError> {
    let id = input.product_id.clone().or_else(|| row.top_product.clone()).ok_or_else(|| ReviewError::Invalid {
        field: "product_id",
        detail: "the answer matched no product; name the product the photo shows".into(),
    })?;
    check_product_id(&id).map_err(|detail| ReviewError::Invalid { field: "product_id", detail })?;
    catalog.records().product(&id)?.ok_or(ReviewError::UnknownProduct(id))
}

/// The counterfeit product a fake of `p` is a reference of: `p` itself when
/// it is labelled counterfeit, else the one linked to it (created when missing).
fn counterfeit_of(catalog: &Catalog, p: Product) -> Result<Product, ReviewError> {
    if p.label == Label::Counterfeit {
        return Ok(p);
    }
    let id = counterfeit_id(&p.product_id);
    if let Some(found) = catalog.records().product(&id)? {
        if found.label == Label::Counterfeit {
            return Ok(found);
        }
        let detail = format!("'{id}' (where fakes of '{}' go) is labelled authentic; relabel or rename it", p.product_id);
        return Err(ReviewError::Invalid { field: "product_id", detail });
    }
    let mut attributes = serde_json::Map::new();
    attributes.insert("imitates".into(), p.product_id.clone().into());
    let fake = Product { product_id: id, label: Label::Counterfeit, attributes, ..p };
    catalog.upsert_product(&fake)?;
    Ok(fake)
}

/// The id of the counterfeit product linked to authentic product `id`.
#[must_use]
pub fn counterfeit_id(id: &str) -> String {
    const SUFFIX: &str = "~counterfeit";
    let room = crate::catalog::MAX_PRODUCT_ID_CHARS - SUFFIX.len() - 9;
    if id.chars().count() + SUFFIX.len() <= crate::catalog::MAX_PRODUCT_ID_CHARS {
        return format!("{id}{SUFFIX}");
    }
    let head: String = id.chars().take(room).collect();
    format!("{}-{}{SUFFIX}", head.trim_end(), &crate::util::sha256_hex(id.as_bytes())[..8])
}

/// Adds the case's photo to `product`; its image id, or `None` when the
/// product already holds these bytes or the photo was purged.
fn add_reference(catalog: &Catalog, limits: DecodeLimits, row: &CaseRow, product: &Product) -> Result<Option<i64>, ReviewError> {
    let Some(CasePhoto { bytes: Some(bytes), embedding }) = catalog.records().case_photo(row.id)? else { return Ok(None) };
    let img = crate::embed::decode_image(&bytes, &format!("case {}", row.id), limits)?;
    let mut resizer = fast_image_resize::Resizer::new();
    let item = NewImage {
        product: product.clone(),
        source: format!("{LISTING_SOURCE_PREFIX}{}", row.id),
        sha256: row.sha256.clone(),
        width: img.width(),
        height: img.height(),
        embedding,
        thumbnail: Some(crate::catalog::thumbnail(&img.rgb, &mut resizer)),
        copy_features: Some(crate::catalog::copy_features(&img.rgb, &mut resizer)),
    };
    let ids = catalog.add_images_to_existing(&[item])?;
    Ok(ids.first().copied().flatten())
}

/// Removes a reference a decision added (one already gone is fine).
fn remove_reference(catalog: &Catalog, image: i64) {
    match catalog.delete_image(image) {
        Ok(()) | Err(CatalogError::UnknownImage(_)) => {}
        Err(e) => tracing::warn!("review: could not remove reference image {image}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counterfeit_product_id_is_derived_and_stays_a_valid_id() {
        assert_eq!(counterfeit_id("bag-1"), "bag-1~counterfeit");
        let long = "x".repeat(200);
        let derived = counterfeit_id(&long);
        assert!(check_product_id(&derived).is_ok(), "{derived}");
        assert_ne!(derived, counterfeit_id(&"x".repeat(199)));
    }

    #[test]
    fn decisions_are_read_in_snake_case_and_unknown_fields_refused() {
        let d: DecisionInput = serde_json::from_str(r#"{"decision": "not_in_catalog"}"#).unwrap();
        assert_eq!(d.decision, Decision::NotInCatalog);
        assert!(serde_json::from_str::<DecisionInput>(r#"{"decision": "fake"}"#).is_err());
        assert!(serde_json::from_str::<DecisionInput>(r#"{"decision": "skip", "x": 1}"#).is_err());
    }
}
