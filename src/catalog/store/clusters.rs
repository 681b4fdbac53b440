//! Seller networks: review cases whose photos are copies of one another (or
//! of the same known fake) joined into clusters. Each case, once clustered,
//! names its cluster (the smallest case id in it; its own id while alone)
//! and keeps the copy features and a thumbnail of its photo for later cases
//! to be checked against; `case_links` holds the evidence that joined two
//! cases. Cases are clustered one at a time, oldest first, by the one
//! process holding the clustering lease (`meta` key `clusterer`). The use
//! case is [`crate::review::clusters`].

use super::{args, RecordStore, Row, SqlError, Tx};
use crate::catalog::CatalogError;

/// A case waiting to be clustered, with what clustering reads.
#[derive(Debug, Clone)]
pub struct Unclustered {
    pub id: i64,
    pub sha256: String,
    pub model: String,
    pub embedding: Vec<f32>,
    /// Its content regions' vectors, one after another (little-endian `f32`s; `None`: no regions).
    pub regions: Option<Vec<u8>>,
    /// The answer it got (JSON): which catalog images it copies.
    pub answer: String,
    /// The photo (`None`: dropped by retention).
    pub photo: Option<Vec<u8>>,
}

/// Why two cases are in one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// The same photo, byte for byte.
    SamePhoto,
    /// One photo is a copy of the other (the copy check, as against the catalog).
    Copy,
    /// Both copy the same counterfeit catalog image.
    SameFake,
}

impl LinkKind {
    fn as_str(self) -> &'static str {
        match self {
            LinkKind::SamePhoto => "same_photo",
            LinkKind::Copy => "copy",
            LinkKind::SameFake => "same_fake",
        }
    }
    fn parse(s: &str) -> LinkKind {
        match s {
            "same_photo" => LinkKind::SamePhoto,
            "same_fake" => LinkKind::SameFake,
            _ => LinkKind::Copy,
        }
    }
}

/// One piece of evidence joining two cases (`a` < `b`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct CaseLink {
    pub a: i64,
    pub b: i64,
    pub kind: LinkKind,
    /// The copy check's probability (copies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_copy: Option<f32>,
    /// The counterfeit catalog image both copy (`same_fake` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<i64>,
}

/// What a case's photo keeps for later cases' copy checks ([`RecordStore::case_photo_kept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptColumn {
    Features,
    Thumbnail,
}

/// What clustering one case writes.
#[derive(Debug, Clone)]
pub struct ClusterWrite<'a> {
    pub case: i64,
    pub sha256: &'a str,
    /// The photo's copy features and thumbnail, kept for later cases (`None`: no photo).
    pub features: Option<&'a [u8]>,
    pub thumbnail: Option<&'a [u8]>,
    /// The counterfeit catalog image the case copies, if any.
    pub copied_image: Option<i64>,
    pub links: &'a [CaseLink],
}

/// A cluster of at least two cases.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    pub id: i64,
    pub cases: i64,
    pub first_seen: String,
    pub last_seen: String,
}

/// A case as its cluster lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub case: i64,
    pub created_at: String,
    pub sha256: String,
    pub seller_id: Option<String>,
    /// The listing context (JSON).
    pub context: String,
    pub verdict: String,
    pub copied_image: Option<i64>,
}

fn link_from_row(r: &dyn Row) -> Result<CaseLink, SqlError> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let p_copy = r.int(3)?.map(|p| (p as f64 / 1e6) as f32);
    Ok(CaseLink { a: r.i64(0)?, b: r.i64(1)?, kind: LinkKind::parse(&r.string(2)?), p_copy, image_id: r.int(4)? })
}

/// Joins the clusters of `case` and the cases it links to; returns the cluster's id.
fn join(tx: &mut dyn Tx, case: i64, links: &[CaseLink]) -> Result<i64, SqlError> {
    let mut clusters = vec![case];
    for l in links {
        let other = if l.a == case { l.b } else { l.a };
        if let Some(c) = tx.query_opt("SELECT cluster FROM cases WHERE id = $1", args![other], |r| r.int(0))?.flatten() {
            clusters.push(c);
        }
        tx.execute(
            "INSERT INTO case_links(a, b, kind, p_copy, image_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (a, b) DO NOTHING",
            args![l.a, l.b, l.kind.as_str(), l.p_copy.map(super::ppm), l.image_id],
        )?;
    }
    clusters.sort_unstable();
    clusters.dedup();
    let target = clusters[0];
    for c in &clusters[1..] {
        tx.execute("UPDATE cases SET cluster = $1 WHERE cluster = $2", args![target, *c])?;
    }
    Ok(target)
}

impl dyn RecordStore + '_ {
    /// Takes (or keeps) the clustering lease for `owner` for `lease_ms`;
    /// `false`: another process holds it.
    pub fn claim_clustering(&self, owner: &str, lease_ms: i64) -> Result<bool, CatalogError> {
        self.write(|tx| {
            let now = tx.query_one("SELECT {now_ms}", &[], |r| r.i64(0))?;
            let held = tx.query_opt("SELECT value FROM meta WHERE key = 'clusterer'", &[], |r| r.string(0))?;
            let free = held
                .as_deref()
                .and_then(|v| v.split_once(' '))
                .is_none_or(|(who, until)| who == owner || !until.parse::<i64>().is_ok_and(|until| until >= now));
            if free {
                let value = format!("{owner} {}", now + lease_ms);
                tx.execute(
                    "INSERT INTO meta(key, value) VALUES ('clusterer', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    args![&value],
                )?;
            }
            Ok(free)
        })
    }

    /// The oldest case not clustered yet.
    pub fn next_unclustered(&self) -> Result<Option<Unclustered>, CatalogError> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT c.id, c.photo, c.model, c.embedding, c.answer, p.bytes, c.regions FROM cases c JOIN case_photos p ON p.sha256 = c.photo
                 WHERE c.cluster IS NULL ORDER BY c.id LIMIT 1",
                &[],
                |r| {
                    Ok(Unclustered {
                        id: r.i64(0)?,
                        sha256: r.string(1)?,
                        model: r.string(2)?,
                        embedding: r.vector(3)?,
                        answer: r.string(4)?,
                        photo: r.opt_blob(5)?,
                        regions: r.opt_blob(6)?,
                    })
                },
            )
        })
    }

    /// Clustered cases after case `after` (by id), at most `limit`, with their model, embedding and regions' vectors.
    #[allow(clippy::type_complexity)]
    pub fn clustered_embeddings(&self, after: i64, limit: i64) -> Result<Vec<(i64, String, Vec<f32>, Option<Vec<u8>>)>, CatalogError> {
        self.read(|tx| {
            tx.query(
                "SELECT id, model, embedding, regions FROM cases WHERE cluster IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
                args![after, limit],
                |r| Ok((r.i64(0)?, r.string(1)?, r.vector(2)?, r.opt_blob(3)?)),
            )
        })
    }

    /// One kept column of a clustered case's photo: `features` (its copy
    /// features) or `thumbnail` (`None`: no such case, or nothing kept).
    pub fn case_photo_kept(&self, case: i64, column: KeptColumn) -> Result<Option<Vec<u8>>, CatalogError> {
        let col = match column {
            KeptColumn::Features => "features",
            KeptColumn::Thumbnail => "thumbnail",
        };
        let sql = format!("SELECT p.{col} FROM cases c JOIN case_photos p ON p.sha256 = c.photo WHERE c.id = $1");
        self.read(|tx| Ok(tx.query_opt(&sql, args![case], |r| r.opt_blob(0))?.flatten()))
    }

    /// The oldest clustered case other than `case` showing the same photo, and
    /// the oldest clustered case copying counterfeit catalog image `image`.
    pub fn cluster_anchors(&self, case: i64, sha256: &str, image: Option<i64>) -> Result<(Option<i64>, Option<i64>), CatalogError> {
        self.read(|tx| {
            let same = tx.query_opt(
                "SELECT MIN(id) FROM cases WHERE photo = $1 AND id <> $2 AND cluster IS NOT NULL",
                args![sha256, case],
                |r| r.int(0),
            )?;
            let fake = match image {
                Some(i) => tx
                    .query_opt(
                        "SELECT MIN(id) FROM cases WHERE copied_image = $1 AND id <> $2 AND cluster IS NOT NULL",
                        args![i, case],
                        |r| r.int(0),
                    )?
                    .flatten(),
                None => None,
            };
            Ok((same.flatten(), fake))
        })
    }

    /// Clusters one case: keeps its photo's features, records its links and
    /// joins the clusters they touch, in one transaction. Returns the
    /// cluster it joined, or `None` if it was clustered already.
    pub fn write_cluster(&self, w: &ClusterWrite<'_>) -> Result<Option<i64>, CatalogError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE cases SET cluster = $1, copied_image = $2 WHERE id = $1 AND cluster IS NULL",
                args![w.case, w.copied_image],
            )?;
            if n == 0 {
                return Ok(None);
            }
            tx.execute(
                "UPDATE case_photos SET features = COALESCE(features, $2), thumbnail = COALESCE(thumbnail, $3) WHERE sha256 = $1",
                args![w.sha256, w.features, w.thumbnail],
            )?;
            join(tx, w.case, w.links).map(Some)
        })
    }

    /// Clusters of at least two cases, newest first (by their first case), after cluster `after`.
    pub fn clusters(&self, after: Option<i64>, limit: usize) -> Result<Vec<ClusterRow>, CatalogError> {
        let after = after.unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|tx| {
            tx.query(
                "SELECT cluster, COUNT(*), MIN(created_at), MAX(created_at) FROM cases WHERE cluster IS NOT NULL AND cluster < $1
                 GROUP BY cluster HAVING COUNT(*) > 1 ORDER BY cluster DESC LIMIT $2",
                args![after, limit],
                |r| Ok(ClusterRow { id: r.i64(0)?, cases: r.i64(1)?, first_seen: r.string(2)?, last_seen: r.string(3)? }),
            )
        })
    }

    /// A cluster's cases (oldest first) and the links between them.
    pub fn cluster_members(&self, cluster: i64) -> Result<(Vec<MemberRow>, Vec<CaseLink>), CatalogError> {
        self.read(|tx| {
            let members = tx.query(
                "SELECT id, created_at, photo, seller_id, context, verdict, copied_image FROM cases WHERE cluster = $1 ORDER BY id",
                args![cluster],
                |r| {
                    Ok(MemberRow {
                        case: r.i64(0)?,
                        created_at: r.string(1)?,
                        sha256: r.string(2)?,
                        seller_id: r.opt_string(3)?,
                        context: r.string(4)?,
                        verdict: r.string(5)?,
                        copied_image: r.int(6)?,
                    })
                },
            )?;
            let links = tx.query(
                "SELECT l.a, l.b, l.kind, l.p_copy, l.image_id FROM case_links l JOIN cases c ON c.id = l.a
                 WHERE c.cluster = $1 ORDER BY l.a, l.b",
                args![cluster],
                link_from_row,
            )?;
            Ok((members, links))
        })
    }

    /// The cluster a case is in (`None`: no such case, or not clustered yet).
    pub fn case_cluster(&self, case: i64) -> Result<Option<i64>, CatalogError> {
        self.read(|tx| Ok(tx.query_opt("SELECT cluster FROM cases WHERE id = $1", args![case], |r| r.int(0))?.flatten()))
    }
}
