//! The copy-detection protocol: a catalog of originals and, as queries,
//! an edited copy of each ([`crate::synth::copies`]) and the next shot of
//! the same item (the hardest non-copy), written as manifests.

use image::RgbImage;

use crate::synth::copies::{apply, EDITS};
use crate::util::Rng;

/// What [`make_protocol`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProtocolSummary {
    pub catalog: std::path::PathBuf,
    pub queries: std::path::PathBuf,
    pub originals: usize,
    pub copies: usize,
    pub non_copies: usize,
}

/// Builds a copy-detection protocol from photos (a manifest's items, in
/// order): per product, up to `per_product` originals (every other photo),
/// each followed by the next photo of the same product — the hardest
/// non-copy, a consecutive shot of the same item. Writes `catalog.csv` (the
/// originals), `queries.csv` (one edited copy of each original with `copy_of`
/// and the edit as `category`, plus the non-copies with category
/// `not-a-copy`) and the copies' JPEGs under `out/copies/`. Edits cycle
/// through [`EDITS`]; their parameters come from `seed`.
pub fn make_protocol(
    items: &[crate::ingest::SourceItem],
    out: &std::path::Path,
    seed: u64,
    per_product: usize,
) -> Result<ProtocolSummary, crate::ingest::IngestError> {
    use crate::ingest::IngestError;
    let io = |p: &std::path::Path, e: &dyn std::fmt::Display| IngestError::Source { path: p.into(), detail: e.to_string() };
    std::fs::create_dir_all(out.join("copies")).map_err(|e| io(out, &e))?;
    // (original, next photo of the same product) pairs, per product in order.
    let mut pairs: Vec<(&crate::ingest::SourceItem, &crate::ingest::SourceItem)> = Vec::new();
    let mut taken: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut i = 0;
    while i + 1 < items.len() {
        let (a, b) = (&items[i], &items[i + 1]);
        let n = taken.entry(a.product.product_id.as_str()).or_default();
        if a.product.product_id == b.product.product_id && *n < per_product {
            *n += 1;
            pairs.push((a, b));
            i += 2;
        } else {
            i += 1;
        }
    }
    let load = |p: &str| image::open(p).map(|i| i.to_rgb8()).map_err(|e| io(std::path::Path::new(p), &e));
    let originals: Vec<RgbImage> = pairs.iter().map(|(a, _)| load(&a.image)).collect::<Result<_, _>>()?;
    let seconds: Vec<RgbImage> = pairs.iter().map(|(_, b)| load(&b.image)).collect::<Result<_, _>>()?;
    let mut rng = Rng::new(seed);
    let (catalog_path, queries_path) = (out.join("catalog.csv"), out.join("queries.csv"));
    let mut cat = csv::Writer::from_path(&catalog_path).map_err(|e| io(&catalog_path, &e))?;
    let mut qs = csv::Writer::from_path(&queries_path).map_err(|e| io(&queries_path, &e))?;
    let header = ["image", "product_id", "label", "brand", "name", "category", "copy_of"];
    cat.write_record(&header[..6]).map_err(|e| io(&catalog_path, &e))?;
    qs.write_record(header).map_err(|e| io(&queries_path, &e))?;
    let absolute = |p: &str| std::fs::canonicalize(p).map_or_else(|_| p.to_string(), |p| p.display().to_string());
    for (k, ((orig, next), img)) in pairs.iter().zip(&originals).enumerate() {
        let p = &orig.product;
        let (orig_path, next_path) = (absolute(&orig.image), absolute(&next.image));
        let (label, brand, name) = (p.label.as_str(), p.brand.as_deref().unwrap_or(""), p.name.as_deref().unwrap_or(""));
        cat.write_record([orig_path.as_str(), &p.product_id, label, brand, name, p.category.as_deref().unwrap_or("")])
            .map_err(|e| io(&catalog_path, &e))?;
        let edit = EDITS[k % EDITS.len()];
        // A collage's other tiles: photos that are not in the catalog (other products' second shots).
        let others: Vec<&RgbImage> = (0..3).map(|_| rng.below(seconds.len())).filter(|&i| i != k).map(|i| &seconds[i]).collect();
        let edited = apply(edit, img, &others, &mut rng);
        let file = out.join("copies").join(format!("{k:05}-{}.jpg", edit.name()));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92).encode_image(&edited.image).map_err(|e| io(&file, &e))?;
        std::fs::write(&file, bytes).map_err(|e| io(&file, &e))?;
        let file = file.display().to_string();
        qs.write_record([file.as_str(), &p.product_id, label, brand, name, edit.name(), orig_path.as_str()])
            .map_err(|e| io(&queries_path, &e))?;
        qs.write_record([next_path.as_str(), &p.product_id, label, brand, name, "not-a-copy", ""]).map_err(|e| io(&queries_path, &e))?;
    }
    cat.flush().map_err(|e| io(&catalog_path, &e))?;
    qs.flush().map_err(|e| io(&queries_path, &e))?;
    Ok(ProtocolSummary {
        catalog: catalog_path,
        queries: queries_path,
        originals: pairs.len(),
        copies: pairs.len(),
        non_copies: pairs.len(),
    })
}
