//! Keeping Milvus in step with PostgreSQL: placing vectors (and recording
//! in `images.vectors_at` which collection holds them), re-placing a
//! product's vectors when the fields Milvus filters on change, removing
//! deleted ones, and reconciliation, which repairs whatever a failed write
//! or a dead replica left: vectors missing from the collection searched,
//! vectors of deleted images, vectors no image owns, unused collections.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{lock_key, Inner};
use crate::catalog::projection::Projection;
use crate::catalog::store::sql::placeholders;
use crate::catalog::store::{args, Arg};
use crate::catalog::vectors::{VectorIndex, VectorRow};
use crate::catalog::{CatalogError, Product};

/// Rows per reconciliation round.
const ROUND: i64 = 2000;

impl Inner {
    /// Records which collection now holds these images' vectors (`None`: none).
    fn set_vectors_at(&self, ids: &[i64], collection: Option<&str>) -> Result<(), CatalogError> {
        for chunk in ids.chunks(1000) {
            let mut params: Vec<Arg<'_>> = vec![collection.into()];
            params.extend(chunk.iter().map(|id| Arg::Int(*id)));
            let sql = format!("UPDATE images SET vectors_at = $1 WHERE id IN ({})", placeholders(2, chunk.len()));
            self.records().write(|tx| tx.execute(&sql, &params))?;
        }
        Ok(())
    }

    /// Puts vectors (model space) into the current collection and records it.
    pub(super) fn place(&self, vectors: &[(i64, Vec<f32>)]) -> Result<(), CatalogError> {
        if vectors.is_empty() {
            return Ok(());
        }
        let c = self.space.read().clone();
        self.place_in(&c.index, c.projection.as_deref(), vectors)
    }

    pub(super) fn place_in(
        &self,
        index: &crate::catalog::vectors::MilvusCollection,
        projection: Option<&Projection>,
        vectors: &[(i64, Vec<f32>)],
    ) -> Result<(), CatalogError> {
        let projected: Vec<(i64, Vec<f32>)> = match projection {
            Some(p) => vectors.iter().map(|(id, v)| (*id, p.apply(v))).collect(),
            None => vectors.to_vec(),
        };
        let owners: Vec<(i64, std::sync::Arc<Product>)> = {
            let table = self.table.read();
            projected.iter().filter_map(|(id, _)| Some((*id, table.product_of(*id)?.clone()))).collect()
        };
        let products: HashMap<i64, &Product> = owners.iter().map(|(id, p)| (*id, p.as_ref())).collect();
        let rows: Vec<VectorRow<'_>> = projected
            .iter()
            .filter_map(|(id, v)| {
                let p = products.get(id)?;
                Some(VectorRow { id: *id, vector: v, label: p.label, brand: p.brand.as_deref(), category: p.category.as_deref() })
            })
            .collect();
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        index.insert(&rows)?;
        self.set_vectors_at(&ids, Some(&index.name))
    }

    /// Products among `products` whose label, brand or category (the fields
    /// Milvus filters on) differ from what this replica knows.
    pub(super) fn changed_filter_fields<'a>(&self, products: impl Iterator<Item = &'a Product>) -> Vec<String> {
        let table = self.table.read();
        let mut out: Vec<String> = products
            .filter(|p| {
                table.product(&p.product_id).is_some_and(|k| {
                    // Upserts keep a field that is not given.
                    k.label != p.label
                        || p.brand.as_ref().is_some_and(|b| k.brand.as_ref() != Some(b))
                        || p.category.as_ref().is_some_and(|c| k.category.as_ref() != Some(c))
                })
            })
            .map(|p| p.product_id.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Re-places the vectors of these products, so that Milvus filters on their new fields.
    pub(super) fn refresh_filter_fields(&self, product_ids: &[String]) -> Result<(), CatalogError> {
        if product_ids.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::new();
        for p in product_ids {
            ids.extend(self.records().images_of(p)?.iter().map(|i| i.id));
        }
        self.milvus.delete_images(&self.collection().name, &ids)?;
        self.place(&self.records().vectors_of(&self.opts.model, &ids)?)
    }

    pub(super) fn after_delete(&self, ids: &[i64]) -> Result<(), CatalogError> {
        self.sync_changes()?;
        // The store says deleted and every replica stops answering it within
        // a sync; a failure here leaves the vector to reconciliation.
        match self.milvus.delete_images(&self.collection().name, ids) {
            Ok(()) => self.set_vectors_at(ids, None),
            Err(e) => {
                tracing::warn!("deleted in the store; removing {} vectors from Milvus failed ({e}): reconciliation will", ids.len());
                Ok(())
            }
        }
    }

    /// Vectors of live images that are not in the current collection are
    /// placed (any partial copy removed first); vectors of deleted images removed.
    pub(super) fn reconcile(&self) -> Result<usize, CatalogError> {
        // One replica at a time (two would both place what is missing, twice).
        let key = lock_key(&self.uid, "reconcile");
        self.pg.with_session_lock(key, || self.reconcile_alone()).and_then(|r| r.unwrap_or(Ok(0)))
    }

    fn reconcile_alone(&self) -> Result<usize, CatalogError> {
        let coll = self.collection();
        self.milvus.ensure_collection(&coll.name, coll.dim)?;
        let mut placed = 0;
        loop {
            let missing = self.unplaced(&coll.name)?;
            if missing.is_empty() {
                break;
            }
            let ids: Vec<i64> = missing.iter().map(|(id, _)| *id).collect();
            self.milvus.delete_images(&coll.name, &ids)?;
            self.place(&missing)?;
            placed += missing.len();
        }
        loop {
            let gone = self.records().read(|tx| {
                tx.query(
                    "SELECT id, vectors_at FROM images WHERE deleted AND vectors_at IS NOT NULL ORDER BY id LIMIT $1",
                    args![ROUND],
                    |r| Ok((r.i64(0)?, r.string(1)?)),
                )
            })?;
            if gone.is_empty() {
                break;
            }
            let mut by_coll: HashMap<String, Vec<i64>> = HashMap::new();
            for (id, c) in gone {
                by_coll.entry(c).or_default().push(id);
            }
            for (c, ids) in by_coll {
                if self.milvus.collections()?.contains(&c) {
                    self.milvus.delete_images(&c, &ids)?;
                }
                self.set_vectors_at(&ids, None)?;
            }
        }
        if placed > 0 {
            tracing::info!("reconciliation placed {placed} vectors missing from Milvus collection {}", coll.name);
        }
        Ok(placed)
    }

    /// Live vectors not in `collection` (by id, at most a round): placed
    /// elsewhere, or not placed by a writer that had a minute to do it.
    fn unplaced(&self, collection: &str) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        self.records().read(|tx| {
            tx.query(
                "SELECT e.image, e.vector FROM embeddings e JOIN images i ON i.id = e.image
                 WHERE e.model = $1 AND NOT i.deleted AND i.vectors_at IS DISTINCT FROM $2
                   AND (i.vectors_at IS NOT NULL OR i.created < now() - interval '60 seconds')
                 ORDER BY e.image LIMIT $3",
                args![self.opts.model.as_str(), collection, ROUND],
                |r| Ok((r.i64(0)?, r.vector(1)?)),
            )
        })
    }

    /// Live image ids in `[lo, hi]`, and the highest image id ever (0 when none).
    fn live_ids(&self, lo: i64, hi: i64) -> Result<(HashSet<i64>, i64), CatalogError> {
        self.records().read(|tx| {
            let ids = tx.query("SELECT id FROM images WHERE NOT deleted AND id BETWEEN $1 AND $2", args![lo, hi], |r| r.i64(0))?;
            let max = tx.query_one("SELECT COALESCE(MAX(id), 0) FROM images", &[], |r| r.i64(0))?;
            Ok((ids.into_iter().collect(), max))
        })
    }

    /// Live images whose vector Milvus holds in the collection searched now.
    pub(super) fn searchable_count(&self) -> Result<usize, CatalogError> {
        let (live, max) = self.live_ids(0, i64::MAX)?;
        let placed: HashSet<i64> =
            self.milvus.image_ids(&self.collection().name, 0, max)?.into_iter().filter(|id| live.contains(id)).collect();
        Ok(placed.len())
    }

    /// Removes vectors in Milvus whose image the store does not hold live
    /// (written by a replica that died before its store transaction
    /// committed), and collections of this catalog no longer in use.
    pub(super) fn sweep_strays(&self) -> Result<usize, CatalogError> {
        let coll = self.collection().name.clone();
        let (_, max) = self.live_ids(0, 0)?;
        let mut removed = 0;
        let mut lo = 0;
        while lo <= max {
            let hi = lo + 50_000;
            let (live, _) = self.live_ids(lo, hi)?;
            let stray: Vec<i64> = self.milvus.image_ids(&coll, lo, hi)?.into_iter().filter(|id| !live.contains(id)).collect();
            removed += stray.len();
            self.milvus.delete_images(&coll, &stray)?;
            lo = hi + 1;
        }
        let beyond = self.milvus.image_ids_above(&coll, max)?;
        removed += beyond.len();
        self.milvus.delete_images(&coll, &beyond)?;
        let prefix = format!("knockoff_{}_", self.uid);
        for c in self.milvus.collections()? {
            if c.starts_with(&prefix) && c != coll {
                self.milvus.drop_collection(&c)?;
            }
        }
        Ok(removed)
    }

    /// Removes tombstones older than `age` whose vectors are gone from Milvus
    /// (every replica has long applied them); returns how many.
    pub(super) fn purge_deleted(&self, age: Duration) -> Result<usize, CatalogError> {
        let secs = age.as_secs_f64();
        // A deleted product's row stays (a few bytes): a retried DELETE then answers 204, not 404.
        let n = self.records().write(|tx| {
            tx.execute(
                "DELETE FROM images WHERE deleted AND vectors_at IS NULL AND deleted_at < now() - make_interval(secs => $1)",
                args![secs],
            )
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
