//! Where images come from: a manifest (CSV or JSON Lines with the keys
//! `image,product_id,label,brand,name,category`) or a folder with one
//! sub-folder per product.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::IngestError;
use crate::catalog::{Label, Product};

/// One image to index, with the product it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceItem {
    /// A file path (absolute, or resolved against the manifest's folder) or an http(s) URL.
    pub image: String,
    pub product: Product,
}

/// Defaults for fields the source leaves empty.
#[derive(Debug, Clone, Default)]
pub struct SourceDefaults {
    pub label: Option<Label>,
    pub brand: Option<String>,
    /// Accept rows without `product_id` / `label` (evaluation queries: distractors).
    pub allow_missing_product: bool,
}

#[derive(Debug, Deserialize)]
struct Row {
    image: Option<String>,
    product_id: Option<String>,
    label: Option<String>,
    brand: Option<String>,
    name: Option<String>,
    category: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Reads a manifest or a folder. Rows that are invalid come back as errors
/// (with their line) next to the good items; a source that cannot be read
/// at all is an `Err`.
pub fn read_source(path: &Path, defaults: &SourceDefaults) -> Result<(Vec<SourceItem>, Vec<IngestError>), IngestError> {
    if path.is_dir() {
        return read_folder(path, defaults);
    }
    let text = std::fs::read_to_string(path).map_err(|e| IngestError::Source { path: path.into(), detail: format!("cannot read: {e}") })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let jsonl = matches!(ext.as_str(), "jsonl" | "ndjson" | "json") || text.trim_start().starts_with('{');
    parse_manifest(&text, path, Some(&base), jsonl, defaults)
}

/// Parses manifest text. `base` resolves relative image paths; without one
/// (an uploaded manifest) only URLs and absolute paths are accepted.
pub fn parse_manifest(
    text: &str,
    path: &Path,
    base: Option<&Path>,
    jsonl: bool,
    defaults: &SourceDefaults,
) -> Result<(Vec<SourceItem>, Vec<IngestError>), IngestError> {
    let rows: Vec<(usize, Result<Row, String>)> = if jsonl {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, serde_json::from_str::<Row>(l).map_err(|e| format!("invalid JSON: {e}"))))
            .collect()
    } else {
        let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
        let headers =
            rdr.headers().map_err(|e| IngestError::Source { path: path.into(), detail: format!("invalid CSV header: {e}") })?.clone();
        for required in ["image", "product_id"] {
            if !headers.iter().any(|h| h.trim() == required) {
                return Err(IngestError::Source {
                    path: path.into(),
                    detail: format!("CSV header lacks '{required}' (expected image,product_id,label,brand,name,category)"),
                });
            }
        }
        rdr.deserialize::<Row>().enumerate().map(|(i, r)| (i + 2, r.map_err(|e| format!("invalid CSV row: {e}")))).collect()
    };
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (line, row) in rows {
        let bad = |detail: String| IngestError::Row { path: path.into(), line, detail };
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                errors.push(bad(e));
                continue;
            }
        };
        let Some(image) = nonempty(row.image) else {
            errors.push(bad("'image' is empty".into()));
            continue;
        };
        let product_id = match nonempty(row.product_id) {
            Some(p) => p,
            None if defaults.allow_missing_product => String::new(),
            None => {
                errors.push(bad("'product_id' is empty".into()));
                continue;
            }
        };
        let label = match nonempty(row.label) {
            Some(l) => match l.parse::<Label>() {
                Ok(l) => l,
                Err(e) => {
                    errors.push(bad(e));
                    continue;
                }
            },
            None => match defaults.label {
                Some(l) => l,
                None if defaults.allow_missing_product => Label::Authentic,
                None => {
                    errors.push(bad("'label' is empty (give --label to set a default)".into()));
                    continue;
                }
            },
        };
        let image = if is_url(&image) || Path::new(&image).is_absolute() {
            image
        } else if let Some(base) = base {
            base.join(&image).display().to_string()
        } else {
            errors.push(bad(format!("'{image}' is a relative path; an uploaded manifest needs URLs or absolute paths")));
            continue;
        };
        let mut product = Product::new(product_id, label);
        product.brand = nonempty(row.brand).or_else(|| defaults.brand.clone());
        product.name = nonempty(row.name);
        product.category = nonempty(row.category);
        items.push(SourceItem { image, product });
    }
    Ok((items, errors))
}

const IMAGE_EXTS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

fn read_folder(dir: &Path, defaults: &SourceDefaults) -> Result<(Vec<SourceItem>, Vec<IngestError>), IngestError> {
    let list = |p: &Path| -> Result<Vec<PathBuf>, IngestError> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| IngestError::Source { path: p.into(), detail: format!("cannot list: {e}") })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    let mut items = Vec::new();
    for sub in list(dir)?.into_iter().filter(|p| p.is_dir()) {
        let product_id = sub.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        for f in list(&sub)? {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            if f.is_file() && IMAGE_EXTS.contains(&ext.as_str()) {
                let mut product = Product::new(product_id.clone(), defaults.label.unwrap_or(Label::Authentic));
                product.brand = defaults.brand.clone();
                items.push(SourceItem { image: f.display().to_string(), product });
            }
        }
    }
    if items.is_empty() {
        return Err(IngestError::Source {
            path: dir.into(),
            detail: "no images found (expected one sub-folder per product, named by its product_id)".into(),
        });
    }
    Ok((items, Vec::new()))
}
