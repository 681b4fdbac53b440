//! Images: one row per reference photo of a product, with its embedding for
//! the catalog's model, its thumbnail and its copy-detection features.

use std::collections::HashSet;

use super::{args, meta, now, products, RecordStore, SqlError, Tx};
use crate::catalog::{CatalogError, ImageRecord, NewImage};

/// An image committed by [`RecordStore::add_images`]: its id and its product's row.
pub type Added = Option<(i64, i64)>;

/// An image's product row and state, for the in-memory table.
#[derive(Debug, Clone, Copy)]
pub struct ImageOwner {
    pub id: i64,
    pub product_row: i64,
    pub deleted: bool,
    /// A listing photo a decision made a reference.
    pub listing: bool,
}

/// What adding images does to their products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Products {
    /// Creates or updates each image's product from the item (a manifest, a job).
    Upsert,
    /// Adds only to products that exist now, leaving them as they are: a
    /// product deleted (or relabelled) while its photo was being embedded is
    /// neither brought back nor overwritten.
    MustExist,
}

/// Inserts one image's rows for `model` (its product's row given); `None`
/// when the product already has a live image with the same bytes.
fn insert_image(tx: &mut dyn Tx, model: &str, it: &NewImage, product: i64, ts: &str) -> Result<Option<i64>, SqlError> {
    let id = tx.query_opt(
        "INSERT INTO images(product, source, sha256, width, height, added_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING RETURNING id",
        args![product, &it.source, &it.sha256, it.width, it.height, ts],
        |r| r.i64(0),
    )?;
    let Some(id) = id else { return Ok(None) };
    tx.execute(
        "INSERT INTO embeddings(image, model, vector) VALUES ($1, $2, $3)",
        args![id, model, &crate::util::f32s_to_le_bytes(&it.embedding)],
    )?;
    put_extras(tx, id, it.thumbnail.as_deref(), it.copy_features.as_deref())?;
    Ok(Some(id))
}

/// An image's thumbnail and copy features, where given.
pub(super) fn put_extras(tx: &mut dyn Tx, id: i64, thumbnail: Option<&[u8]>, features: Option<&[u8]>) -> Result<(), SqlError> {
    if let Some(t) = thumbnail {
        tx.execute("INSERT INTO thumbnails(image, jpeg) VALUES ($1, $2)", args![id, t])?;
    }
    if let Some(f) = features {
        tx.execute("INSERT INTO copy_features(image, data) VALUES ($1, $2)", args![id, f])?;
    }
    Ok(())
}

const IMAGE_COLUMNS: &str = "i.id, p.product_id, i.source, i.sha256, i.width, i.height, i.added_at, i.deleted";

fn images_where(tx: &mut dyn Tx, clause: &str, arg: super::Arg<'_>) -> Result<Vec<ImageRecord>, SqlError> {
    tx.query(&format!("SELECT {IMAGE_COLUMNS} FROM images i JOIN products p ON p.id = i.product {clause}"), &[arg], |r| {
        Ok(ImageRecord {
            id: r.i64(0)?,
            product_id: r.string(1)?,
            source: r.string(2)?,
            sha256: r.string(3)?,
            width: r.u32(4)?,
            height: r.u32(5)?,
            added_at: r.string(6)?,
            deleted: r.bool(7)?,
        })
    })
}

impl dyn RecordStore + '_ {
    /// Adds images in one transaction (their products as `products` says):
    /// per item its new image id and product row, or `None` when that
    /// product already has a live image with the same bytes (a re-run skips
    /// it). With [`Products::MustExist`], a product that is not there now
    /// makes it `UnknownProduct` and nothing is written.
    pub fn add_images(&self, model: &str, items: &[NewImage], products: Products) -> Result<Vec<Added>, CatalogError> {
        let ts = now();
        let added = self.write(|tx| {
            let mut rows = Vec::with_capacity(items.len());
            for it in items {
                rows.push(match products {
                    Products::Upsert => products::upsert(tx, &it.product, &ts)?,
                    Products::MustExist => {
                        let id = &it.product.product_id;
                        match tx.query_opt("SELECT id FROM products WHERE product_id = $1 AND NOT deleted", args![id], |r| r.i64(0))? {
                            Some(row) => row,
                            None => return Ok(Err(id.clone())),
                        }
                    }
                });
            }
            let mut out = Vec::with_capacity(items.len());
            for (it, product) in items.iter().zip(rows) {
                out.push(insert_image(tx, model, it, product, &ts)?.map(|id| (id, product)));
            }
            meta::bump_generation(tx)?;
            Ok(Ok(out))
        })?;
        added.map_err(CatalogError::UnknownProduct)
    }

    pub fn delete_image(&self, id: i64) -> Result<(), CatalogError> {
        let n = self.write(|tx| {
            let n = tx.execute(
                "UPDATE images SET deleted = TRUE, deleted_at = CURRENT_TIMESTAMP{touch} WHERE id = $1 AND NOT deleted",
                args![id],
            )?;
            meta::bump_generation(tx)?;
            Ok(n)
        })?;
        if n == 0 {
            return Err(CatalogError::UnknownImage(id));
        }
        Ok(())
    }

    /// A product's live images, in id order.
    pub fn images_of(&self, product_id: &str) -> Result<Vec<ImageRecord>, CatalogError> {
        self.read(|tx| images_where(tx, "WHERE p.product_id = $1 AND NOT i.deleted ORDER BY i.id", product_id.into()))
    }

    /// One image, deleted or not.
    pub fn image(&self, id: i64) -> Result<Option<ImageRecord>, CatalogError> {
        Ok(self.read(|tx| images_where(tx, "WHERE i.id = $1", id.into()))?.pop())
    }

    /// The thumbnail of a live image.
    pub fn thumbnail(&self, id: i64) -> Result<Option<Vec<u8>>, CatalogError> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT t.jpeg FROM thumbnails t JOIN images i ON i.id = t.image WHERE t.image = $1 AND NOT i.deleted",
                args![id],
                |r| Ok(r.blob(0)?.to_vec()),
            )
        })
    }

    /// All live (`product_id`, sha256) pairs, to skip what is already indexed.
    pub fn live_hashes(&self) -> Result<HashSet<(String, String)>, CatalogError> {
        self.pairs("SELECT p.product_id, i.sha256 FROM images i JOIN products p ON p.id = i.product WHERE NOT i.deleted")
    }

    /// Live (`product_id`, source) pairs: lets a resumed run skip items without fetching them.
    pub fn live_sources(&self) -> Result<HashSet<(String, String)>, CatalogError> {
        self.pairs("SELECT p.product_id, i.source FROM images i JOIN products p ON p.id = i.product WHERE NOT i.deleted")
    }

    fn pairs(&self, sql: &str) -> Result<HashSet<(String, String)>, CatalogError> {
        Ok(self.read(|tx| tx.query(sql, &[], |r| Ok((r.string(0)?, r.string(1)?))))?.into_iter().collect())
    }

    /// (image id, product row, deleted) for every image.
    pub fn image_owners(&self) -> Result<Vec<ImageOwner>, CatalogError> {
        let sql = format!("SELECT i.id, i.product, i.deleted, {} FROM images i", crate::catalog::types::LISTING_SQL);
        self.read(|tx| {
            tx.query(&sql, &[], |r| Ok(ImageOwner { id: r.i64(0)?, product_row: r.i64(1)?, deleted: r.bool(2)?, listing: r.bool(3)? }))
        })
    }

    /// The copy-detection features of every live image that has them.
    pub fn copy_features(&self) -> Result<Vec<(i64, Vec<u8>)>, CatalogError> {
        self.read(|tx| {
            tx.query("SELECT c.image, c.data FROM copy_features c JOIN images i ON i.id = c.image WHERE NOT i.deleted", &[], |r| {
                Ok((r.i64(0)?, r.blob(1)?.to_vec()))
            })
        })
    }

    /// Stores (or replaces) the copy-detection features of images, in one transaction.
    pub fn put_copy_features(&self, features: &[(i64, Vec<u8>)]) -> Result<(), CatalogError> {
        self.write(|tx| {
            for (id, data) in features {
                tx.execute(
                    "INSERT INTO copy_features(image, data) VALUES ($1, $2) ON CONFLICT (image) DO UPDATE SET data = excluded.data",
                    args![*id, data],
                )?;
            }
            Ok(())
        })
    }

    /// Live embeddings of `model` with image id greater than `after`, in id order.
    pub fn live_vectors_after(&self, model: &str, after: i64) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        self.live_vectors("AND i.id > $2 ORDER BY e.image", args![model, after])
    }

    /// Live vectors of `model` ordered by their images' source (file name or
    /// URL), then id: an order that does not depend on how indexing was
    /// scheduled or resumed.
    pub fn live_vectors_by_source(&self, model: &str) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        self.live_vectors("ORDER BY i.source, e.image", args![model])
    }

    /// The stored vectors of these live images, in id order.
    pub fn vectors_of(&self, model: &str, ids: &[i64]) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut params: Vec<super::Arg<'_>> = vec![model.into()];
            params.extend(chunk.iter().map(|id| super::Arg::Int(*id)));
            out.extend(
                self.live_vectors(&format!("AND i.id IN ({}) ORDER BY e.image", super::sql::placeholders(2, chunk.len())), &params)?,
            );
        }
        Ok(out)
    }

    /// Live `(image, vector)` rows of model `$1` where `rest` (a condition and an order) holds.
    fn live_vectors(&self, rest: &str, params: &[super::Arg<'_>]) -> Result<Vec<(i64, Vec<f32>)>, CatalogError> {
        let sql = format!(
            "SELECT e.image, e.vector FROM embeddings e JOIN images i ON i.id = e.image WHERE e.model = $1 AND NOT i.deleted {rest}"
        );
        self.read(|tx| tx.query(&sql, params, |r| Ok((r.i64(0)?, r.vector(1)?))))
    }

    /// Highest image id ever kept (deleted images included; 0 when none).
    pub fn max_image_id(&self) -> Result<i64, CatalogError> {
        self.read(|tx| tx.query_one("SELECT COALESCE(MAX(id), 0) FROM images", &[], |r| r.i64(0)))
    }

    /// Stored vectors of `model` with image id up to `max_id` (deleted images included).
    pub fn count_vectors_upto(&self, model: &str, max_id: i64) -> Result<usize, CatalogError> {
        let n = self.read(|tx| {
            tx.query_one("SELECT COUNT(*) FROM embeddings WHERE model = $1 AND image <= $2", args![model, max_id], |r| r.i64(0))
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}
