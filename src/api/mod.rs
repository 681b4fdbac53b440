//! The HTTP service (`knockoff serve`): settings resolved once
//! ([`settings`]), state built once ([`start`]), axum routes split by area
//! ([`routes`]), extractors that parse each request once ([`extract`]),
//! problem+json errors ([`error`]) and the `OpenAPI` document ([`openapi`]).
//! Handlers translate: request in, a library call, the library's typed
//! result out through the API's own types ([`types`]).

mod auth;
pub mod bodies;
pub mod error;
pub mod extract;
mod idempotency;
mod metrics;
pub mod openapi;
pub mod pages;
mod pool;
mod router;
mod routes;
mod server;
pub mod settings;
mod state;
pub mod types;

pub use auth::{Caller, KeyError, Keys, Role};
pub use error::ApiError;
pub use metrics::Metrics;
pub use openapi::{ApiDoc, ROUTES};
pub use pool::InferencePool;
pub use router::router;
pub use server::serve;
pub use settings::{ConfigError, ConfigFile, Overrides, ServiceConfig, Settings};
pub use state::{start, AppState, StartError};
