//! Review cases: a lookup kept with its photo (content-addressed, stored
//! once however many cases show it), its embedding, the answer it got and
//! the catalog and calibration it was answered with; an analyst's decision
//! on it, versioned so that two analysts cannot overwrite each other; and
//! an audit trail of every decision and undo. Creating and deciding a case
//! records its event (`case.created`, `case.decided`) in the same transaction. The review use case that
//! reads and writes these is [`crate::review`].

use super::{args, now, ppm, EventKind, NewEvent, RecordStore, Row, SqlError, Tx};
use crate::catalog::types::LISTING_SQL;
use crate::catalog::CatalogError;

/// A lookup to record as a case.
#[derive(Debug, Clone)]
pub struct NewCase<'a> {
    pub photo: &'a [u8],
    pub sha256: &'a str,
    pub embedding: &'a [f32],
    /// Its content regions' vectors (each as long as `embedding`).
    pub regions: &'a [Vec<f32>],
    pub model: &'a str,
    /// The listing context (a JSON object).
    pub context: &'a str,
    /// The answer (JSON).
    pub answer: &'a str,
    pub verdict: &'a str,
    pub p_counterfeit: f32,
    /// Review priority: higher is reviewed first.
    pub priority: i64,
    /// The top match's brand and product.
    pub brand: Option<&'a str>,
    pub top_product: Option<&'a str>,
    pub seller_id: Option<&'a str>,
    /// The catalog's change counter when it was answered.
    pub catalog_generation: u64,
    /// When the calibration it was answered with was fitted (`None`: the shipped one).
    pub calibration: Option<&'a str>,
}

/// An analyst's decision on a case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DecisionRow {
    pub decision: String,
    pub product_id: Option<String>,
    pub note: Option<String>,
    /// The API key that decided (`None` on an open loopback service).
    pub by: Option<String>,
    pub at: String,
    /// The catalog image the decision added (`None`: it added none).
    pub reference_image: Option<i64>,
}

/// A stored case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    pub id: i64,
    pub created_at: String,
    pub sha256: String,
    pub model: String,
    pub context: String,
    pub answer: String,
    pub verdict: String,
    pub p_counterfeit: f32,
    pub priority: i64,
    pub brand: Option<String>,
    pub top_product: Option<String>,
    pub seller_id: Option<String>,
    pub catalog_generation: u64,
    pub calibration: Option<String>,
    /// `open`, `decided` or `skipped`.
    pub status: String,
    pub decision: Option<DecisionRow>,
    /// Bumped by every decision and undo (the `ETag`).
    pub version: i64,
    /// The seller network it is in (`None`: not clustered yet; its own id while alone).
    pub cluster: Option<i64>,
}

/// A case's photo (`bytes` is `None` once retention dropped it) and its model vector.
#[derive(Debug, Clone)]
pub struct CasePhoto {
    pub bytes: Option<Vec<u8>>,
    pub embedding: Vec<f32>,
}

/// A decided case as a labelled lookup, for fitting ([`RecordStore::reviewed_cases`]).
#[derive(Debug, Clone)]
pub struct ReviewedCase {
    pub decision: String,
    /// The row id of the product decided on (`None`: none, or it is gone).
    pub product: Option<i64>,
    pub embedding: Vec<f32>,
    /// The catalog image the decision added.
    pub reference_image: Option<i64>,
}

/// One audit record: who did what to a case, and the decision before and after (JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub at: String,
    pub actor: Option<String>,
    pub action: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The order cases are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaseSort {
    /// Most worth reviewing first (ties: newest first).
    #[default]
    Priority,
    /// Newest first.
    Time,
}

/// Which cases to list, from where.
#[derive(Debug, Clone, Default)]
pub struct CaseQuery {
    pub status: Option<String>,
    pub verdict: Option<String>,
    pub brand: Option<String>,
    pub seller_id: Option<String>,
    pub min_p_counterfeit: Option<f32>,
    pub sort: CaseSort,
    /// Continue after this case (its priority and id, as the previous page ended).
    pub after: Option<(i64, i64)>,
    pub limit: usize,
}

/// A decision to record, or `None` to undo one.
#[derive(Debug, Clone)]
pub struct DecisionWrite<'a> {
    pub case: i64,
    /// The version the analyst saw; the write fails with [`Versioned::Stale`] otherwise.
    pub expected_version: i64,
    pub actor: Option<&'a str>,
    /// `None`: undo (the case is open again).
    pub decision: Option<&'a DecisionRow>,
    /// `skipped` or `decided` with a decision; ignored for an undo.
    pub status: &'a str,
}

/// What a versioned write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioned {
    /// Written; the case's new version.
    Written(i64),
    /// Someone changed it first; its current version.
    Stale(i64),
    Missing,
}

const CASE_COLUMNS: &str = "c.id, c.created_at, c.photo, c.model, c.context, c.answer, c.verdict, c.p_counterfeit, c.priority, c.brand,
    c.top_product, c.seller_id, c.catalog_generation, c.calibration, c.status, c.decision, c.decision_product, c.decision_note,
    c.decided_by, c.decided_at, c.reference_image, c.version, c.cluster";

fn case_from_row(r: &dyn Row) -> Result<CaseRow, SqlError> {
    let decision = match r.opt_string(15)? {
        Some(decision) => Some(DecisionRow {
            decision,
            product_id: r.opt_string(16)?,
            note: r.opt_string(17)?,
            by: r.opt_string(18)?,
            at: r.opt_string(19)?.unwrap_or_default(),
            reference_image: r.int(20)?,
        }),
        None => None,
    };
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let p_counterfeit = (r.i64(7)? as f64 / 1e6) as f32;
    Ok(CaseRow {
        id: r.i64(0)?,
        created_at: r.string(1)?,
        sha256: r.string(2)?,
        model: r.string(3)?,
        context: r.string(4)?,
        answer: r.string(5)?,
        verdict: r.string(6)?,
        p_counterfeit,
        priority: r.i64(8)?,
        brand: r.opt_string(9)?,
        top_product: r.opt_string(10)?,
        seller_id: r.opt_string(11)?,
        catalog_generation: u64::try_from(r.i64(12)?).unwrap_or(0),
        calibration: r.opt_string(13)?,
        status: r.string(14)?,
        decision,
        version: r.i64(21)?,
        cluster: r.int(22)?,
    })
}

fn case_in(tx: &mut dyn Tx, id: i64) -> Result<Option<CaseRow>, SqlError> {
    tx.query_opt(&format!("SELECT {CASE_COLUMNS} FROM cases c WHERE c.id = $1"), args![id], case_from_row)
}

/// The `WHERE` clause and arguments for a listing (arguments as owned values, bound in order).
fn list_clause(q: &CaseQuery) -> (String, Vec<Owned>) {
    let mut conds = Vec::new();
    let mut vals = Vec::new();
    let mut eq = |col: &str, v: &Option<String>| {
        if let Some(v) = v {
            vals.push(Owned::Text(v.clone()));
            conds.push(format!("{col} = ${}", vals.len()));
        }
    };
    eq("c.status", &q.status);
    eq("c.verdict", &q.verdict);
    eq("c.brand", &q.brand);
    eq("c.seller_id", &q.seller_id);
    if let Some(p) = q.min_p_counterfeit {
        vals.push(Owned::Int(ppm(p)));
        conds.push(format!("c.p_counterfeit >= ${}", vals.len()));
    }
    if let Some((priority, id)) = q.after {
        vals.push(Owned::Int(id));
        let idp = vals.len();
        match q.sort {
            CaseSort::Priority => {
                vals.push(Owned::Int(priority));
                let pp = vals.len();
                conds.push(format!("(c.priority < ${pp} OR (c.priority = ${pp} AND c.id < ${idp}))"));
            }
            CaseSort::Time => conds.push(format!("c.id < ${idp}")),
        }
    }
    let clause = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    (clause, vals)
}

/// Stored JSON text as a value (`null` if it does not parse).
fn json_or_null(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_default()
}

/// A statement argument owned by the caller's frame.
enum Owned {
    Text(String),
    Int(i64),
}

impl dyn RecordStore + '_ {
    /// Records a case (its photo stored once per content); returns its id.
    pub fn add_case(&self, c: &NewCase<'_>) -> Result<i64, CatalogError> {
        let ts = now();
        let vector = crate::util::f32s_to_le_bytes(c.embedding);
        let regions: Option<Vec<u8>> = (!c.regions.is_empty()).then(|| crate::util::f32s_to_le_bytes(&c.regions.concat()));
        let generation = i64::try_from(c.catalog_generation).unwrap_or(i64::MAX);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO case_photos(sha256, bytes, stored_ms) VALUES ($1, $2, {now_ms})
                 ON CONFLICT (sha256) DO UPDATE SET bytes = COALESCE(case_photos.bytes, excluded.bytes), stored_ms = excluded.stored_ms",
                args![c.sha256, c.photo],
            )?;
            let id = tx.query_one(
                "INSERT INTO cases(created_at, photo, embedding, model, context, answer, verdict, p_counterfeit, priority, brand,
                                   top_product, seller_id, catalog_generation, calibration, regions)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
                args![
                    &ts,
                    c.sha256,
                    &vector,
                    c.model,
                    c.context,
                    c.answer,
                    c.verdict,
                    ppm(c.p_counterfeit),
                    c.priority,
                    c.brand,
                    c.top_product,
                    c.seller_id,
                    generation,
                    c.calibration,
                    &regions
                ],
                |r| r.i64(0),
            )?;
            let data = serde_json::json!({
                "case_id": id,
                "url": format!("/v1/cases/{id}"),
                "verdict": c.verdict,
                "p_counterfeit": c.p_counterfeit,
                "brand": c.brand,
                "product_id": c.top_product,
                "listing": json_or_null(c.context),
            });
            let subject = Some(format!("case:{id}"));
            super::events::emit(tx, &NewEvent { kind: EventKind::CaseCreated, subject, risk: Some(c.p_counterfeit), data })?;
            Ok(id)
        })
    }

    pub fn case(&self, id: i64) -> Result<Option<CaseRow>, CatalogError> {
        self.read(|tx| case_in(tx, id))
    }

    /// A case's photo and embedding (`None`: no such case).
    pub fn case_photo(&self, id: i64) -> Result<Option<CasePhoto>, CatalogError> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT p.bytes, c.embedding FROM cases c LEFT JOIN case_photos p ON p.sha256 = c.photo WHERE c.id = $1",
                args![id],
                |r| Ok(CasePhoto { bytes: r.opt_blob(0)?, embedding: r.vector(1)? }),
            )
        })
    }

    /// Cases as `q` asks, at most `q.limit`.
    pub fn cases(&self, q: &CaseQuery) -> Result<Vec<CaseRow>, CatalogError> {
        let (clause, vals) = list_clause(q);
        let order = match q.sort {
            CaseSort::Priority => "c.priority DESC, c.id DESC",
            CaseSort::Time => "c.id DESC",
        };
        let sql = format!("SELECT {CASE_COLUMNS} FROM cases c {clause} ORDER BY {order} LIMIT {}", q.limit);
        let args: Vec<super::Arg<'_>> = vals
            .iter()
            .map(|v| match v {
                Owned::Text(s) => super::Arg::Text(s),
                Owned::Int(i) => super::Arg::Int(*i),
            })
            .collect();
        self.read(|tx| tx.query(&sql, &args, case_from_row))
    }

    /// The case's audit trail, oldest first.
    pub fn case_audit(&self, id: i64) -> Result<Vec<AuditRow>, CatalogError> {
        self.read(|tx| {
            tx.query("SELECT at, actor, action, before, after FROM case_audit WHERE case_id = $1 ORDER BY id", args![id], |r| {
                Ok(AuditRow {
                    at: r.string(0)?,
                    actor: r.opt_string(1)?,
                    action: r.string(2)?,
                    before: r.opt_string(3)?,
                    after: r.opt_string(4)?,
                })
            })
        })
    }

    /// Records a decision (or, with `decision: None`, undoes one) if the case
    /// is still at `expected_version`, with its audit record, in one transaction.
    pub fn write_decision(&self, w: &DecisionWrite<'_>) -> Result<Versioned, CatalogError> {
        let ts = now();
        self.write(|tx| {
            let Some(before) = case_in(tx, w.case)? else { return Ok(Versioned::Missing) };
            if before.version != w.expected_version {
                return Ok(Versioned::Stale(before.version));
            }
            let d = w.decision;
            let status = if d.is_some() { w.status } else { "open" };
            tx.execute(
                "UPDATE cases SET status = $2, decision = $3, decision_product = $4, decision_note = $5, decided_by = $6,
                        decided_at = $7, reference_image = $8, version = version + 1 WHERE id = $1",
                args![
                    w.case,
                    status,
                    d.map(|d| d.decision.as_str()),
                    d.and_then(|d| d.product_id.as_deref()),
                    d.and_then(|d| d.note.as_deref()),
                    d.and_then(|d| d.by.as_deref()),
                    d.map(|d| d.at.as_str()),
                    d.and_then(|d| d.reference_image)
                ],
            )?;
            let json = |d: Option<&DecisionRow>| d.map(|d| serde_json::to_string(d).unwrap_or_default());
            let action = if d.is_some() { "decide" } else { "undo" };
            let (before_json, after_json) = (json(before.decision.as_ref()), json(d));
            tx.execute(
                "INSERT INTO case_audit(case_id, at, actor, action, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
                args![w.case, &ts, w.actor, action, &before_json, &after_json],
            )?;
            let data = serde_json::json!({
                "case_id": w.case,
                "url": format!("/v1/cases/{}", w.case),
                "status": status,
                "decision": d,
                "version": before.version + 1,
                "verdict": before.verdict,
                "listing": json_or_null(&before.context),
            });
            let subject = Some(format!("case:{}", w.case));
            super::events::emit(tx, &NewEvent { kind: EventKind::CaseDecided, subject, risk: None, data })?;
            Ok(Versioned::Written(before.version + 1))
        })
    }

    /// Catalog images a decision added whose case no longer names them (the
    /// process stopped between adding the reference and recording the decision).
    pub fn stray_case_images(&self) -> Result<Vec<i64>, CatalogError> {
        self.read(|tx| {
            tx.query(
                &format!(
                    "SELECT i.id FROM images i WHERE NOT i.deleted AND {LISTING_SQL} = 1
                       AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.reference_image = i.id)"
                ),
                &[],
                |r| r.i64(0),
            )
        })
    }

    /// Drops the bytes of case photos stored more than `days` ago (cases,
    /// decisions and the audit trail stay); returns how many were dropped.
    pub fn purge_case_photos(&self, days: u32) -> Result<u64, CatalogError> {
        let cutoff_ms = i64::from(days) * 86_400_000;
        self.write(|tx| {
            tx.execute("UPDATE case_photos SET bytes = NULL WHERE bytes IS NOT NULL AND stored_ms <= {now_ms} - $1", args![cutoff_ms])
        })
    }

    /// Cases decided `authentic`, `counterfeit` or `not_in_catalog` whose
    /// embedding is `model`'s, oldest first.
    pub fn reviewed_cases(&self, model: &str) -> Result<Vec<ReviewedCase>, CatalogError> {
        self.read(|tx| {
            tx.query(
                "SELECT c.decision, p.id, c.embedding, c.reference_image FROM cases c
                 LEFT JOIN products p ON p.product_id = c.decision_product AND NOT p.deleted
                 WHERE c.decision IN ('authentic', 'counterfeit', 'not_in_catalog') AND c.model = $1 ORDER BY c.id",
                args![model],
                |r| Ok(ReviewedCase { decision: r.string(0)?, product: r.int(1)?, embedding: r.vector(2)?, reference_image: r.int(3)? }),
            )
        })
    }

    /// How many cases there are per status.
    pub fn case_counts(&self) -> Result<Vec<(String, i64)>, CatalogError> {
        self.read(|tx| {
            tx.query("SELECT status, COUNT(*) FROM cases GROUP BY status ORDER BY status", &[], |r| Ok((r.string(0)?, r.i64(1)?)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_stored_in_millionths_and_clamped() {
        assert_eq!(ppm(0.5), 500_000);
        assert_eq!(ppm(1.5), 1_000_000);
        assert_eq!(ppm(-0.1), 0);
    }

    #[test]
    fn a_listing_continues_after_the_last_case_of_the_previous_page() {
        let q = CaseQuery { status: Some("open".into()), after: Some((7, 42)), ..Default::default() };
        let (clause, vals) = list_clause(&q);
        assert_eq!(clause, "WHERE c.status = $1 AND (c.priority < $3 OR (c.priority = $3 AND c.id < $2))");
        assert_eq!(vals.len(), 3);
        let q = CaseQuery { sort: CaseSort::Time, after: Some((7, 42)), ..Default::default() };
        assert_eq!(list_clause(&q).0, "WHERE c.id < $1");
    }
}
