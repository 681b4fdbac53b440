//! Service settings, resolved once: command-line flags and `KNOCKOFF_*`
//! variables ([`Overrides`]: only what was really given), then the TOML
//! config file, then defaults.
//!
//! ```toml
//! addr = "127.0.0.1:8080"
//! index = "index"
//! # The shared backend instead of the index folder (KNOCKOFF_STORE / KNOCKOFF_VECTORS win over these):
//! # store = "postgres://knockoff:PASSWORD@127.0.0.1:5432/knockoff"
//! # vectors = "milvus://root:PASSWORD@127.0.0.1:19530"
//! max_body_bytes = 20971520
//! queue_depth = 64
//! max_batch = 32
//! request_timeout_ms = 30000
//! allow_private_urls = false
//! max_pixels = 40000000
//! refit_interval_ms = 30000
//! copy_detection = true
//! [verdict]
//! max_false_accusation = 0.02
//! authentic_threshold = 0.5
//! # Photos of products the catalog does not hold that may be called likely_authentic.
//! max_false_authentication = 0.01
//! # Share of lookups expected to show products outside the catalog (default: the 5 % fitted with).
//! out_of_catalog_share = 0.05
//! [cases]
//! # Which lookups become review cases: "listing" (with listing context or record=true), "always", "asked" (record=true only).
//! record = "listing"
//! # Case photos older than this are dropped (cases, decisions and the audit trail stay).
//! keep_photos_days = 90
//! # One `name:role:secret` a line, re-read on SIGHUP (keep it readable by the service alone):
//! # api_keys_file = "/etc/knockoff/keys"
//! # Signed webhooks (docs/webhooks.md); the secret is a Standard Webhooks whsec_ key:
//! # [[webhooks]]
//! # url = "https://hooks.example.com/knockoff"
//! # secret = "whsec_..."
//! # events = ["case.created", "case.decided", "job.finished", "catalog.refitted"]
//! # min_p_counterfeit = 0.5
//! [[api_keys]]
//! name = "shop"
//! role = "read"
//! sha256 = "<hex sha256 of the secret>"
//! ```
//!
//! (The example above is checked by a test: it parses and resolves.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::auth::{KeyError, Keys};
use crate::review::CasesConfig;
use crate::search::VerdictConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("refusing to listen on {0} without API keys: set KNOCKOFF_API_KEYS=name:role:secret,... or bind to 127.0.0.1")]
    PublicWithoutKeys(SocketAddr),
    #[error(transparent)]
    Webhook(#[from] crate::webhooks::WebhookError),
    #[error("config [verdict] {key} = {value}: a rate or share must lie strictly between 0 and 1")]
    Rate { key: &'static str, value: f32 },
}

/// The config file (`--config`); every field is optional.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub addr: Option<SocketAddr>,
    pub index: Option<PathBuf>,
    /// The shared backend's PostgreSQL (with `vectors`; replaces `index`).
    pub store: Option<String>,
    /// The shared backend's Milvus.
    pub vectors: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub queue_depth: Option<usize>,
    pub max_batch: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub allow_private_urls: Option<bool>,
    pub max_pixels: Option<u64>,
    /// How often the service checks whether the catalog changed enough to refit its calibration.
    pub refit_interval_ms: Option<u64>,
    /// Whether lookups check for reused catalog photos (`copies`); off saves the local features and their verification.
    pub copy_detection: Option<bool>,
    pub verdict: Option<VerdictConfig>,
    /// Review cases: which lookups are kept, how long their photos.
    pub cases: Option<CasesConfig>,
    /// A file of API keys, one `name:role:secret` a line (re-read on SIGHUP).
    pub api_keys_file: Option<PathBuf>,
    #[serde(default)]
    pub api_keys: Vec<KeyEntry>,
    /// Where events are sent, signed ([`crate::webhooks`]).
    #[serde(default)]
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
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
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.into(), error })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), detail: e.to_string() })
    }
}

/// Settings given on the command line or in the environment; `None` means
/// not given (a default value does not count), so the config file applies.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub index: Option<PathBuf>,
    pub addr: Option<SocketAddr>,
    pub api_keys: Option<String>,
    pub api_keys_file: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub queue_depth: Option<usize>,
    pub max_batch: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub allow_private_urls: Option<bool>,
    pub max_pixels: Option<u64>,
}

/// Everything the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub index: PathBuf,
    /// The shared backend from the config file (the command line and environment win).
    pub store: Option<String>,
    pub vectors: Option<String>,
    pub addr: SocketAddr,
    pub keys: Keys,
    /// Where the keys came from, to read them again (SIGHUP).
    pub key_sources: KeySources,
    pub config: ServiceConfig,
    pub max_pixels: u64,
}

impl Settings {
    /// Flags and environment over the config file over defaults; checks the
    /// keys and that an unauthenticated service stays on loopback.
    pub fn resolve(o: Overrides, file: ConfigFile) -> Result<Settings, ConfigError> {
        let addr = o.addr.or(file.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let key_sources = KeySources { inline: o.api_keys, file: o.api_keys_file.or(file.api_keys_file), hashed: file.api_keys, addr };
        let keys = key_sources.load()?;
        if let Some(v) = &file.verdict {
            check_rates(v)?;
        }
        let d = ServiceConfig::default();
        let allow_private_urls = o.allow_private_urls.or(file.allow_private_urls).unwrap_or(d.allow_private_urls);
        let webhooks = crate::webhooks::targets(&file.webhooks, allow_private_urls)?;
        let config = ServiceConfig {
            max_body_bytes: o.max_body_bytes.or(file.max_body_bytes).unwrap_or(d.max_body_bytes),
            queue_depth: o.queue_depth.or(file.queue_depth).unwrap_or(d.queue_depth),
            max_batch: o.max_batch.or(file.max_batch).unwrap_or(d.max_batch),
            request_timeout: o.request_timeout_ms.or(file.request_timeout_ms).map_or(d.request_timeout, Duration::from_millis),
            allow_private_urls,
            verdict: file.verdict,
            refit_interval: file.refit_interval_ms.map_or(d.refit_interval, Duration::from_millis),
            copy_detection: file.copy_detection.unwrap_or(d.copy_detection),
            cases: file.cases.unwrap_or_default(),
            webhooks,
            ..d
        };
        Ok(Settings {
            index: o.index.or(file.index).unwrap_or_else(|| PathBuf::from("index")),
            store: file.store,
            vectors: file.vectors,
            addr,
            keys,
            key_sources,
            config,
            max_pixels: o.max_pixels.or(file.max_pixels).unwrap_or(crate::embed::DEFAULT_MAX_PIXELS),
        })
    }
}

/// Where the service's API keys come from: `KNOCKOFF_API_KEYS` (or the
/// `--api-keys` flag, which any local user can read in the process list),
/// a keys file (`--api-keys-file`, `KNOCKOFF_API_KEYS_FILE`, `api_keys_file`;
/// one `name:role:secret` a line, `#` comments), and the config file's
/// hashed `[[api_keys]]`. All of them apply together.
#[derive(Debug, Clone)]
pub struct KeySources {
    pub inline: Option<String>,
    pub file: Option<PathBuf>,
    pub hashed: Vec<KeyEntry>,
    /// The address served: off loopback, an empty set of keys is refused.
    pub addr: SocketAddr,
}

impl KeySources {
    /// The keys as the sources say now.
    pub fn load(&self) -> Result<Keys, ConfigError> {
        let mut keys = Keys::from_env_value(self.inline.as_deref().unwrap_or(""))?;
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.clone(), error })?;
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
            keys.extend(Keys::from_env_value(&lines.join(","))?);
        }
        for k in &self.hashed {
            keys.add_hashed(&k.name, &k.role, &k.sha256)?;
        }
        if keys.is_empty() && !self.addr.ip().is_loopback() {
            return Err(ConfigError::PublicWithoutKeys(self.addr));
        }
        Ok(keys)
    }
}

/// The `[verdict]` rates an operator states are probabilities.
fn check_rates(v: &VerdictConfig) -> Result<(), ConfigError> {
    let rates = [
        ("max_false_accusation", Some(v.max_false_accusation)),
        ("max_missed_counterfeit", Some(v.max_missed_counterfeit)),
        ("max_false_authentication", Some(v.max_false_authentication)),
        ("out_of_catalog_share", v.out_of_catalog_share),
    ];
    match rates.into_iter().find_map(|(key, r)| r.filter(|x| !(*x > 0.0 && *x < 1.0)).map(|value| (key, value))) {
        Some((key, value)) => Err(ConfigError::Rate { key, value }),
        None => Ok(()),
    }
}

/// Service limits.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub max_body_bytes: usize,
    pub inference_threads: usize,
    pub queue_depth: usize,
    pub max_k: usize,
    pub max_batch: usize,
    pub request_timeout: Duration,
    pub allow_private_urls: bool,
    /// A `[verdict]` section of the config file: the stated false-accusation
    /// rate and the defaults that apply where nothing was fitted.
    pub verdict: Option<VerdictConfig>,
    /// How often the catalog is checked for changes that call for a refit.
    pub refit_interval: Duration,
    /// Whether lookups check for reused catalog photos.
    pub copy_detection: bool,
    /// Which lookups become review cases, how long their photos are kept.
    pub cases: CasesConfig,
    /// Where events are sent, signed.
    pub webhooks: Vec<crate::webhooks::Target>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_body_bytes: 20 * 1024 * 1024,
            inference_threads: crate::embed::available_cores(),
            queue_depth: 64,
            max_k: 100,
            max_batch: 32,
            request_timeout: Duration::from_secs(30),
            allow_private_urls: false,
            verdict: None,
            refit_interval: Duration::from_secs(30),
            copy_detection: true,
            cases: CasesConfig::default(),
            webhooks: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in this module's documentation.
    fn documented_example() -> String {
        let src = include_str!("settings.rs");
        let start = src.find("//! ```toml").unwrap() + "//! ```toml".len();
        let end = start + src[start..].find("//! ```").unwrap();
        src[start..end].lines().map(|l| l.trim_start_matches("//!").trim_start()).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn the_documented_example_parses_and_resolves() {
        let text = documented_example().replace("<hex sha256 of the secret>", &"ab".repeat(32));
        let file = ConfigFile::parse(&text, Path::new("example.toml")).unwrap();
        let s = Settings::resolve(Overrides::default(), file).unwrap();
        assert_eq!(s.config.max_batch, 32);
        assert_eq!(s.config.verdict.as_ref().map(|v| v.max_false_accusation), Some(0.02));
        assert_eq!(s.config.refit_interval, Duration::from_secs(30));
        assert!(!s.keys.is_empty());
    }

    #[test]
    fn verdict_rates_outside_zero_to_one_are_refused_with_the_key_named() {
        for (line, key) in [("max_false_accusation = 2.0", "max_false_accusation"), ("out_of_catalog_share = 0.0", "out_of_catalog_share")]
        {
            let file = ConfigFile::parse(&format!("[verdict]\n{line}\n"), Path::new("k.toml")).unwrap();
            let err = Settings::resolve(Overrides::default(), file).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("between 0 and 1"), "{err}");
        }
        let ok = ConfigFile::parse("[verdict]\nout_of_catalog_share = 0.3\n", Path::new("k.toml")).unwrap();
        let s = Settings::resolve(Overrides::default(), ok).unwrap();
        assert_eq!(s.config.verdict.and_then(|v| v.out_of_catalog_share), Some(0.3));
    }

    #[test]
    fn given_settings_beat_the_file_and_the_file_beats_defaults() {
        let file = ConfigFile { index: Some("from-file".into()), max_batch: Some(7), queue_depth: Some(9), ..Default::default() };
        let given = Overrides { index: Some("index".into()), max_batch: Some(3), ..Default::default() };
        let s = Settings::resolve(given, file.clone()).unwrap();
        assert_eq!(s.index, PathBuf::from("index"), "an explicit --index index is given, not a default");
        assert_eq!((s.config.max_batch, s.config.queue_depth), (3, 9));
        let s = Settings::resolve(Overrides::default(), file).unwrap();
        assert_eq!(s.index, PathBuf::from("from-file"));
        let s = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
        assert_eq!((s.index, s.config.max_batch), (PathBuf::from("index"), ServiceConfig::default().max_batch));
    }

    #[test]
    fn a_public_address_needs_keys() {
        let public = Overrides { addr: Some("0.0.0.0:8080".parse().unwrap()), ..Default::default() };
        assert!(matches!(Settings::resolve(public.clone(), ConfigFile::default()), Err(ConfigError::PublicWithoutKeys(_))));
        let keyed = Overrides { api_keys: Some("a:read:12345678".into()), ..public };
        assert!(Settings::resolve(keyed, ConfigFile::default()).is_ok());
    }
}
