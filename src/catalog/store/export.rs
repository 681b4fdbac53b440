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

/// A column's kind, for copying rows of any engine to any engine.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Blob,
}

/// A table copied whole: its name, its key column, its columns.
type WholeTable = (&'static str, &'static str, &'static [(&'static str, Kind)]);

/// Tables copied whole, in the order their references need.
const WHOLE_TABLES: &[WholeTable] = &[
    (
        "case_photos",
        "sha256",
        &[("sha256", Kind::Text), ("bytes", Kind::Blob), ("stored_ms", Kind::Int), ("features", Kind::Blob), ("thumbnail", Kind::Blob)],
    ),
    (
        "cases",
        "id",
        &[
            ("id", Kind::Int),
            ("created_at", Kind::Text),
            ("photo", Kind::Text),
            ("embedding", Kind::Blob),
            ("model", Kind::Text),
            ("context", Kind::Text),
            ("answer", Kind::Text),
            ("verdict", Kind::Text),
            ("p_counterfeit", Kind::Int),
            ("priority", Kind::Int),
            ("brand", Kind::Text),
            ("top_product", Kind::Text),
            ("seller_id", Kind::Text),
            ("catalog_generation", Kind::Int),
            ("calibration", Kind::Text),
            ("status", Kind::Text),
            ("decision", Kind::Text),
            ("decision_product", Kind::Text),
            ("decision_note", Kind::Text),
            ("decided_by", Kind::Text),
            ("decided_at", Kind::Text),
            ("reference_image", Kind::Int),
            ("version", Kind::Int),
            ("cluster", Kind::Int),
            ("copied_image", Kind::Int),
            ("regions", Kind::Blob),
        ],
    ),
    (
        "case_links",
        "id",
        &[("id", Kind::Int), ("a", Kind::Int), ("b", Kind::Int), ("kind", Kind::Text), ("p_copy", Kind::Int), ("image_id", Kind::Int)],
    ),
    (
        "case_audit",
        "id",
        &[
            ("id", Kind::Int),
            ("case_id", Kind::Int),
            ("at", Kind::Text),
            ("actor", Kind::Text),
            ("action", Kind::Text),
            ("before", Kind::Text),
            ("after", Kind::Text),
        ],
    ),
    (
        "events",
        "id",
        &[
            ("id", Kind::Int),
            ("event_id", Kind::Text),
            ("type", Kind::Text),
            ("subject", Kind::Text),
            ("risk", Kind::Int),
            ("body", Kind::Text),
            ("created_ms", Kind::Int),
        ],
    ),
    (
        "webhook_targets",
        "name",
        &[("name", Kind::Text), ("cursor", Kind::Int), ("disabled_at", Kind::Text), ("disabled_reason", Kind::Text)],
    ),
    (
        "webhook_deliveries",
        "id",
        &[
            ("id", Kind::Int),
            ("event", Kind::Int),
            ("target", Kind::Text),
            ("subject", Kind::Text),
            ("status", Kind::Text),
            ("attempts", Kind::Int),
            ("next_ms", Kind::Int),
            ("lease_ms", Kind::Int),
            ("last_error", Kind::Text),
            ("delivered_ms", Kind::Int),
        ],
    ),
];

/// One stored value, owned.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn arg(&self) -> super::Arg<'_> {
        match self {
            Value::Null => super::Arg::Null,
            Value::Int(i) => super::Arg::Int(*i),
            Value::Text(s) => super::Arg::Text(s),
            Value::Blob(b) => super::Arg::Bytes(b),
        }
    }
}

/// A batch of rows of one of the tables copied whole (review cases, their photos, the audit trail).
#[derive(Debug, Clone)]
pub struct TableRows {
    table: usize,
    rows: Vec<Vec<Value>>,
}

impl TableRows {
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// The table's name.
    #[must_use]
    pub fn table(&self) -> &'static str {
        WHOLE_TABLES[self.table].0
    }
}

/// How many tables are copied whole ([`whole_rows_in`]).
pub const WHOLE_TABLE_COUNT: usize = WHOLE_TABLES.len();

/// Rows of whole table `t` (< [`WHOLE_TABLE_COUNT`]) after the last row of
/// `previous` (by key; `None`: from the start), at most `limit`, read in `tx`.
pub fn whole_rows_in(tx: &mut dyn Tx, t: usize, previous: Option<&TableRows>, limit: i64) -> TxResult<TableRows> {
    let (table, key, columns) = WHOLE_TABLES[t];
    let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let key_at = names.iter().position(|n| *n == key).unwrap_or(0);
    let after = previous.and_then(|p| p.rows.last()).map(|r| r[key_at].clone());
    let clause = if after.is_some() { format!("WHERE {key} > $2") } else { String::new() };
    let sql = format!("SELECT {} FROM {table} {clause} ORDER BY {key} LIMIT $1", names.join(", "));
    let mut args = vec![super::Arg::Int(limit)];
    if let Some(a) = &after {
        args.push(a.arg());
    }
    let rows = tx.query(&sql, &args, |r| {
        columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| {
                Ok(match kind {
                    Kind::Int => r.int(i)?.map_or(Value::Null, Value::Int),
                    Kind::Text => r.opt_string(i)?.map_or(Value::Null, Value::Text),
                    Kind::Blob => r.opt_blob(i)?.map_or(Value::Null, Value::Blob),
                })
            })
            .collect::<TxResult<Vec<Value>>>()
    })?;
    Ok(TableRows { table: t, rows })
}

impl dyn RecordStore + '_ {
    /// Writes rows of a table copied whole, keys kept, in one transaction (rows already there are kept).
    pub fn import_whole(&self, rows: &TableRows) -> Result<(), CatalogError> {
        let (table, key, columns) = WHOLE_TABLES[rows.table];
        let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let sql = format!(
            "INSERT INTO {table}({}) VALUES ({}) ON CONFLICT DO NOTHING",
            names.join(", "),
            super::sql::placeholders(1, names.len())
        );
        self.write(|tx| {
            for row in &rows.rows {
                let args: Vec<super::Arg<'_>> = row.iter().map(Value::arg).collect();
                tx.execute(&sql, &args)?;
            }
            if tx.dialect() == Dialect::Postgres && key == "id" {
                tx.batch(&format!("SELECT setval('{table}_id_seq', GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1));"))?;
            }
            Ok(())
        })
    }
}
