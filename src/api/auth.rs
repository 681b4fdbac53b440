//! API keys: `read` (lookup), `analyst` (lookup, read and decide review
//! cases) and `admin` (catalog); each role may do what the roles before it may. Keys are held only as sha256 hashes and compared in constant time.
//!
//! The key is checked in one place, [`check`], by the layer the router puts
//! on every route of a role ([`super::router`]), before anything reads the
//! body: a request with a wrong key is answered 401/403 without its body
//! being parsed or its URLs fetched (the body is read on and thrown away
//! only as far as the 413 handling does, so the client gets the answer
//! rather than a broken pipe). A handler cannot forget the check: it never
//! makes it. The caller (its key's name and role) is in the request's
//! extensions for handlers that need it.

use axum::http::header;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Analyst,
    Admin,
}

impl Role {
    /// What the role allows, for the 403 message.
    fn allows(self) -> &'static str {
        match self {
            Role::Read => "look up photos",
            Role::Analyst => "read or decide review cases",
            Role::Admin => "read or change the catalog and its jobs",
        }
    }
}

/// Who made a request: the key's name (`None` on an open loopback service) and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: Option<String>,
    pub role: Role,
}

/// The caller of a request to a route that needs `role`, or why not.
pub fn check(keys: &Keys, headers: &axum::http::HeaderMap, role: Role) -> Result<Caller, super::error::ApiError> {
    if keys.is_empty() {
        return Ok(Caller { name: None, role: Role::Admin }); // open, loopback only (enforced at start)
    }
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(super::error::ApiError::Unauthorized)?;
    let key = keys.check(secret.trim()).ok_or(super::error::ApiError::Unauthorized)?;
    if key.role < role {
        return Err(super::error::ApiError::Forbidden(role.allows()));
    }
    Ok(Caller { name: Some(key.name.clone()), role: key.role })
}

impl std::str::FromStr for Role {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "read" => Ok(Role::Read),
            "analyst" => Ok(Role::Analyst),
            "admin" => Ok(Role::Admin),
            other => Err(KeyError::Role(other.to_string())),
        }
    }
}

/// What is wrong with an API key setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("API key entry '{0}' is not name:role:secret")]
    Shape(String),
    #[error("API key role must be read, analyst or admin, not '{0}'")]
    Role(String),
    #[error("API key '{0}': secret must be at least 8 characters")]
    ShortSecret(String),
    #[error("API key '{0}': sha256 must be 64 hex digits")]
    Hash(String),
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub name: String,
    pub role: Role,
    hash: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct Keys(Vec<ApiKey>);

impl Keys {
    /// Parses `name:role:secret,name:role:secret`.
    pub fn from_env_value(v: &str) -> Result<Keys, KeyError> {
        let mut keys = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut parts = item.splitn(3, ':');
            let (Some(name), Some(role), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(KeyError::Shape(item.split(':').next().unwrap_or("").to_string()));
            };
            let role: Role = role.parse()?;
            if secret.len() < 8 {
                return Err(KeyError::ShortSecret(name.into()));
            }
            keys.push(ApiKey { name: name.into(), role, hash: Sha256::digest(secret.as_bytes()).into() });
        }
        Ok(Keys(keys))
    }

    /// Adds a key given as the hex sha256 of its secret (config files).
    pub fn add_hashed(&mut self, name: &str, role: &str, sha256_hex: &str) -> Result<(), KeyError> {
        let role: Role = role.parse()?;
        let bytes = hex::decode(sha256_hex.trim()).map_err(|_| KeyError::Hash(name.into()))?;
        let hash: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Hash(name.into()))?;
        self.0.push(ApiKey { name: name.into(), role, hash });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: Keys) {
        self.0.extend(other.0);
    }

    /// The key matching a bearer secret, comparing every key in constant time.
    pub fn check(&self, secret: &str) -> Option<&ApiKey> {
        let h: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let mut found = None;
        for k in &self.0 {
            let diff = k.hash.iter().zip(h.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(k);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_check() {
        let k = Keys::from_env_value("shop:read:secret-read-1, ops:admin:secret-admin-1").unwrap();
        assert_eq!(k.check("secret-read-1").map(|k| k.role), Some(Role::Read));
        assert_eq!(k.check("secret-admin-1").map(|k| k.name.as_str()), Some("ops"));
        let a = Keys::from_env_value("ana:analyst:secret-analyst").unwrap();
        assert_eq!(a.check("secret-analyst").map(|k| k.role), Some(Role::Analyst));
        assert!(Role::Read < Role::Analyst && Role::Analyst < Role::Admin);
        assert!(k.check("nope").is_none());
        assert_eq!(Keys::from_env_value("a:root:12345678").unwrap_err(), KeyError::Role("root".into()));
        assert_eq!(Keys::from_env_value("a:read:short").unwrap_err(), KeyError::ShortSecret("a".into()));
        assert_eq!(Keys::from_env_value("garbage").unwrap_err(), KeyError::Shape("garbage".into()));
        assert_eq!(Keys::default().add_hashed("h", "read", "abc"), Err(KeyError::Hash("h".into())));
    }
}
