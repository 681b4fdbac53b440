//! knockoff: a counterfeit detector for online marketplaces.
//!
//! A listing photo is embedded by an ONNX vision model ([`embed`]), matched
//! against a catalog of authentic and counterfeit reference photos
//! ([`catalog`], [`search`]), and the answer is served over HTTP ([`api`]).
//! Brand catalogs are loaded in bulk by [`ingest`]. The `knockoff` binary
//! ([`cli`]) drives all of it.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod embed;
pub mod eval;
pub mod ingest;
pub mod search;
pub mod util;
