//! The copy check's first step: is any candidate worth verifying in full?
//!
//! Verifying a photo against its candidates in full (a scale pyramid of local
//! features, then a map per candidate, then the pixels) costs about as much
//! as embedding it, and most listing photos copy nothing. So a one-picture
//! photo is first verified by its glance (`embed::query`: described as a
//! catalog image is): a copy of a candidate, even cropped, recoloured or
//! mirrored, lines up with it point for point at that scale, and another
//! photo of the same product rarely does. Only when one map explains
//! [`CopyModel::gate_inliers`](super::CopyModel) glance points on some
//! candidate is the photo described and verified in full. A photo of content
//! regions (a collage, a card) always is.

use super::verify::explained;
use crate::catalog::Catalog;
use crate::embed::query::QueryFeatures;

/// What the gate saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// A photo of content regions: always checked in full.
    Regions,
    /// A one-picture photo: the most glance points one map explains on a
    /// candidate (exact when the gate is off; at least the threshold when it
    /// passed), and whether the photo goes on to the full check.
    Glance { inliers: usize, passed: bool },
}

impl Gate {
    /// Whether the photo is checked in full.
    pub fn passed(self) -> bool {
        match self {
            Gate::Regions => true,
            Gate::Glance { passed, .. } => passed,
        }
    }
}

/// Verifies `query`'s glance against the `candidates` (image id, similarity)
/// until one explains `threshold` points; `None` measures them all and passes.
pub fn gate(catalog: &Catalog, query: &QueryFeatures, candidates: &[(i64, f32)], threshold: Option<usize>) -> Gate {
    let Some(glance) = query.glance() else { return Gate::Regions };
    let mut best = 0;
    for &(id, _) in candidates {
        if let Some((features, _)) = catalog.copy_features(id) {
            best = best.max(explained(glance, &features, threshold.unwrap_or(0)));
        }
        if threshold.is_some_and(|t| best >= t) {
            break;
        }
    }
    Gate::Glance { inliers: best, passed: threshold.is_none_or(|t| best >= t) }
}
