//! Service configuration: a TOML file (`--config`), overridden by
//! `KNOCKOFF_*` environment variables and command-line flags.
//!
//! ```toml
//! addr = "127.0.0.1:8080"
//! max_body_bytes = 20971520
//! queue_depth = 64
//! max_batch = 32
//! request_timeout_ms = 30000
//! allow_private_urls = false
//! max_pixels = 40000000
//! [verdict]
//! slope = 20.0
//! midpoint = 0.75
//! min_confidence = 0.5
//! margin = 0.05
//! [[api_keys]]
//! name = "shop"
//! role = "read"
//! sha256 = "<hex sha256 of the secret>"
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::search::VerdictConfig;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub addr: Option<std::net::SocketAddr>,
    pub index: Option<std::path::PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub queue_depth: Option<usize>,
    pub max_batch: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub allow_private_urls: Option<bool>,
    pub max_pixels: Option<u64>,
    pub verdict: Option<VerdictConfig>,
    #[serde(default)]
    pub api_keys: Vec<KeyEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    pub role: String,
    /// Hex sha256 of the secret (the secret itself never goes in the file).
    pub sha256: String,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }
}
