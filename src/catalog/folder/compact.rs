//! Compaction: deleted images stay points of the graph (searches skip them)
//! until the graph is rebuilt without them; then their rows are purged.
//! It runs by itself past a share of tombstones, or on `knockoff compact`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::graph::{build_graph, graph_dir};
use super::{FolderCatalog, Graph};
use crate::catalog::backend::{Backend, Phase};
use crate::catalog::store::RecordStore;
use crate::catalog::CatalogError;

impl FolderCatalog {
    pub(super) fn maybe_compact(&self) -> Result<(), CatalogError> {
        if self.tombstone_share() > self.opts.auto_compact_share {
            tracing::info!("tombstones over {:.0}% of the graph: compacting", self.opts.auto_compact_share * 100.0);
            self.compact()?;
        }
        Ok(())
    }

    /// Rebuilds the graph without tombstones, persists it, then purges the
    /// tombstoned rows from the store. Searches keep running on the old graph
    /// until the new one is swapped in; writers wait.
    pub(super) fn compact(&self) -> Result<usize, CatalogError> {
        let writing = self.writer.lock();
        self.hooks.at(Phase::Compacting);
        let records = self.store.as_dyn();
        let projection = self.current().projection;
        let fresh = build_graph(projection.as_deref(), &self.opts, records.live_vectors_after(&self.opts.model, 0)?)?;
        fresh.dump(&graph_dir(&self.dir, &self.opts.model, projection.as_deref()), records.generation()?)?;
        let replaced = self.swap(Graph { index: Arc::new(fresh), projection });
        let purged = self.purge_tombstones()?;
        drop(writing);
        drop(replaced);
        Ok(purged)
    }

    /// Removes tombstoned rows from the store and the table, once the graph
    /// no longer holds them (the caller holds the writer lock); returns how
    /// many images were purged.
    pub(super) fn purge_tombstones(&self) -> Result<usize, CatalogError> {
        self.removals.fetch_add(1, Ordering::SeqCst);
        let purged = self.store.as_dyn().write(|tx| {
            const GONE: &str = "(SELECT id FROM images WHERE deleted)";
            for table in ["embeddings", "thumbnails", "copy_features"] {
                tx.execute(&format!("DELETE FROM {table} WHERE image IN {GONE}"), &[])?;
            }
            // A deleted product's row stays (a few bytes): a retried DELETE then answers 204, not 404.
            tx.execute("DELETE FROM images WHERE deleted", &[])
        })?;
        self.table.write().purge_tombstones();
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }
}
