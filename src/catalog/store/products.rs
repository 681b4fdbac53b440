//! Products: the caller's `product_id` is the key, a row id the internal
//! one; deleting a product tombstones it with its images.

use std::collections::HashMap;

use super::{args, meta, now, RecordStore, Row, SqlError, Tx};
use crate::catalog::{CatalogError, Label, Product, StoreCounts};

/// The columns [`product_from_row`] reads, in order.
pub(super) const PRODUCT_COLUMNS: &str = "product_id, label, brand, name, category, attributes";

/// A product from the row's first six columns ([`PRODUCT_COLUMNS`]).
pub(crate) fn product_from_row(r: &dyn Row) -> Result<Product, SqlError> {
    let label = r.str(1)?;
    Ok(Product {
        product_id: r.string(0)?,
        label: label.parse::<Label>().map_err(SqlError::Data)?,
        brand: r.opt_string(2)?,
        name: r.opt_string(3)?,
        category: r.opt_string(4)?,
        attributes: serde_json::from_str(r.str(5)?).unwrap_or_default(),
    })
}

/// Creates or updates a product (fields not given keep their value; a
/// deleted product comes back); returns its row id.
pub(super) fn upsert(tx: &mut dyn Tx, p: &Product, ts: &str) -> Result<i64, SqlError> {
    let attrs = serde_json::Value::Object(p.attributes.clone()).to_string();
    tx.query_one(
        "INSERT INTO products(product_id, label, brand, name, category, attributes, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (product_id) DO UPDATE SET label = excluded.label,
            brand = COALESCE(excluded.brand, products.brand), name = COALESCE(excluded.name, products.name),
            category = COALESCE(excluded.category, products.category),
            attributes = CASE WHEN excluded.attributes = '{}' THEN products.attributes ELSE excluded.attributes END,
            updated_at = excluded.updated_at, deleted = FALSE{touch}
         RETURNING id",
        args![&p.product_id, p.label.as_str(), &p.brand, &p.name, &p.category, &attrs, ts],
        |r| r.i64(0),
    )
}

impl dyn RecordStore + '_ {
    /// Creates or updates a product's metadata; returns its row id.
    pub fn upsert_product(&self, p: &Product) -> Result<i64, CatalogError> {
        let ts = now();
        self.write(|tx| {
            let row = upsert(tx, p, &ts)?;
            meta::bump_generation(tx)?;
            Ok(row)
        })
    }

    pub fn product(&self, product_id: &str) -> Result<Option<Product>, CatalogError> {
        Ok(self.product_row(product_id)?.map(|(_, p)| p))
    }

    /// One live product with its row id.
    pub fn product_row(&self, product_id: &str) -> Result<Option<(i64, Product)>, CatalogError> {
        self.read(|tx| {
            tx.query_opt(
                &format!("SELECT {PRODUCT_COLUMNS}, id FROM products WHERE product_id = $1 AND NOT deleted"),
                args![product_id],
                |r| Ok((r.i64(6)?, product_from_row(r)?)),
            )
        })
    }

    /// Up to `limit` live products with ids after `starting_after` (`""`: from
    /// the first), in id order: one page of a list.
    pub fn products_page(&self, starting_after: &str, limit: usize) -> Result<Vec<Product>, CatalogError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|tx| {
            tx.query(
                &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE NOT deleted AND product_id > $1 ORDER BY product_id LIMIT $2"),
                args![starting_after, limit],
                product_from_row,
            )
        })
    }

    /// Every product (deleted ones too), with its row id.
    pub fn products(&self) -> Result<Vec<(i64, Product)>, CatalogError> {
        self.read(|tx| tx.query(&format!("SELECT {PRODUCT_COLUMNS}, id FROM products"), &[], |r| Ok((r.i64(6)?, product_from_row(r)?))))
    }

    /// Marks the product and all its images deleted; returns the image ids tombstoned.
    pub fn delete_product(&self, product_id: &str) -> Result<Vec<i64>, CatalogError> {
        self.write(|tx| {
            let Some((row, deleted)) =
                tx.query_opt("SELECT id, deleted FROM products WHERE product_id = $1", args![product_id], |r| Ok((r.i64(0)?, r.bool(1)?)))?
            else {
                return Ok(Err(CatalogError::UnknownProduct(product_id.into())));
            };
            if deleted {
                return Ok(Err(CatalogError::ProductDeleted(product_id.into())));
            }
            let ids = tx.query(
                "UPDATE images SET deleted = TRUE, deleted_at = CURRENT_TIMESTAMP{touch} WHERE product = $1 AND NOT deleted RETURNING id",
                args![row],
                |r| r.i64(0),
            )?;
            tx.execute("UPDATE products SET deleted = TRUE{touch} WHERE id = $1", args![row])?;
            meta::bump_generation(tx)?;
            Ok(Ok(ids))
        })?
    }

    /// Live images per product: the brand's own (listing photos a decision made references are not counted).
    pub fn image_counts(&self) -> Result<HashMap<String, usize>, CatalogError> {
        let rows = self.read(|tx| {
            tx.query(
                &format!(
                    "SELECT p.product_id, COUNT(*) FROM images i JOIN products p ON p.id = i.product
                     WHERE NOT i.deleted AND {} = 0 GROUP BY p.product_id",
                    crate::catalog::types::LISTING_SQL
                ),
                &[],
                |r| Ok((r.string(0)?, usize::try_from(r.i64(1)?).unwrap_or(0))),
            )
        })?;
        Ok(rows.into_iter().collect())
    }

    /// Counts: products with a live image, live images, tombstones, per label, per brand.
    pub fn counts(&self) -> Result<StoreCounts, CatalogError> {
        const LIVE: &str = "FROM products p WHERE EXISTS (SELECT 1 FROM images i WHERE i.product = p.id AND NOT i.deleted)";
        self.read(|tx| {
            let mut one = |sql: &str| tx.query_one(sql, &[], |r| r.i64(0));
            let products = one(&format!("SELECT COUNT(*) {LIVE}"))?;
            let images = one("SELECT COUNT(*) FROM images WHERE NOT deleted")?;
            let tombstones = one("SELECT COUNT(*) FROM images WHERE deleted")?;
            let mut group = |sql: &str| tx.query(sql, &[], |r| Ok((r.opt_string(0)?.unwrap_or_default(), r.i64(1)?)));
            let per_label = group(&format!("SELECT p.label, COUNT(*) {LIVE} GROUP BY p.label ORDER BY p.label"))?;
            let per_brand = group(&format!("SELECT p.brand, COUNT(*) {LIVE} GROUP BY p.brand ORDER BY COUNT(*) DESC, p.brand"))?;
            Ok(StoreCounts { products, images, tombstones, per_label, per_brand })
        })
    }
}
