//! Query manifests: labelled photos to look up (`knockoff eval`,
//! `knockoff calibrate`), in the manifest format; a row without
//! `product_id` is a distractor (its right answer is `no_match`), and an
//! optional `copy_of` column names the catalog image a copy was made from.

use std::path::PathBuf;

use super::{read_source, IngestError, SourceDefaults};

/// One query photo; `product_id: None` marks a distractor (right answer: `no_match`).
#[derive(Debug, Clone)]
pub struct Query {
    pub image: String,
    pub product_id: Option<String>,
    pub category: Option<String>,
    /// The catalog image this query was made from (a copy), if any.
    pub copy_of: Option<String>,
}

/// Reads query manifests; returns the queries and the rows that could not be read.
pub fn read_queries(paths: &[PathBuf]) -> Result<(Vec<Query>, Vec<IngestError>), IngestError> {
    let defaults = SourceDefaults { allow_missing_product: true, ..Default::default() };
    let (mut qs, mut errors) = (Vec::new(), Vec::new());
    for q in paths {
        let (items, errs) = read_source(q, &defaults)?;
        errors.extend(errs);
        qs.extend(items.into_iter().map(|it| Query {
            image: it.image,
            product_id: Some(it.product.product_id).filter(|p| !p.is_empty()),
            category: it.product.category,
            copy_of: it.copy_of,
        }));
    }
    Ok((qs, errors))
}
