//! A projection refit on the folder: the new graph is built from a snapshot
//! of the live vectors without the writer lock (searches and writers go
//! on), caught up on what was added meanwhile, and swapped in with its
//! projection under the lock; the projection file is the switch.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::graph::{build_graph, graph_dir, project_all};
use super::{FolderCatalog, Graph};
use crate::catalog::backend::Phase;
use crate::catalog::files::{PROJECTION_FILE, VECTORS_DIR};
use crate::catalog::projection::{FitOptions, Projection, ProjectionInfo};
use crate::catalog::store::RecordStore;
use crate::catalog::CatalogError;

/// The live vectors as of one moment, for a graph built without the writer lock.
struct Snapshot {
    live: Vec<(i64, Vec<f32>)>,
    /// The highest image id then: ids added later are higher.
    upto: i64,
    removals: u64,
}

impl FolderCatalog {
    /// Fits a projection on the live photos (labelled by product), saves it,
    /// and rebuilds the graph in the projected space (see the module doc).
    pub(super) fn fit_projection(&self, opts: FitOptions) -> Result<ProjectionInfo, CatalogError> {
        let snap = self.snapshot()?;
        let labels = self.table.read().labels_of(snap.live.iter().map(|(id, _)| *id));
        let refs: Vec<&[f32]> = snap.live.iter().map(|(_, v)| v.as_slice()).collect();
        let p = Projection::fit(&refs, &labels, &self.opts.model, opts)?;
        let info = p.info.clone();
        if self.current().projection.is_some_and(|now| now.info.id == info.id) {
            // The same projection (its id is its content): the graph searched now is built in it.
            return Ok(info);
        }
        self.rebuild_with(Some(p), snap)?;
        Ok(info)
    }

    /// Removes the projection (the graph goes back to the model's own vectors).
    pub(super) fn clear_projection(&self) -> Result<bool, CatalogError> {
        if self.current().projection.is_none() {
            return Ok(false);
        }
        self.rebuild_with(None, self.snapshot()?)?;
        Ok(true)
    }

    fn snapshot(&self) -> Result<Snapshot, CatalogError> {
        let _writing = self.writer.lock();
        let records = self.store.as_dyn();
        Ok(Snapshot {
            live: records.live_vectors_after(&self.opts.model, 0)?,
            upto: records.max_image_id()?,
            removals: self.removals.load(Ordering::SeqCst),
        })
    }

    /// Builds the graph of `snap`'s vectors in `projection`'s space without the
    /// writer lock, then, holding it, catches up on images added since (a
    /// delete or purge since: builds again from the store instead), dumps it,
    /// and swaps it and the projection in.
    fn rebuild_with(&self, projection: Option<Projection>, snap: Snapshot) -> Result<(), CatalogError> {
        let records = self.store.as_dyn();
        let projection = projection.map(Arc::new);
        let fresh = build_graph(projection.as_deref(), &self.opts, snap.live)?;
        self.hooks.at(Phase::RefitBuilding);
        // What was added meanwhile, read without waiting for writers, until little
        // is left (writers may keep adding while these are inserted); the rest below.
        let mut upto = snap.upto;
        for _ in 0..8 {
            let newer = records.live_vectors_after(&self.opts.model, upto)?;
            upto = newer.iter().map(|(id, _)| *id).max().unwrap_or(upto);
            let few = newer.len() <= 32;
            fresh.add_many(&project_all(projection.as_deref(), newer))?;
            if few {
                break;
            }
        }
        let writing = self.writer.lock();
        self.hooks.at(Phase::RefitLocked);
        let fresh = if self.removals.load(Ordering::SeqCst) == snap.removals {
            // Only additions since the snapshot, all with higher ids; one at a
            // time, which takes no new flat copy of the graph for a few.
            for (id, v) in project_all(projection.as_deref(), records.live_vectors_after(&self.opts.model, upto)?) {
                fresh.add(id, &v)?;
            }
            fresh
        } else {
            build_graph(projection.as_deref(), &self.opts, records.live_vectors_after(&self.opts.model, 0)?)?
        };
        let keep = graph_dir(&self.dir, &self.opts.model, projection.as_deref());
        fresh.dump(&keep, records.generation()?)?;
        // The projection file is the switch: written (or removed) only once
        // the matching dump is on disk, so a crash leaves either state whole.
        let text = projection.as_ref().map(|p| p.to_json()).transpose()?;
        self.store.put_file(PROJECTION_FILE, text.as_deref())?;
        self.state_version.fetch_add(1, Ordering::SeqCst);
        let replaced = self.swap(Graph { index: Arc::new(fresh), projection });
        // The new graph holds live images only: purge the tombstones, so that
        // the dump's point count matches the store (see `graph::dump_matches_store`).
        self.purge_tombstones()?;
        self.remove_other_dumps(&keep);
        // The old graph is freed outside the lock, so no search or writer waits for that.
        drop(writing);
        drop(replaced);
        self.hooks.at(Phase::RefitSwapped);
        Ok(())
    }

    /// Dumps of other projections of this model are dead weight once `keep` is in use.
    fn remove_other_dumps(&self, keep: &std::path::Path) {
        let prefix = format!("{}@", self.opts.model);
        if let Ok(entries) = std::fs::read_dir(self.dir.join(VECTORS_DIR)) {
            for e in entries.flatten() {
                let stale = e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) && e.path() != keep;
                if stale {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}
