//! The folder's graph and table as the folder is opened: the in-memory
//! table from the store, the graph from its dump when the dump provably
//! describes the store (caught up on what was committed after it), or
//! rebuilt from the store's vectors otherwise.

use std::path::{Path, PathBuf};

use super::super::files::VECTORS_DIR;
use super::super::projection::Projection;
use super::super::store::RecordStore;
use super::super::table::ImageTable;
use super::super::vectors::{DumpMarker, HnswIndex};
use super::super::{CatalogError, CatalogOptions, OpenReport};

/// The table of every product and image in the store, with copy features
/// (computed from the thumbnails, once, for images indexed before copy detection).
pub(super) fn load_table(records: &dyn RecordStore) -> Result<ImageTable, CatalogError> {
    let mut table = ImageTable::default();
    for (row, p) in records.products()? {
        table.put_product(row, p);
    }
    let features: std::collections::HashMap<i64, Vec<u8>> = records.copy_features()?.into_iter().collect();
    for o in records.image_owners()? {
        table.put_image(o.id, o.product_row, o.deleted, o.listing, features.get(&o.id).map(Vec::as_slice));
    }
    drop(features);
    backfill_copy_features(records, &mut table)?;
    Ok(table)
}

/// Images indexed before copy detection existed (a store migrated from
/// schema 3) have no copy features, so a listing reusing their photo would
/// never be found: computes them from the stored thumbnails (256 px; the
/// features are taken at 200 px) and stores them, once. Images without a
/// readable thumbnail are left as they are.
fn backfill_copy_features(records: &dyn RecordStore, table: &mut ImageTable) -> Result<(), CatalogError> {
    let missing = table.missing_copy_features();
    if missing.is_empty() {
        return Ok(());
    }
    tracing::info!("computing copy features for {} images indexed without them, from their thumbnails", missing.len());
    let mut resizer = fast_image_resize::Resizer::new();
    let (mut done, mut skipped) = (0usize, 0usize);
    for chunk in missing.chunks(1000) {
        let mut features = Vec::with_capacity(chunk.len());
        for id in chunk {
            let rgb = records.thumbnail(*id)?.and_then(|jpeg| image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).ok());
            let Some(rgb) = rgb.map(|i| i.to_rgb8()) else {
                skipped += 1;
                continue;
            };
            let data = super::super::copy_features(&rgb, &mut resizer);
            table.set_copy(*id, crate::embed::local::LocalFeatures::from_bytes(&data));
            features.push((*id, data));
        }
        records.put_copy_features(&features)?;
        done += features.len();
    }
    tracing::info!("copy features computed for {done} images ({skipped} without a readable thumbnail)");
    Ok(())
}

/// Loads the graph dump if it checks out (catching up on vectors committed
/// after it), else rebuilds the graph from the store.
pub(super) fn load_graph(
    records: &dyn RecordStore,
    dir: &Path,
    opts: &CatalogOptions,
    projection: Option<&Projection>,
) -> Result<(HnswIndex, OpenReport), CatalogError> {
    let graph_dim = projection.as_ref().map_or(opts.dim, |p| p.info.out_dim);
    let vdir = graph_dir(dir, &opts.model, projection);
    let generation = records.generation()?;
    let loaded = HnswIndex::load(&vdir, graph_dim, opts.params).and_then(|found| match found {
        Some((idx, marker)) => dump_matches_store(records, generation, &opts.model, &marker).map(|()| Some((idx, marker))),
        None => Ok(None),
    });
    match loaded {
        Ok(Some((idx, marker))) => {
            let newer = project_all(projection, records.live_vectors_after(&opts.model, marker.max_image_id)?);
            idx.add_many(&newer)?;
            let caught_up = newer.len();
            if caught_up > 0 || marker.generation != generation {
                tracing::info!(
                    "index dump is {} generations behind the store: added {caught_up} vectors",
                    generation.saturating_sub(marker.generation)
                );
            }
            Ok((idx, OpenReport::Loaded { points: marker.points + caught_up, caught_up }))
        }
        other => {
            let reason = match other {
                Err(e) => format!("index dump unusable ({e})"),
                Ok(_) => "no index dump yet".to_string(),
            };
            let idx = build_graph(projection, opts, records.live_vectors_after(&opts.model, 0)?)?;
            let points = idx.len();
            if points > 0 {
                tracing::warn!("{reason}: rebuilt the vector index from the store ({points} vectors)");
            }
            Ok((idx, OpenReport::Rebuilt { points, reason }))
        }
    }
}

/// A dump is used only if it provably describes this store: not from a
/// later generation, no image id beyond the store's, and exactly as many
/// points as the store has vectors up to its highest id (a restored older
/// store, or a store file swapped for another, fails one of these).
fn dump_matches_store(records: &dyn RecordStore, generation: u64, model: &str, marker: &DumpMarker) -> Result<(), CatalogError> {
    let max_id = records.max_image_id()?;
    let vectors = records.count_vectors_upto(model, marker.max_image_id)?;
    let why = if marker.generation > generation {
        format!("it is from store generation {}, the store is at {generation} (a restored older store?)", marker.generation)
    } else if marker.max_image_id > max_id {
        format!("it holds image ids up to {}, the store only up to {max_id}", marker.max_image_id)
    } else if marker.points != vectors {
        format!("it holds {} points, the store {vectors} vectors up to image {}", marker.points, marker.max_image_id)
    } else {
        return Ok(());
    };
    Err(CatalogError::Dump(format!("the dump does not match the store: {why}")))
}

/// Where the graph dump lives: per model, and per projection when there is
/// one, so a dump is never loaded into a space it was not built in.
pub(super) fn graph_dir(dir: &Path, model: &str, projection: Option<&Projection>) -> PathBuf {
    match projection {
        Some(p) => dir.join(VECTORS_DIR).join(format!("{model}@{}", p.info.id)),
        None => dir.join(VECTORS_DIR).join(model),
    }
}

/// A graph of `live` in `projection`'s space (the model's own without one).
pub(super) fn build_graph(
    projection: Option<&Projection>,
    opts: &CatalogOptions,
    live: Vec<(i64, Vec<f32>)>,
) -> Result<HnswIndex, CatalogError> {
    let vectors = project_all(projection, live);
    let graph = HnswIndex::new(projection.map_or(opts.dim, |p| p.info.out_dim), opts.params, vectors.len());
    graph.add_many(&vectors)?;
    Ok(graph)
}

pub(super) fn project_all(projection: Option<&Projection>, vectors: Vec<(i64, Vec<f32>)>) -> Vec<(i64, Vec<f32>)> {
    match projection {
        Some(p) => vectors.into_iter().map(|(id, v)| (id, p.apply(&v))).collect(),
        None => vectors,
    }
}
