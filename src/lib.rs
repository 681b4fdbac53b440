//! knockoff: a counterfeit detector for online marketplaces.
//!
//! Data flow, with the module that owns each step:
//!
//! | step | module |
//! |---|---|
//! | upload → bytes (raw, multipart, JSON, URL) | [`api::extract`] (HTTP), [`ingest`] (manifests) |
//! | bytes → decoded, preprocessed → embedding | [`embed`] |
//! | embedding → nearest images → products | [`search`] over [`catalog`] |
//! | products → confidences → verdict (one function) | [`search::lookup`] |
//! | answer → JSON | [`api`] / [`cli`] |
//! | calibration, projection, verdict thresholds | [`fit`] |
//! | a lookup kept as a case; an analyst's decision → a new reference | [`review`] |
//! | a case created or decided, a job finished, a refit → signed webhooks | [`webhooks`] |
//! | measuring all of it | [`eval`] |
//!
//! The `knockoff` binary ([`cli`]) and the HTTP service ([`api`]) only
//! translate: arguments or requests in, the library's typed result out.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod embed;
pub mod eval;
pub mod fit;
pub mod index;
pub mod ingest;
pub mod metrics;
pub mod review;
pub mod search;
pub mod synth;
pub mod util;
pub mod webhooks;
