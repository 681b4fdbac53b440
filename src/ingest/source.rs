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
    /// Evaluation queries only: the catalog `image` this photo was made from
    /// (resolved like `image`); `None` when it is not a copy.
    pub copy_of: Option<String>,
}

/// How a manifest is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line, with the same keys.
    JsonLines,
}

impl ManifestFormat {
    /// The name stored with a job (`csv`, `jsonl`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestFormat::Csv => "csv",
            ManifestFormat::JsonLines => "jsonl",
        }
    }

    /// Guesses the format from a file's extension and first character.
    #[must_use]
    pub fn detect(path: &Path, text: &str) -> ManifestFormat {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        if matches!(ext.as_str(), "jsonl" | "ndjson" | "json") || text.trim_start().starts_with('{') {
            ManifestFormat::JsonLines
        } else {
            ManifestFormat::Csv
        }
    }
}

impl std::str::FromStr for ManifestFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(ManifestFormat::Csv),
            "jsonl" => Ok(ManifestFormat::JsonLines),
            other => Err(format!("manifest format must be csv or jsonl, not '{other}'")),
        }
    }
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
    copy_of: Option<String>,
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
    let bytes = std::fs::read(path).map_err(|e| IngestError::Source { path: path.into(), detail: format!("cannot read: {e}") })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let format = ManifestFormat::detect(path, &String::from_utf8_lossy(&bytes[..bytes.len().min(64)]));
    parse_manifest(&bytes, path, Some(&base), format, defaults)
}

/// 1-based numbers of the lines of `bytes` that are not valid UTF-8.
fn non_utf8_lines(bytes: &[u8]) -> std::collections::BTreeSet<usize> {
    bytes.split(|b| *b == b'\n').enumerate().filter(|(_, l)| std::str::from_utf8(l).is_err()).map(|(i, _)| i + 1).collect()
}

/// Parses a manifest. `base` resolves relative image paths; without one (an
/// uploaded manifest) only URLs and absolute paths are accepted. Every row
/// that cannot be used — not UTF-8, malformed, an invalid identifier or
/// label, a product labelled differently on an earlier row — is an error
/// naming its line; only a manifest without the required columns is an `Err`.
pub fn parse_manifest(
    bytes: &[u8],
    path: &Path,
    base: Option<&Path>,
    format: ManifestFormat,
    defaults: &SourceDefaults,
) -> Result<(Vec<SourceItem>, Vec<IngestError>), IngestError> {
    let bad_lines = non_utf8_lines(bytes);
    let text = String::from_utf8_lossy(bytes);
    let rows = match format {
        ManifestFormat::JsonLines => json_rows(&text),
        ManifestFormat::Csv => csv_rows(&text, path)?,
    };
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut labels: std::collections::HashMap<String, (Label, usize)> = std::collections::HashMap::new();
    for (line, row) in rows {
        let item = if bad_lines.contains(&line) {
            Err("the line is not valid UTF-8".to_string())
        } else {
            row.and_then(|r| item_of(r, base, defaults))
        };
        let item = item.and_then(|it| consistent_label(&mut labels, it, line));
        match item {
            Ok(item) => items.push(item),
            Err(detail) => errors.push(IngestError::Row { path: path.into(), line, detail }),
        }
    }
    Ok((items, errors))
}

/// One source gives each product one label: a later row that disagrees is an error.
fn consistent_label(
    labels: &mut std::collections::HashMap<String, (Label, usize)>,
    it: SourceItem,
    line: usize,
) -> Result<SourceItem, String> {
    if it.product.product_id.is_empty() {
        return Ok(it); // a distractor query
    }
    match labels.get(&it.product.product_id) {
        Some((l, first)) if *l != it.product.label => {
            Err(format!("product '{}' is labelled {} on line {first}; this row says {}", it.product.product_id, l, it.product.label))
        }
        Some(_) => Ok(it),
        None => {
            labels.insert(it.product.product_id.clone(), (it.product.label, line));
            Ok(it)
        }
    }
}

/// A manifest row with its line number, or what is wrong with it.
type NumberedRow = (usize, Result<Row, String>);

fn json_rows(text: &str) -> Vec<NumberedRow> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, serde_json::from_str::<Row>(l).map_err(|e| format!("invalid JSON: {e}"))))
        .collect()
}

fn csv_rows(text: &str, path: &Path) -> Result<Vec<NumberedRow>, IngestError> {
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| IngestError::Source { path: path.into(), detail: format!("invalid CSV header: {e}") })?.clone();
    for required in ["image", "product_id"] {
        if !headers.iter().any(|h| h.trim() == required) {
            return Err(IngestError::Source {
                path: path.into(),
                detail: format!("CSV header lacks '{required}' (expected image,product_id,label,brand,name,category)"),
            });
        }
    }
    let mut rows = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        let before = rdr.position().byte();
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line = rec.position().map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                rows.push((line, rec.deserialize::<Row>(Some(&headers)).map_err(|e| format!("invalid CSV row: {e}"))));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| usize::try_from(p.line()).unwrap_or(0));
                rows.push((line, Err(format!("invalid CSV row: {e}"))));
                if rdr.position().byte() == before {
                    break; // no progress: stop rather than loop
                }
            }
        }
    }
    Ok(rows)
}

/// One manifest row as an item to index, or what is wrong with it.
fn item_of(row: Row, base: Option<&Path>, defaults: &SourceDefaults) -> Result<SourceItem, String> {
    let image = nonempty(row.image).ok_or("'image' is empty")?;
    let product_id = match nonempty(row.product_id) {
        Some(p) => {
            crate::catalog::check_product_id(&p)?;
            p
        }
        None if defaults.allow_missing_product => String::new(),
        None => return Err("'product_id' is empty".into()),
    };
    let label = match (nonempty(row.label), defaults.label) {
        (Some(l), _) => l.parse::<Label>()?,
        (None, Some(l)) => l,
        (None, None) if defaults.allow_missing_product => Label::Authentic,
        (None, None) => return Err("'label' is empty (give --label to set a default)".into()),
    };
    let image = resolve(image, base)?;
    let copy_of = nonempty(row.copy_of).map(|c| resolve(c, base)).transpose()?;
    let mut product = Product::new(product_id, label);
    product.brand = nonempty(row.brand).or_else(|| defaults.brand.clone());
    product.name = nonempty(row.name);
    product.category = nonempty(row.category);
    for (field, value) in [("brand", &product.brand), ("name", &product.name), ("category", &product.category)] {
        if let Some(v) = value {
            crate::catalog::check_product_text(v).map_err(|e| format!("'{field}' {e}"))?;
        }
    }
    Ok(SourceItem { image, product, copy_of })
}

/// A manifest's image reference: URLs and absolute paths as they are, relative paths against `base`.
fn resolve(image: String, base: Option<&Path>) -> Result<String, String> {
    if is_url(&image) || Path::new(&image).is_absolute() {
        Ok(image)
    } else if let Some(base) = base {
        Ok(base.join(&image).display().to_string())
    } else {
        Err(format!("'{image}' is a relative path; an uploaded manifest needs URLs or absolute paths"))
    }
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
                product.brand.clone_from(&defaults.brand);
                items.push(SourceItem { image: f.display().to_string(), product, copy_of: None });
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
