//! One Milvus collection per catalog and projection: a new projection's
//! collection is filled before every replica switches to it (the projection
//! file is the switch), so searches never meet a half-filled one.

use super::Inner;
use crate::catalog::files::PROJECTION_FILE;
use crate::catalog::projection::Projection;
use crate::catalog::store::RecordStore;
use crate::catalog::vectors::MilvusCollection;
use crate::catalog::CatalogError;

/// A Milvus collection name for this catalog and projection (letters, digits, underscores).
pub(super) fn collection_name(uid: &str, projection: Option<&Projection>) -> String {
    let space = projection.map_or_else(|| "raw".to_string(), |p| p.info.id.clone());
    format!("knockoff_{uid}_{space}").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

impl Inner {
    /// Fills a new collection for `projection`, then switches every replica to it.
    pub(super) fn switch_space(&self, projection: Option<&Projection>, live: &[(i64, Vec<f32>)]) -> Result<(), CatalogError> {
        let name = collection_name(&self.uid, projection);
        if name == self.collection().name {
            // The same projection (its id is its content): the collection searched now already holds it.
            return Ok(());
        }
        let dim = projection.map_or(self.opts.dim, |p| p.info.out_dim);
        let _ = self.milvus.drop_collection(&name);
        self.milvus.ensure_collection(&name, dim)?;
        self.place_in(&MilvusCollection { milvus: self.milvus.clone(), name, dim }, projection, live)?;
        let text = projection.map(Projection::to_json).transpose()?;
        self.pg.put_file(PROJECTION_FILE, text.as_deref())?;
        self.sync_files()?;
        // Images added meanwhile went to the old collection: place them too.
        self.reconcile()?;
        Ok(())
    }
}
