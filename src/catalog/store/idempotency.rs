//! Idempotency records: a POST sent with an `Idempotency-Key` is stored
//! with a fingerprint of the request and, once answered, the response, so
//! that a retry with the same key gets the same response instead of a
//! second job, case or image. Keys are per caller (API key name). A record
//! is `running` while its request is; one whose process died is taken over
//! after `stale_ms`. Records are dropped after a day ([`crate::api`]'s upkeep).

use super::{args, RecordStore};
use crate::catalog::CatalogError;

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// The headers worth replaying (JSON object of name → value).
    pub headers: String,
    pub body: Vec<u8>,
}

/// What [`RecordStore::begin_idempotent`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// The key is new (or its request died): run the request, then [`RecordStore::finish_idempotent`].
    Run,
    /// Answered before, for the same request: send this again.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    Running,
}

impl dyn RecordStore + '_ {
    /// Starts `caller`'s request under `key` with request fingerprint `fingerprint`.
    pub fn begin_idempotent(&self, caller: &str, key: &str, fingerprint: &str, stale_ms: i64) -> Result<Begun, CatalogError> {
        self.write(|tx| {
            let found = tx.query_opt(
                "SELECT fingerprint, status, headers, body, created_ms < {now_ms} - $3 FROM idempotency WHERE caller = $1 AND key = $2",
                args![caller, key, stale_ms],
                |r| Ok((r.string(0)?, r.int(1)?, r.opt_string(2)?, r.opt_blob(3)?, r.bool(4)?)),
            )?;
            let Some((stored, status, headers, body, stale)) = found else {
                tx.execute(
                    "INSERT INTO idempotency(caller, key, fingerprint, created_ms) VALUES ($1, $2, $3, {now_ms})",
                    args![caller, key, fingerprint],
                )?;
                return Ok(Begun::Run);
            };
            if stored != fingerprint {
                return Ok(Begun::Mismatch);
            }
            match status {
                Some(status) => Ok(Begun::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    headers: headers.unwrap_or_default(),
                    body: body.unwrap_or_default(),
                })),
                None if stale => {
                    tx.execute("UPDATE idempotency SET created_ms = {now_ms} WHERE caller = $1 AND key = $2", args![caller, key])?;
                    Ok(Begun::Run)
                }
                None => Ok(Begun::Running),
            }
        })
    }

    /// Stores the response to `caller`'s request under `key` (`None`: forget
    /// the key, for an answer a retry should not get again, such as a 503).
    pub fn finish_idempotent(&self, caller: &str, key: &str, response: Option<&StoredResponse>) -> Result<(), CatalogError> {
        self.write(|tx| match response {
            Some(r) => tx.execute(
                "UPDATE idempotency SET status = $3, headers = $4, body = $5 WHERE caller = $1 AND key = $2",
                args![caller, key, i64::from(r.status), &r.headers, &r.body],
            ),
            None => tx.execute("DELETE FROM idempotency WHERE caller = $1 AND key = $2", args![caller, key]),
        })
        .map(drop)
    }

    /// Drops records older than `hours`; returns how many.
    pub fn purge_idempotency(&self, hours: u32) -> Result<u64, CatalogError> {
        let age_ms = i64::from(hours) * 3_600_000;
        self.write(|tx| tx.execute("DELETE FROM idempotency WHERE created_ms <= {now_ms} - $1", args![age_ms]))
    }
}
