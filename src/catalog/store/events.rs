//! Events and their webhook deliveries: the outbox. An event (a case
//! created or decided, a job finished, a refit) is written in the same
//! transaction as the change it reports, so it exists exactly when the
//! change does, whatever dies when. Each webhook target then copies the
//! events it subscribes to into its own deliveries (`fan_out`, from a
//! cursor: targets added later do not replay history), and a sender claims
//! due deliveries one at a time with a lease, so that one process of all
//! the replicas sends each. Deliveries of one subject (one case) go out in
//! the order their events happened. The sender is [`crate::webhooks`].

use serde::Serialize;

use super::{args, now, RecordStore, SqlError, Tx};
use crate::catalog::CatalogError;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub enum EventKind {
    /// A lookup was recorded as a review case.
    #[serde(rename = "case.created")]
    CaseCreated,
    /// An analyst decided a case, or undid a decision (`decision: null`).
    #[serde(rename = "case.decided")]
    CaseDecided,
    /// An indexing job ended (`done`, `done_with_errors` or `failed`).
    #[serde(rename = "job.finished")]
    JobFinished,
    /// The catalog's calibration and verdict thresholds were fitted again.
    #[serde(rename = "catalog.refitted")]
    CatalogRefitted,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [EventKind::CaseCreated, EventKind::CaseDecided, EventKind::JobFinished, EventKind::CatalogRefitted];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CaseCreated => "case.created",
            EventKind::CaseDecided => "case.decided",
            EventKind::JobFinished => "job.finished",
            EventKind::CatalogRefitted => "catalog.refitted",
        }
    }

    #[must_use]
    pub fn parse(name: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    /// What it is about (`case:42`, `job:…`): deliveries of one subject keep their order.
    pub subject: Option<String>,
    /// `p_counterfeit` of a created case, for targets that want only the risky ones.
    pub risk: Option<f32>,
    /// The event's `data` object.
    pub data: serde_json::Value,
}

/// Records `e` inside `tx`; returns its id (the `webhook-id` of every delivery of it).
pub(crate) fn emit(tx: &mut dyn Tx, e: &NewEvent) -> Result<String, SqlError> {
    let id = crate::util::new_id("msg");
    let body = serde_json::json!({ "type": e.kind.as_str(), "timestamp": now(), "data": e.data }).to_string();
    tx.execute(
        "INSERT INTO events(event_id, type, subject, risk, body, created_ms) VALUES ($1, $2, $3, $4, $5, {now_ms})",
        args![&id, e.kind.as_str(), &e.subject, e.risk.map(super::ppm), &body],
    )?;
    Ok(id)
}

/// What a target subscribes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription<'a> {
    /// The target's name (its key in the store).
    pub target: &'a str,
    pub kinds: &'a [EventKind],
    /// `case.created` only at or above this `p_counterfeit`.
    pub min_risk: Option<f32>,
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's row (with the target, the delivery's key).
    pub event: i64,
    /// The `webhook-id`, the same on every attempt.
    pub event_id: String,
    /// The exact body to send (signed as is).
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When the event happened (ms since 1970).
    pub created_ms: i64,
}

/// A target's state in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TargetState {
    /// Set when the receiver answered 410 Gone: nothing is sent until it is enabled again.
    pub disabled_at: Option<String>,
    pub disabled_reason: Option<String>,
    /// Deliveries waiting (also those between retries).
    pub pending: i64,
    pub delivered: i64,
    /// Deliveries given up after retrying for the whole retry period.
    pub failed: i64,
    /// The latest failed attempt's error.
    pub last_error: Option<String>,
}

impl dyn RecordStore + '_ {
    /// Records one event on its own (for changes that are not records, such as a refit).
    pub fn emit_event(&self, e: &NewEvent) -> Result<String, CatalogError> {
        self.write(|tx| emit(tx, e))
    }

    /// The newest event's row (0: none yet).
    pub fn events_head(&self) -> Result<i64, CatalogError> {
        self.read(|tx| tx.query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[], |r| r.i64(0)))
    }

    /// Copies the events `s` subscribes to that came after its cursor into
    /// its deliveries (a new target starts at the newest event); returns the
    /// cursor it reached.
    pub fn fan_out(&self, s: &Subscription<'_>) -> Result<i64, CatalogError> {
        self.write(|tx| {
            let cursor = tx.query_opt("SELECT cursor FROM webhook_targets WHERE name = $1", args![s.target], |r| r.i64(0))?;
            let Some(cursor) = cursor else {
                return tx.query_one(
                    "INSERT INTO webhook_targets(name, cursor) VALUES ($1, (SELECT COALESCE(MAX(id), 0) FROM events)) RETURNING cursor",
                    args![s.target],
                    |r| r.i64(0),
                );
            };
            let fresh = tx.query(
                "SELECT id, type, risk, subject FROM events WHERE id > $1 ORDER BY id LIMIT 1000",
                args![cursor],
                |r| Ok((r.i64(0)?, r.string(1)?, r.int(2)?, r.opt_string(3)?)),
            )?;
            let Some(last) = fresh.last().map(|f| f.0) else { return Ok(cursor) };
            for (id, kind, risk, subject) in &fresh {
                if wanted(s, kind, *risk) {
                    tx.execute(
                        "INSERT INTO webhook_deliveries(event, target, subject, next_ms) VALUES ($1, $2, $3, {now_ms}) ON CONFLICT DO NOTHING",
                        args![*id, s.target, subject],
                    )?;
                }
            }
            tx.execute("UPDATE webhook_targets SET cursor = $2 WHERE name = $1", args![s.target, last])?;
            Ok(last)
        })
    }

    /// Takes the oldest due delivery of `target` whose subject has no older
    /// one still waiting, for `lease_ms`; `None`: nothing is due (or the
    /// target is disabled).
    pub fn claim_delivery(&self, target: &str, lease_ms: i64) -> Result<Option<Delivery>, CatalogError> {
        // An idle sender only reads: the write (which every writer queues behind) is for a claim.
        let due = self.read(|tx| {
            tx.query_opt(
                "SELECT 1 FROM webhook_deliveries WHERE target = $1 AND status = 'pending' AND next_ms <= {now_ms} LIMIT 1",
                args![target],
                |r| r.i64(0),
            )
        })?;
        if due.is_none() {
            return Ok(None);
        }
        self.write(|tx| {
            let found = tx.query_opt(
                "SELECT d.event, e.event_id, e.body, d.attempts, e.created_ms FROM webhook_deliveries d JOIN events e ON e.id = d.event
                 WHERE d.target = $1 AND d.status = 'pending' AND d.next_ms <= {now_ms} AND COALESCE(d.lease_ms, 0) < {now_ms}
                   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.target = d.target AND o.subject = d.subject
                                   AND o.status = 'pending' AND o.event < d.event)
                   AND NOT EXISTS (SELECT 1 FROM webhook_targets t WHERE t.name = d.target AND t.disabled_at IS NOT NULL)
                 ORDER BY d.event LIMIT 1",
                args![target],
                |r| {
                    Ok(Delivery {
                        event: r.i64(0)?,
                        event_id: r.string(1)?,
                        body: r.string(2)?,
                        attempts: r.i64(3)?,
                        created_ms: r.i64(4)?,
                    })
                },
            )?;
            if let Some(d) = &found {
                tx.execute(
                    "UPDATE webhook_deliveries SET lease_ms = {now_ms} + $3 WHERE target = $1 AND event = $2",
                    args![target, d.event, lease_ms],
                )?;
            }
            Ok(found)
        })
    }

    /// Records what an attempt came to: `Ok(())` delivered; `Err((error,
    /// Some(delay_ms)))` try again after `delay_ms`; `Err((error, None))` give up.
    pub fn settle_delivery(&self, target: &str, event: i64, outcome: Result<(), (&str, Option<i64>)>) -> Result<(), CatalogError> {
        self.write(|tx| {
            match outcome {
                Ok(()) => tx.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, delivered_ms = {now_ms}, lease_ms = NULL
                     WHERE target = $1 AND event = $2",
                    args![target, event],
                ),
                Err((error, Some(delay))) => tx.execute(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, next_ms = {now_ms} + $3, last_error = $4, lease_ms = NULL
                     WHERE target = $1 AND event = $2",
                    args![target, event, delay, error],
                ),
                Err((error, None)) => tx.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, last_error = $3, lease_ms = NULL
                     WHERE target = $1 AND event = $2",
                    args![target, event, error],
                ),
            }
            .map(drop)
        })
    }

    /// Stops (`Some(reason)`) or resumes (`None`) sending to `target`;
    /// false when the store has no such target.
    pub fn set_target_disabled(&self, target: &str, reason: Option<&str>) -> Result<bool, CatalogError> {
        let ts = now();
        self.write(|tx| {
            let at = reason.map(|_| ts.as_str());
            Ok(tx
                .execute("UPDATE webhook_targets SET disabled_at = $2, disabled_reason = $3 WHERE name = $1", args![target, at, reason])?
                > 0)
        })
    }

    /// `target`'s state (`None`: it has never run).
    pub fn target_state(&self, target: &str) -> Result<Option<TargetState>, CatalogError> {
        self.read(|tx| {
            let Some(mut state) =
                tx.query_opt("SELECT disabled_at, disabled_reason FROM webhook_targets WHERE name = $1", args![target], |r| {
                    Ok(TargetState { disabled_at: r.opt_string(0)?, disabled_reason: r.opt_string(1)?, ..TargetState::default() })
                })?
            else {
                return Ok(None);
            };
            for (status, n) in
                tx.query("SELECT status, COUNT(*) FROM webhook_deliveries WHERE target = $1 GROUP BY status", args![target], |r| {
                    Ok((r.string(0)?, r.i64(1)?))
                })?
            {
                match status.as_str() {
                    "pending" => state.pending = n,
                    "delivered" => state.delivered = n,
                    _ => state.failed += n,
                }
            }
            state.last_error = tx.query_opt(
                "SELECT last_error FROM webhook_deliveries WHERE target = $1 AND last_error IS NOT NULL ORDER BY event DESC LIMIT 1",
                args![target],
                |r| r.string(0),
            )?;
            Ok(Some(state))
        })
    }

    /// Drops events older than `days` that no target still has to send,
    /// with their finished deliveries; returns how many events went. The
    /// newest event always stays: event rows are never numbered again (on
    /// `SQLite` a row takes the highest number plus one), so targets' cursors hold.
    pub fn purge_events(&self, days: u32) -> Result<u64, CatalogError> {
        let age_ms = i64::from(days) * 86_400_000;
        self.write(|tx| {
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE status <> 'pending'
                   AND event IN (SELECT id FROM events WHERE created_ms <= {now_ms} - $1)",
                args![age_ms],
            )?;
            tx.execute(
                "DELETE FROM events WHERE created_ms <= {now_ms} - $1
                   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event = events.id)
                   AND NOT EXISTS (SELECT 1 FROM webhook_targets t WHERE t.cursor < events.id)
                   AND id < (SELECT MAX(id) FROM events)",
                args![age_ms],
            )
        })
    }
}

/// Whether `s` wants an event of `kind` (with the created case's risk in millionths).
fn wanted(s: &Subscription<'_>, kind: &str, risk_ppm: Option<i64>) -> bool {
    let Some(kind) = EventKind::parse(kind) else { return false };
    if !s.kinds.contains(&kind) {
        return false;
    }
    match (kind, s.min_risk) {
        (EventKind::CaseCreated, Some(min)) => risk_ppm.unwrap_or(0) >= super::ppm(min),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_read_back_and_unknown_ones_do_not() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
        assert_eq!(EventKind::parse("case.closed"), None);
    }

    #[test]
    fn a_target_gets_the_kinds_it_asked_for_and_created_cases_at_its_risk() {
        let kinds = [EventKind::CaseCreated, EventKind::JobFinished];
        let s = Subscription { target: "t", kinds: &kinds, min_risk: Some(0.8) };
        assert!(wanted(&s, "case.created", Some(800_000)));
        assert!(!wanted(&s, "case.created", Some(799_999)));
        assert!(!wanted(&s, "case.created", None));
        assert!(wanted(&s, "job.finished", None), "the risk applies to created cases only");
        assert!(!wanted(&s, "case.decided", None));
        assert!(!wanted(&s, "something.else", None));
    }
}
