//! The sender: one thread per target, so a receiver that is down or slow
//! delays only its own deliveries. Each turn it copies new events into the
//! target's deliveries, claims the oldest due one (with a lease: one
//! process of all the replicas sends it), signs and POSTs it, and records
//! the outcome: delivered (2xx), retried later (anything else, with
//! exponential backoff from [`SendOptions::retry_base`] up to an hour,
//! until [`SendOptions::retry_for`] after the event), or — on 410 Gone —
//! the target disabled. When nothing is due it waits [`POLL`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Target;
use crate::catalog::store::Delivery;
use crate::catalog::Catalog;

/// How often an idle sender looks for new events.
pub const POLL: Duration = Duration::from_millis(250);

/// How deliveries are sent.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Allow private, loopback and link-local receivers (`allow_private_urls`).
    pub allow_private: bool,
    /// One attempt's limit (connect, send, answer).
    pub timeout: Duration,
    /// The first retry's delay; each next one doubles, up to an hour
    /// (`KNOCKOFF_WEBHOOK_RETRY_MS`, default 5 s).
    pub retry_base: Duration,
    /// How long after its event a delivery is retried before it is given up.
    pub retry_for: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        let base = std::env::var("KNOCKOFF_WEBHOOK_RETRY_MS").ok().and_then(|v| v.parse().ok()).map_or(5_000, |ms: u64| ms.max(1));
        SendOptions {
            allow_private: false,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(base),
            retry_for: Duration::from_secs(26 * 3600),
        }
    }
}

/// Deliveries by outcome in this process: delivered, retried, failed (given up), disabled (410).
static TOTALS: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// What this process's senders did, by outcome.
#[must_use]
pub fn totals() -> [(&'static str, u64); 4] {
    let n = |i: usize| TOTALS[i].load(Ordering::Relaxed);
    [("delivered", n(0)), ("retried", n(1)), ("failed", n(2)), ("disabled", n(3))]
}

/// The running senders; dropping it stops each after its attempt in flight
/// (without waiting: an attempt cut short by the process's end is sent
/// again once its lease lapses).
pub struct Dispatcher {
    stop: Arc<AtomicBool>,
}

impl Dispatcher {
    /// Registers each target with the store and starts its sender.
    #[must_use]
    pub fn start(catalog: &Arc<Catalog>, targets: &[Target], opts: &SendOptions) -> Dispatcher {
        let stop = Arc::new(AtomicBool::new(false));
        for t in targets {
            // A new target subscribes from the newest event on: register it now, so that
            // nothing that happens once the service is up is missed (else its sender does).
            if let Err(e) = catalog.records().fan_out(&t.subscription()) {
                tracing::warn!(target = %t.name, "webhook target not registered yet: {e}");
            }
            let (catalog, target, opts, flag) = (catalog.clone(), t.clone(), opts.clone(), stop.clone());
            let started =
                std::thread::Builder::new().name(format!("webhook {}", t.name)).spawn(move || run(&catalog, &target, &opts, &flag));
            if let Err(e) = started {
                tracing::error!(target = %t.name, "cannot start the webhook sender: {e}");
            }
        }
        Dispatcher { stop }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One target's sender, until `stop`.
fn run(catalog: &Catalog, target: &Target, opts: &SendOptions, stop: &AtomicBool) {
    let lease_ms = i64::try_from((opts.timeout + Duration::from_secs(5)).as_millis()).unwrap_or(i64::MAX / 2);
    let mut cursor = -1;
    let mut quiet_until = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let records = catalog.records();
        let turn = (|| {
            let head = records.events_head()?;
            // Fan-out copies up to 1000 events a call; a call that moves nothing has seen all there is.
            while cursor < head {
                let reached = records.fan_out(&target.subscription())?;
                cursor = if reached > cursor { reached } else { head };
            }
            records.claim_delivery(&target.name, lease_ms)
        })();
        match turn {
            Ok(Some(d)) => settle(catalog, target, opts, &d),
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                if Instant::now() >= quiet_until {
                    tracing::warn!(target = %target.name, "webhook sender: {e}");
                    quiet_until = Instant::now() + Duration::from_secs(60);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Delivered,
    Gone,
    Failed(String),
}

/// Sends `d` once and records the outcome.
fn settle(catalog: &Catalog, target: &Target, opts: &SendOptions, d: &Delivery) {
    let records = catalog.records();
    let outcome: Result<(), (String, Option<i64>)> = match attempt(target, opts, d) {
        Attempt::Delivered => {
            TOTALS[0].fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Attempt::Gone => {
            TOTALS[3].fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target = %target.name, "webhook target answered 410 Gone: disabled until enabled again (POST /v1/webhooks/{{name}}/enable)");
            if let Err(e) = records.set_target_disabled(&target.name, Some("the receiver answered 410 Gone")) {
                tracing::error!(target = %target.name, "cannot disable the webhook target: {e}");
            }
            Err(("HTTP 410 Gone: target disabled".into(), Some(0)))
        }
        Attempt::Failed(error) => {
            let age = Duration::from_millis(u64::try_from(now_ms().saturating_sub(d.created_ms)).unwrap_or(0));
            let delay = (age < opts.retry_for).then(|| backoff(opts.retry_base, d.attempts));
            if delay.is_some() {
                TOTALS[1].fetch_add(1, Ordering::Relaxed);
                tracing::info!(target = %target.name, event = %d.event_id, attempts = d.attempts + 1, "webhook delivery failed, will retry: {error}");
            } else {
                TOTALS[2].fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target = %target.name, event = %d.event_id, "webhook delivery given up after {:?}: {error}", opts.retry_for);
            }
            Err((error, delay.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))))
        }
    };
    let outcome = match &outcome {
        Ok(()) => Ok(()),
        Err((e, delay)) => Err((e.as_str(), *delay)),
    };
    if let Err(e) = records.settle_delivery(&target.name, d.event, outcome) {
        // The lease lapses and the delivery is sent again: at least once.
        tracing::error!(target = %target.name, event = %d.event_id, "cannot record a webhook delivery's outcome: {e}");
    }
}

/// The delay before retry number `attempts + 1`: `base`, doubled each time, at most an hour.
fn backoff(base: Duration, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    base.saturating_mul(1 << doublings).min(Duration::from_secs(3600))
}

fn now_ms() -> i64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

/// One signed POST of `d` to `target`, to an address the rules allow (pinned: no second lookup).
fn attempt(target: &Target, opts: &SendOptions, d: &Delivery) -> Attempt {
    let addrs = match crate::ingest::allowed_addrs(&target.url, opts.allow_private) {
        Ok(a) => a,
        Err(crate::ingest::AddrError::Refused(e) | crate::ingest::AddrError::Unresolved(e)) => return Attempt::Failed(e),
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(opts.timeout)
        .timeout(opts.timeout)
        .redirects(0)
        .resolver(move |_: &str| Ok(addrs.clone()))
        .build();
    let timestamp = now_ms() / 1000;
    let signature = super::sign::signature(target.key(), &d.event_id, timestamp, &d.body);
    let sent = agent
        .post(target.url.as_str())
        .set("content-type", "application/json")
        .set("user-agent", concat!("knockoff/", env!("CARGO_PKG_VERSION")))
        .set("webhook-id", &d.event_id)
        .set("webhook-timestamp", &timestamp.to_string())
        .set("webhook-signature", &signature)
        .send_string(&d.body);
    match sent {
        Ok(r) if (200..300).contains(&r.status()) => Attempt::Delivered,
        Ok(r) => Attempt::Failed(format!("HTTP {} (redirects are not followed)", r.status())),
        Err(ureq::Error::Status(410, _)) => Attempt::Gone,
        Err(ureq::Error::Status(code, _)) => Attempt::Failed(format!("HTTP {code}")),
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 0), Duration::from_secs(5));
        assert_eq!(backoff(base, 3), Duration::from_secs(40));
        assert_eq!(backoff(base, 12), Duration::from_secs(3600));
        assert_eq!(backoff(base, 1000), Duration::from_secs(3600));
        // 26 hours of retries is more than 24 attempts' worth of an hour each.
        let total: Duration = (0..40).map(|a| backoff(base, a)).sum();
        assert!(total > Duration::from_secs(24 * 3600));
    }
}
