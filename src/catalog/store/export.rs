//! Whole rows out of one store and into another with their ids, for
//! `knockoff migrate` ([`crate::catalog::transfer`]) and `knockoff backup`
//! ([`crate::catalog::backup`]).

use super::{args, images, meta, products, Dialect, RecordStore, Tx, TxResult};
use crate::catalog::{CatalogError, Product};

/// A product as stored, with its row id.
#[derive(Debug, Clone)]
pub struct ProductRow {
    pub row: i64,
    pub product: Product,
    pub created_at: String,
    pub updated_at: String,
}

/// An image as stored, with its vector (little-endian f32 bytes).
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: i64,
    pub product_row: i64,
    pub source: String,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub added_at: String,
    pub vector: Vec<u8>,
    pub thumbnail: Option<Vec<u8>>,
    pub copy_features: Option<Vec<u8>>,
}

/// Every live product with its row id and timestamps, read in `tx`.
pub fn products_in(tx: &mut dyn Tx) -> TxResult<Vec<ProductRow>> {
    tx.query(
        &format!("SELECT {}, id, created_at, updated_at FROM products WHERE NOT deleted ORDER BY id", products::PRODUCT_COLUMNS),
        &[],
        |r| Ok(ProductRow { row: r.i64(6)?, product: products::product_from_row(r)?, created_at: r.string(7)?, updated_at: r.string(8)? }),
    )
}

/// Live images after `after` (by id), at most `limit`, with everything stored for them, read in `tx`.
pub fn images_in(tx: &mut dyn Tx, model: &str, after: i64, limit: i64) -> TxResult<Vec<ImageRow>> {
    tx.query(
        "SELECT i.id, i.product, i.source, i.sha256, i.width, i.height, i.added_at, e.vector, t.jpeg, f.data
         FROM images i JOIN embeddings e ON e.image = i.id AND e.model = $1
         LEFT JOIN thumbnails t ON t.image = i.id LEFT JOIN copy_features f ON f.image = i.id
         WHERE NOT i.deleted AND i.id > $2 ORDER BY i.id LIMIT $3",
        args![model, after, limit],
        |r| {
            Ok(ImageRow {
                id: r.i64(0)?,
                product_row: r.i64(1)?,
                source: r.string(2)?,
                sha256: r.string(3)?,
                width: r.u32(4)?,
                height: r.u32(5)?,
                added_at: r.string(6)?,
                vector: r.blob(7)?.to_vec(),
                thumbnail: r.opt_blob(8)?,
                copy_features: r.opt_blob(9)?,
            })
        },
    )
}

impl dyn RecordStore + '_ {
    /// Every live product with its row id and timestamps.
    pub fn export_products(&self) -> Result<Vec<ProductRow>, CatalogError> {
        self.read(|tx| products_in(tx))
    }

    /// Live images after `after` (by id), at most `limit`, with everything stored for them.
    pub fn export_images(&self, model: &str, after: i64, limit: i64) -> Result<Vec<ImageRow>, CatalogError> {
        self.read(|tx| images_in(tx, model, after, limit))
    }

    /// Writes products and images with their ids in one transaction; rows
    /// already there are kept (a resumed migration skips them).
    pub fn import(&self, model: &str, products: &[ProductRow], images: &[ImageRow]) -> Result<(), CatalogError> {
        self.write(|tx| {
            for p in products {
                let attrs = serde_json::Value::Object(p.product.attributes.clone()).to_string();
                let pr = &p.product;
                tx.execute(
                    "INSERT INTO products(id, product_id, label, brand, name, category, attributes, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                    args![
                        p.row,
                        &pr.product_id,
                        pr.label.as_str(),
                        &pr.brand,
                        &pr.name,
                        &pr.category,
                        &attrs,
                        &p.created_at,
                        &p.updated_at
                    ],
                )?;
            }
            for i in images {
                let n = tx.execute(
                    "INSERT INTO images(id, product, source, sha256, width, height, added_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT DO NOTHING",
                    args![i.id, i.product_row, &i.source, &i.sha256, i.width, i.height, &i.added_at],
                )?;
                if n == 0 {
                    continue;
                }
                tx.execute("INSERT INTO embeddings(image, model, vector) VALUES ($1, $2, $3)", args![i.id, model, &i.vector])?;
                images::put_extras(tx, i.id, i.thumbnail.as_deref(), i.copy_features.as_deref())?;
            }
            if tx.dialect() == Dialect::Postgres {
                // Ids given explicitly do not move the sequences: new rows must come after them. Imported
                // images count as old, so that reconciliation places their vectors at once.
                tx.batch(
                    "SELECT setval('products_id_seq', GREATEST((SELECT COALESCE(MAX(id), 0) FROM products), 1));
                     SELECT setval('images_id_seq', GREATEST((SELECT COALESCE(MAX(id), 0) FROM images), 1));",
                )?;
                if let (Some(lo), Some(hi)) = (images.first(), images.last()) {
                    tx.execute(
                        "UPDATE images SET created = 'epoch' WHERE id BETWEEN $1 AND $2 AND vectors_at IS NULL",
                        args![lo.id, hi.id],
                    )?;
                }
            }
            meta::bump_generation(tx)?;
            Ok(())
        })
    }
}
