//! The indexing job queue, the same on both engines: a job is stored with
//! its manifest before its id is returned; a runner claims the oldest
//! queued job, or a running one whose runner stopped renewing its lease
//! (counting a crash), and renews the lease while it works. `SKIP LOCKED`
//! on PostgreSQL lets replicas claim at once without taking the same job.

use std::time::Duration;

use super::{args, now, EventKind, NewEvent, RecordStore, SqlError};
use crate::catalog::CatalogError;

/// Where an indexing job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    /// Every item indexed (or already there).
    Done,
    /// Some items indexed, some failed (see the job's errors).
    DoneWithErrors,
    /// Nothing indexed: the manifest did not read, or every item failed.
    Failed,
}

impl JobStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::DoneWithErrors => "done_with_errors",
            JobStatus::Failed => "failed",
        }
    }
}

impl JobStatus {
    /// Whether a job with this status has ended.
    #[must_use]
    pub fn ended(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::DoneWithErrors | JobStatus::Failed)
    }

    fn ended_str(s: &str) -> bool {
        s.parse::<JobStatus>().is_ok_and(JobStatus::ended)
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [JobStatus::Queued, JobStatus::Running, JobStatus::Done, JobStatus::DoneWithErrors, JobStatus::Failed]
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| format!("unknown job status '{s}'"))
    }
}

/// A stored indexing job (counts and errors as JSON text).
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub status: JobStatus,
    pub created_at: String,
    pub updated_at: String,
    pub format: String,
    pub source: String,
    pub counts: String,
    pub errors: String,
    pub message: Option<String>,
    /// Times the job was resumed after its runner died while it ran.
    pub crashes: i64,
    /// The item a resumed job was working on (set only while it runs carefully).
    pub in_flight: Option<String>,
    /// Items that crashed the process (a JSON list of image sources).
    pub quarantined: String,
    /// The runner running or last running it.
    pub runner: Option<String>,
}

/// A job as a list shows it (counts as JSON text).
#[derive(Debug, Clone)]
pub struct JobSummary {
    pub id: String,
    pub status: JobStatus,
    pub created_at: String,
    pub updated_at: String,
    pub counts: String,
    pub message: Option<String>,
}

/// How long a claimed job stays with its runner without a sign of life
/// (`KNOCKOFF_JOB_LEASE_MS`, default 30 s); then another runner takes it over.
pub fn job_lease() -> Duration {
    std::env::var("KNOCKOFF_JOB_LEASE_MS").ok().and_then(|v| v.parse().ok()).map_or(Duration::from_secs(30), Duration::from_millis)
}

fn lease_ms() -> i64 {
    i64::try_from(job_lease().as_millis()).unwrap_or(i64::MAX / 2)
}

impl dyn RecordStore + '_ {
    /// Records a new job (queued) with its manifest.
    pub fn create_job(&self, id: &str, format: &str, source: &str) -> Result<(), CatalogError> {
        let ts = now();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO jobs(id, status, created_at, updated_at, format, source) VALUES ($1, 'queued', $2, $2, $3, $4)",
                args![id, &ts, format, source],
            )
        })
        .map(drop)
    }

    /// Records a job's status, counts and errors (JSON text); renews its
    /// lease. The first time a job ends, a `job.finished` event goes with it.
    pub fn update_job(&self, id: &str, status: JobStatus, counts: &str, errors: &str, message: Option<&str>) -> Result<(), CatalogError> {
        let ts = now();
        self.write(|tx| {
            let before = tx.query_opt("SELECT status FROM jobs WHERE id = $1", args![id], |r| r.string(0))?;
            tx.execute(
                "UPDATE jobs SET status = $2, counts = $3, errors = $4, message = $5, updated_at = $6, lease_ms = {now_ms} + $7 WHERE id = $1",
                args![id, status.as_str(), counts, errors, message, &ts, lease_ms()],
            )?;
            let ended_now = before.is_some_and(|b| !JobStatus::ended_str(&b)) && status.ended();
            if ended_now {
                let data = serde_json::json!({
                    "job_id": id,
                    "url": format!("/v1/jobs/{id}"),
                    "status": status,
                    "counts": serde_json::from_str::<serde_json::Value>(counts).unwrap_or_default(),
                    "message": message,
                });
                super::events::emit(tx, &NewEvent { kind: EventKind::JobFinished, subject: Some(format!("job:{id}")), risk: None, data })?;
            }
            Ok(())
        })
    }

    /// Tells the other runners that `owner` still runs job `id`.
    pub fn renew_job(&self, id: &str, owner: &str) -> Result<(), CatalogError> {
        self.write(|tx| tx.execute("UPDATE jobs SET lease_ms = {now_ms} + $3 WHERE id = $1 AND owner = $2", args![id, owner, lease_ms()]))
            .map(drop)
    }

    /// Takes the oldest queued job, or a running one whose lease lapsed
    /// (counting a crash), for `owner`: each job is claimed once.
    pub fn claim_job(&self, owner: &str) -> Result<Option<String>, CatalogError> {
        self.write(|tx| {
            tx.query_opt(
                "UPDATE jobs SET crashes = crashes + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
                        status = 'running', owner = $1, lease_ms = {now_ms} + $2
                 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' OR (status = 'running' AND COALESCE(lease_ms, 0) < {now_ms})
                             ORDER BY created_at, id LIMIT 1{skip_locked})
                 RETURNING id",
                args![owner, lease_ms()],
                |r| r.string(0),
            )
        })
    }

    /// At a runner's start: when it is the only runner there is (an index
    /// folder), jobs left running were left by a process that died, so their
    /// leases lapse now rather than after the lease time. Returns how many
    /// jobs are unfinished.
    pub fn recover_jobs(&self, sole_runner: bool) -> Result<usize, CatalogError> {
        self.write(|tx| {
            if sole_runner {
                tx.execute("UPDATE jobs SET lease_ms = 0 WHERE status = 'running'", &[])?;
            }
            let n = tx.query_one("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')", &[], |r| r.i64(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRow>, CatalogError> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT id, status, created_at, updated_at, format, source, counts, errors, message, crashes, in_flight, quarantined, owner
                 FROM jobs WHERE id = $1",
                args![id],
                |r| {
                    Ok(JobRow {
                        id: r.string(0)?,
                        status: r.str(1)?.parse().map_err(SqlError::Data)?,
                        created_at: r.string(2)?,
                        updated_at: r.string(3)?,
                        format: r.string(4)?,
                        source: r.string(5)?,
                        counts: r.string(6)?,
                        errors: r.string(7)?,
                        message: r.opt_string(8)?,
                        crashes: r.i64(9)?,
                        in_flight: r.opt_string(10)?,
                        quarantined: r.string(11)?,
                        runner: r.opt_string(12)?,
                    })
                },
            )
        })
    }

    /// Up to `limit` jobs, newest first, after the job `starting_after`
    /// (`""`: from the newest): one page of a list, without the jobs'
    /// manifests and errors; `None` when `starting_after` names no job.
    pub fn jobs_page(&self, starting_after: &str, limit: usize) -> Result<Option<Vec<JobSummary>>, CatalogError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|tx| {
            if !starting_after.is_empty()
                && tx.query_opt("SELECT 1 FROM jobs WHERE id = $1", args![starting_after], |r| r.i64(0))?.is_none()
            {
                return Ok(None);
            }
            tx.query(
                "SELECT id, status, created_at, updated_at, counts, message FROM jobs
                 WHERE $1 = '' OR created_at < (SELECT created_at FROM jobs WHERE id = $1)
                    OR (created_at = (SELECT created_at FROM jobs WHERE id = $1) AND id < $1)
                 ORDER BY created_at DESC, id DESC LIMIT $2",
                args![starting_after, limit],
                |r| {
                    Ok(JobSummary {
                        id: r.string(0)?,
                        status: r.str(1)?.parse().map_err(SqlError::Data)?,
                        created_at: r.string(2)?,
                        updated_at: r.string(3)?,
                        counts: r.string(4)?,
                        message: r.opt_string(5)?,
                    })
                },
            )
            .map(Some)
        })
    }

    /// Removes a job no runner has claimed yet; `false` when one has (or there is no such job).
    pub fn withdraw_job(&self, id: &str) -> Result<bool, CatalogError> {
        self.write(|tx| tx.execute("DELETE FROM jobs WHERE id = $1 AND status = 'queued' AND owner IS NULL", args![id])).map(|n| n > 0)
    }

    /// Records the item a job is about to work on (`None`: between items).
    pub fn set_job_in_flight(&self, id: &str, item: Option<&str>) -> Result<(), CatalogError> {
        self.write(|tx| tx.execute("UPDATE jobs SET in_flight = $2 WHERE id = $1", args![id, item])).map(drop)
    }

    /// Moves the job's in-flight item (the one its runner died on) to its quarantine list.
    pub fn quarantine_job_in_flight(&self, id: &str) -> Result<(), CatalogError> {
        self.write(|tx| {
            let row =
                tx.query_opt("SELECT in_flight, quarantined FROM jobs WHERE id = $1", args![id], |r| Ok((r.opt_string(0)?, r.string(1)?)))?;
            let Some((Some(item), list)) = row else { return Ok(()) };
            let mut items: Vec<String> = serde_json::from_str(&list).unwrap_or_default();
            items.push(item);
            let list = serde_json::to_string(&items).map_err(|e| SqlError::Data(e.to_string()))?;
            tx.execute("UPDATE jobs SET quarantined = $2, in_flight = NULL WHERE id = $1", args![id, &list])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_status_round_trips_through_its_name() {
        for j in [JobStatus::Queued, JobStatus::Running, JobStatus::Done, JobStatus::DoneWithErrors, JobStatus::Failed] {
            assert_eq!(j.as_str().parse::<JobStatus>(), Ok(j));
            assert_eq!(serde_json::to_value(j).unwrap(), j.as_str());
        }
        assert!("paused".parse::<JobStatus>().is_err());
    }
}
