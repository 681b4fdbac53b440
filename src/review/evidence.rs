//! The evidence pack of a case, for a takedown notice: one ZIP with the
//! listing photo as received, the catalog references it matched or copies
//! (their stored thumbnails), the explanation picture of the copy it makes
//! (if any), a `summary.html` a person can print, and a
//! `manifest.json` (the case, its answer, the catalog version and
//! calibration it was answered with, the decision, and the sha256 of every
//! other file). The same case gives the same bytes: nothing in it depends on
//! when it is built (entries are stored uncompressed with a fixed time).

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{get, Case, ReviewError};
use crate::catalog::Catalog;
use crate::embed::DecodeLimits;

/// At most this many matched references go in.
const MAX_REFERENCES: usize = 5;

/// The pack for case `id` (its photo decoded within `limits` for the copy picture).
pub fn evidence_pack(catalog: &Catalog, limits: DecodeLimits, id: i64) -> Result<Vec<u8>, ReviewError> {
    let case = get(catalog, id)?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(photo) = super::photo(catalog, id)? {
        let picture = copy_picture(catalog, limits, &photo, &case.answer)?;
        files.push((format!("listing.{}", extension(&photo)), photo));
        if let Some(png) = picture {
            files.push(("copy-explanation.png".into(), png));
        }
    }
    for image in referenced_images(&case.answer) {
        if let Some(thumb) = catalog.records().thumbnail(image)? {
            files.push((format!("references/image-{image}.jpg"), thumb));
        }
    }
    let html = summary_html(&case, &files);
    files.push(("summary.html".into(), html.into_bytes()));
    let hashes: serde_json::Map<String, Value> =
        files.iter().map(|(name, bytes)| (name.clone(), Value::String(crate::util::sha256_hex(bytes)))).collect();
    let manifest = json!({
        "case": case,
        "catalog_generation": case.catalog_generation,
        "calibration_fitted_at": case.calibration,
        "model": case.model,
        "listing_photo_sha256": case.photo_sha256,
        "files": hashes,
        "note": "sha256 of every other file in this pack; the listing photo is stored as received (absent once retention dropped it); references are the catalog's stored thumbnails",
    });
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| ReviewError::Invalid { field: "case", detail: e.to_string() })?;
    let mut entries: Vec<(&str, &[u8])> = vec![("manifest.json", &manifest)];
    entries.extend(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    Ok(zip_stored(&entries))
}

/// The explanation picture of the answer's best copy, as `explain=true` draws
/// it: the copy check runs again on the stored photo (matched points are not
/// stored), against that one catalog image. `None`: no copy, or the image is gone.
fn copy_picture(catalog: &Catalog, limits: DecodeLimits, photo: &[u8], answer: &Value) -> Result<Option<Vec<u8>>, ReviewError> {
    let Some(best) = answer["copies"].as_array().and_then(|c| c.first()) else { return Ok(None) };
    let Some(image_id) = best["image_id"].as_i64() else { return Ok(None) };
    #[allow(clippy::cast_possible_truncation)]
    let similarity = best["similarity"].as_f64().unwrap_or(0.0) as f32;
    // A photo the service's limits no longer admit gets no picture; the pack is still made.
    let Ok(decoded) = crate::embed::decode_image(photo, "the case photo", limits) else { return Ok(None) };
    let mut resizer = fast_image_resize::Resizer::new();
    let (_, features) = crate::embed::query::QueryFeatures::describe_now(&decoded.rgb, &mut resizer);
    let model = crate::search::copy::CopyModel::default();
    let Some(copy) = crate::search::copy::rank_copies(catalog, &features, &[(image_id, similarity)], &model).into_iter().next() else {
        return Ok(None);
    };
    Ok(crate::search::explain::picture(catalog, &decoded.rgb, &copy)?)
}

/// Catalog images the answer names: copies first, then the matches, each once.
fn referenced_images(answer: &Value) -> Vec<i64> {
    let ids = |key: &str| answer[key].as_array().into_iter().flatten().filter_map(|m| m["image_id"].as_i64()).collect::<Vec<_>>();
    let mut out: Vec<i64> = Vec::new();
    for id in ids("copies").into_iter().chain(ids("matches")) {
        if !out.contains(&id) && out.len() < MAX_REFERENCES {
            out.push(id);
        }
    }
    out
}

fn extension(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xff, 0xd8, ..] => "jpg",
        [0x89, b'P', b'N', b'G', ..] => "png",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "webp",
        [b'G', b'I', b'F', ..] => "gif",
        _ => "bin",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => esc(s),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |x| if x.fract() == 0.0 { n.to_string() } else { format!("{x:.3}") }),
        other => esc(&other.to_string()),
    }
}

/// One printable page: the listing, the answer, the references, the decision.
fn summary_html(case: &Case, files: &[(String, Vec<u8>)]) -> String {
    let a = &case.answer;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>knockoff evidence: case {id}</title>\
         <style>body{{font:13px/1.4 sans-serif;margin:24px;max-width:800px}}table{{border-collapse:collapse;margin:8px 0}}\
         td,th{{border:1px solid #999;padding:3px 8px;text-align:left}}img{{max-height:220px;margin:4px;border:1px solid #ccc}}\
         @media print{{body{{margin:0}}}}</style></head><body><h1>Evidence: case {id}</h1>",
        id = case.id
    );
    let _ = write!(
        h,
        "<p>Recorded {} · verdict <b>{}</b> · p_counterfeit {} · p_authentic {} · p_no_match {}</p>",
        esc(&case.created_at),
        esc(&case.verdict),
        text(&a["p_counterfeit"]),
        text(&a["p_authentic"]),
        text(&a["p_no_match"])
    );
    h.push_str("<h2>Listing</h2><table>");
    for (k, v) in case.context.as_object().into_iter().flatten() {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), text(v));
    }
    let _ = write!(h, "<tr><th>photo sha256</th><td><code>{}</code></td></tr></table>", esc(&case.photo_sha256));
    if let Some((name, _)) = files.iter().find(|(n, _)| n.starts_with("listing.")) {
        let _ = write!(h, "<img src=\"{name}\" alt=\"the listing photo\">");
    }
    h.push_str("<h2>Reused catalog photos</h2><table><tr><th>product</th><th>label</th><th>p_copy</th><th>matched points</th></tr>");
    for c in a["copies"].as_array().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&c["product_id"]),
            text(&c["label"]),
            text(&c["p_copy"]),
            text(&c["inliers"])
        );
    }
    h.push_str("</table>");
    if files.iter().any(|(n, _)| n == "copy-explanation.png") {
        h.push_str(
            "<p><img src=\"copy-explanation.png\" alt=\"the listing beside the catalog photo it reuses, matched points joined\"></p>",
        );
    }
    h.push_str("<h2>Nearest catalog products</h2><table><tr><th>product</th><th>label</th><th>brand</th><th>confidence</th></tr>");
    for m in a["matches"].as_array().into_iter().flatten().take(MAX_REFERENCES) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&m["product_id"]),
            text(&m["label"]),
            text(&m["brand"]),
            text(&m["confidence"])
        );
    }
    h.push_str("</table>");
    for (name, _) in files.iter().filter(|(n, _)| n.starts_with("references/")) {
        let _ = write!(h, "<img src=\"{name}\" alt=\"catalog reference {name}\">");
    }
    h.push_str("<h2>Decision</h2>");
    match &case.decision {
        Some(d) => {
            let _ = write!(
                h,
                "<p><b>{}</b> {} by {} at {}{}</p>",
                esc(&d.decision),
                d.product_id.as_deref().map(esc).unwrap_or_default(),
                d.by.as_deref().map_or_else(|| "–".into(), esc),
                esc(&d.at),
                d.note.as_deref().map(|n| format!(": {}", esc(n))).unwrap_or_default()
            );
        }
        None => h.push_str("<p>Not decided by an analyst.</p>"),
    }
    let _ = write!(
        h,
        "<p><small>Catalog version {} · calibration fitted {} · model {} · file hashes in manifest.json</small></p></body></html>",
        case.catalog_generation,
        case.calibration.as_deref().map_or_else(|| "(shipped)".into(), esc),
        esc(&case.model)
    );
    h
}

/// A ZIP of `entries`, stored (no compression), every entry dated
/// 1980-01-01 00:00: the same entries give the same bytes.
fn zip_stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
    const DATE: u16 = 0x21; // 1980-01-01
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(data);
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        let header = |sig: u32, central_entry: bool| {
            let mut b = Vec::with_capacity(46 + name.len());
            b.extend_from_slice(&sig.to_le_bytes());
            if central_entry {
                b.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            for v in [20u16, 0x0800, 0, 0, DATE] {
                b.extend_from_slice(&v.to_le_bytes()); // version needed, flags (UTF-8 names), stored, time, date
            }
            for v in [crc, size, size] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&name_len.to_le_bytes());
            b.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central_entry {
                for v in [0u16, 0, 0] {
                    b.extend_from_slice(&v.to_le_bytes()); // comment, disk, internal attributes
                }
                b.extend_from_slice(&0u32.to_le_bytes()); // external attributes
                b.extend_from_slice(&offset.to_le_bytes());
            }
            b.extend_from_slice(name.as_bytes());
            b
        };
        out.extend(header(0x0403_4b50, false));
        out.extend_from_slice(data);
        central.extend(header(0x0201_4b50, true));
    }
    let (dir_offset, dir_size) = (u32::try_from(out.len()).unwrap_or(u32::MAX), u32::try_from(central.len()).unwrap_or(u32::MAX));
    let count = u16::try_from(entries.len()).unwrap_or(u16::MAX);
    out.extend(central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, count, count] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&dir_size.to_le_bytes());
    out.extend_from_slice(&dir_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_holds_its_entries_at_the_offsets_it_names_and_the_same_entries_give_the_same_bytes() {
        let z = zip_stored(&[("a.txt", b"hello"), ("b/c.bin", b"")]);
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert_eq!(&z[30..35], b"a.txt");
        assert_eq!(&z[35..40], b"hello");
        assert_eq!(u32::from_le_bytes(z[14..18].try_into().unwrap()), crc32fast::hash(b"hello"));
        let end = z.len() - 22;
        assert_eq!(&z[end..end + 4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes(z[end + 10..end + 12].try_into().unwrap()), 2);
        assert_eq!(z, zip_stored(&[("a.txt", b"hello"), ("b/c.bin", b"")]));
    }

    #[test]
    fn references_are_copies_then_matches_each_once() {
        let answer = json!({"copies": [{"image_id": 7}], "matches": [{"image_id": 3}, {"image_id": 7}, {"image_id": 9}]});
        assert_eq!(referenced_images(&answer), vec![7, 3, 9]);
        assert_eq!(extension(b"\xff\xd8\xff"), "jpg");
        assert_eq!(esc("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }
}
