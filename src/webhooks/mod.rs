//! Webhooks: marketplaces are told what happened — a case created (at or
//! above a risk they choose) or decided, an indexing job finished, the
//! catalog refitted — by signed HTTP POSTs that follow Standard Webhooks 1.0
//! ([`sign`]), so receivers verify them with the reference library of their
//! language.
//!
//! Delivery is at least once and survives crashes: every event is written
//! in the same transaction as the change it reports (the outbox,
//! [`crate::catalog::store::EventKind`]); one sender thread per target
//! ([`send`]) copies the events it subscribes to into its deliveries and
//! sends them one at a time, in order per case, retrying with exponential
//! backoff for 26 hours. The event id (`webhook-id`) is the same on every
//! attempt, so a receiver de-duplicates by it. A receiver that is down or
//! slow delays only its own deliveries; one that answers 410 Gone is
//! disabled (a log line, a metric, `GET /v1/webhooks`) until an admin
//! enables it again. Targets obey the address rules of URL fetches
//! ([`crate::ingest::allowed_addrs`]), checked at start and at every attempt.
//!
//! ```toml
//! [[webhooks]]
//! name = "marketplace"            # default: the URL
//! url = "https://hooks.example.com/knockoff"
//! secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
//! events = ["case.created", "case.decided", "job.finished", "catalog.refitted"]
//! min_p_counterfeit = 0.5         # case.created only at or above this risk
//! ```

pub mod send;
pub mod sign;

use serde::Deserialize;

pub use send::{totals, Dispatcher, SendOptions};

use crate::catalog::store::{EventKind, TargetState};
use crate::catalog::{Catalog, CatalogError};

/// One `[[webhooks]]` entry of the config file.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The target's name in logs, metrics and `/v1/webhooks` (default: the URL).
    pub name: Option<String>,
    pub url: String,
    /// `whsec_` then base64 of the key (Standard Webhooks).
    pub secret: String,
    /// Event names: `case.created`, `case.decided`, `job.finished`, `catalog.refitted`.
    pub events: Vec<String>,
    /// `case.created` only for cases with `p_counterfeit` at or above this.
    pub min_p_counterfeit: Option<f32>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// A setting that stops the service from starting.
#[derive(Debug, thiserror::Error)]
#[error("config webhooks[{index}].{key}: {detail}")]
pub struct WebhookError {
    pub index: usize,
    pub key: &'static str,
    pub detail: String,
}

/// A checked target.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub url: url::Url,
    key: Vec<u8>,
    pub kinds: Vec<EventKind>,
    pub min_risk: Option<f32>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The URL without credentials or query, as logs and the admin API show it.
    #[must_use]
    pub fn shown_url(&self) -> String {
        shown(&self.url)
    }

    /// The signature key.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The subscription the store fans events out by.
    #[must_use]
    pub fn subscription(&self) -> crate::catalog::store::Subscription<'_> {
        crate::catalog::store::Subscription { target: &self.name, kinds: &self.kinds, min_risk: self.min_risk }
    }
}

/// Checks every `[[webhooks]]` entry: a URL the address rules allow, known
/// event names, a usable secret, a risk between 0 and 1, names used once.
pub fn targets(configs: &[WebhookConfig], allow_private: bool) -> Result<Vec<Target>, WebhookError> {
    let mut out: Vec<Target> = Vec::with_capacity(configs.len());
    for (index, c) in configs.iter().enumerate() {
        let bad = |key, detail: String| WebhookError { index, key, detail };
        let url = url::Url::parse(&c.url).map_err(|e| bad("url", format!("'{}' is not a URL: {e}", c.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("url", format!("'{}' must be an http(s) URL with a host", c.url)));
        }
        match crate::ingest::allowed_addrs(&url, allow_private) {
            Err(crate::ingest::AddrError::Refused(d)) => return Err(bad("url", format!("{d} (allow_private_urls = true allows them)"))),
            // A name that does not resolve now may later; every attempt checks again.
            Err(crate::ingest::AddrError::Unresolved(d)) => tracing::warn!("webhooks[{index}].url: {d}"),
            Ok(_) => {}
        }
        let key = sign::decode_secret(&c.secret).map_err(|d| bad("secret", format!("the secret {d}")))?;
        if c.events.is_empty() {
            return Err(bad("events", format!("name at least one of {}", names())));
        }
        let kinds = c
            .events
            .iter()
            .map(|e| EventKind::parse(e).ok_or_else(|| bad("events", format!("unknown event '{e}' (known: {})", names()))))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(p) = c.min_p_counterfeit.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(bad("min_p_counterfeit", format!("{p} is not a probability")));
        }
        let name = c.name.clone().unwrap_or_else(|| shown(&url));
        if name.is_empty() || out.iter().any(|t| t.name == name) {
            return Err(bad("name", format!("'{name}' is empty or names another target too")));
        }
        out.push(Target { name, url, key, kinds, min_risk: c.min_p_counterfeit });
    }
    Ok(out)
}

/// A target as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TargetView {
    pub name: String,
    /// Without credentials or query.
    pub url: String,
    pub events: Vec<EventKind>,
    pub min_p_counterfeit: Option<f32>,
    /// What the store holds for it (absent before its sender first ran).
    #[serde(flatten)]
    pub state: TargetState,
}

/// The configured targets with their delivery counts and whether they are disabled.
pub fn status(catalog: &Catalog, targets: &[Target]) -> Result<Vec<TargetView>, CatalogError> {
    targets
        .iter()
        .map(|t| {
            Ok(TargetView {
                name: t.name.clone(),
                url: t.shown_url(),
                events: t.kinds.clone(),
                min_p_counterfeit: t.min_risk,
                state: catalog.records().target_state(&t.name)?.unwrap_or_default(),
            })
        })
        .collect()
}

/// Sends to a target disabled by a 410 again; false: no configured target
/// has that name, or it has not run yet.
pub fn enable(catalog: &Catalog, targets: &[Target], name: &str) -> Result<bool, CatalogError> {
    if !targets.iter().any(|t| t.name == name) {
        return Ok(false);
    }
    let enabled = catalog.records().set_target_disabled(name, None)?;
    if enabled {
        tracing::info!(target = %name, "webhook target enabled");
    }
    Ok(enabled)
}

/// How long events stay once every target has them.
pub const KEEP_EVENTS_DAYS: u32 = 30;

/// Drops events older than [`KEEP_EVENTS_DAYS`] that every target has (hourly, by the service).
pub fn upkeep(catalog: &Catalog) -> Result<u64, CatalogError> {
    catalog.records().purge_events(KEEP_EVENTS_DAYS)
}

/// A URL as logs may show it: no credentials, query or fragment.
fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn names() -> String {
    EventKind::ALL.map(EventKind::as_str).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, secret: &str, events: &[&str]) -> WebhookConfig {
        WebhookConfig {
            name: None,
            url: url.into(),
            secret: secret.into(),
            events: events.iter().map(|e| (*e).to_string()).collect(),
            min_p_counterfeit: None,
        }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_target_the_address_rules_refuse_stops_the_start_naming_the_setting() {
        let loopback = config("http://127.0.0.1:9/hook", SECRET, &["case.created"]);
        let e = targets(std::slice::from_ref(&loopback), false).unwrap_err().to_string();
        assert!(e.contains("webhooks[0].url") && e.contains("loopback"), "{e}");
        assert_eq!(targets(&[loopback], true).unwrap()[0].name, "http://127.0.0.1:9/hook");
        let e = targets(&[config("ftp://example.com/x", SECRET, &["case.created"])], true).unwrap_err().to_string();
        assert!(e.contains("webhooks[0].url") && e.contains("http(s)"), "{e}");
    }

    #[test]
    fn unknown_events_and_empty_secrets_stop_the_start_naming_the_setting() {
        let ok = config("http://127.0.0.1:9/a", SECRET, &["case.decided"]);
        let unknown = config("http://127.0.0.1:9/b", SECRET, &["case.closed"]);
        let e = targets(&[ok.clone(), unknown], true).unwrap_err().to_string();
        assert!(e.contains("webhooks[1].events") && e.contains("case.closed"), "{e}");
        let e = targets(&[config("http://127.0.0.1:9/c", "whsec_", &["job.finished"])], true).unwrap_err().to_string();
        assert!(e.contains("webhooks[0].secret") && e.contains("empty"), "{e}");
        let e = targets(&[config("http://127.0.0.1:9/c", SECRET, &[])], true).unwrap_err().to_string();
        assert!(e.contains("webhooks[0].events"), "{e}");
        let e = targets(&[ok.clone(), ok], true).unwrap_err().to_string();
        assert!(e.contains("webhooks[1].name"), "{e}");
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let c = config("http://127.0.0.1:9/a", SECRET, &["case.decided"]);
        assert!(!format!("{c:?}").contains("MfKQ"));
        let t = targets(&[c], true).unwrap();
        assert!(!format!("{t:?}").contains("MfKQ") && !format!("{t:?}").contains("49, 242"));
    }
}
