//! The shared vector index: Milvus through its RESTful API (v1, served on
//! the proxy port of Milvus 2.3). A [`MilvusCollection`] is one collection
//! with an HNSW / inner-product index on `vector`, the image id and the
//! filterable fields (`label`, `brand`, `category`) as dynamic fields, so
//! filtering happens inside the search. Milvus assigns its own primary keys;
//! deletes find them by image id first.

use std::time::Duration;

use serde_json::{json, Value};

use super::{VectorIndex, VectorRow};
use crate::catalog::{CatalogError, Filter};

const ENGINE: &str = "Milvus";
const SETTING: &str = "KNOCKOFF_VECTORS";
/// Rows per insert request (a 1280-d row is ~15 KB of JSON).
const INSERT_CHUNK: usize = 256;
/// Milvus answers at most this many rows per query (offset + limit).
const QUERY_WINDOW: i64 = 10_000;

/// A Milvus server (`milvus://USER:PASSWORD@HOST:PORT`).
pub struct Milvus {
    base: String,
    auth: String,
    address: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Milvus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Milvus({})", self.address)
    }
}

impl Milvus {
    /// Parses the setting and checks that the server answers (and accepts the credentials).
    pub fn connect(url: &str) -> Result<Milvus, CatalogError> {
        let bad = |detail: String| CatalogError::Invalid { field: SETTING, detail };
        let u = url::Url::parse(url).map_err(|e| bad(format!("not a URL ({e}); expected milvus://USER:PASSWORD@HOST:PORT")))?;
        if u.scheme() != "milvus" {
            return Err(bad(format!("scheme '{}' is not milvus://", u.scheme())));
        }
        let host = u.host_str().ok_or_else(|| bad("no host".into()))?.to_string();
        let port = u.port().unwrap_or(19530);
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let user = decode(u.username());
        let password = u.password().map(decode);
        let auth = match password {
            Some(p) => format!("Bearer {user}:{p}"),
            None if user.is_empty() => String::new(),
            None => format!("Bearer {user}"),
        };
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(3)).timeout(Duration::from_secs(60)).build();
        let m = Milvus { base: format!("http://{host}:{port}/v1/vector"), auth, address: format!("{host}:{port}"), agent };
        m.collections()?;
        Ok(m)
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    fn down(&self, detail: impl std::fmt::Display) -> CatalogError {
        CatalogError::Unavailable { engine: ENGINE, setting: SETTING, address: self.address.clone(), detail: detail.to_string() }
    }

    /// One request; Milvus reports errors in the body (`code` other than 200).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CatalogError> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if !self.auth.is_empty() {
            req = req.set("Authorization", &self.auth);
        }
        let resp = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        let value: Value = match resp {
            Ok(r) => {
                let text = r.into_string().map_err(|e| self.down(format!("unreadable answer: {e}")))?;
                serde_json::from_str(&text).map_err(|e| self.down(format!("unreadable answer: {e}")))?
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(CatalogError::Engine { engine: ENGINE, detail: format!("HTTP {code} from {path}: {text}") });
            }
            Err(e) => return Err(self.down(e)),
        };
        match value.get("code").and_then(Value::as_i64) {
            Some(200) => Ok(value.get("data").cloned().unwrap_or(Value::Null)),
            Some(1800) => Err(self.down("the credentials in the setting were refused")),
            // After a restart Milvus loads its collections again by itself
            // (seconds to minutes): a passing state, not an error in the request.
            _ if value.get("message").and_then(Value::as_str).is_some_and(|m| m.contains("not loaded")) => {
                Err(self.down(format!("{path}: the collection is not loaded yet (Milvus loads it after a restart)")))
            }
            _ => Err(CatalogError::Engine { engine: ENGINE, detail: format!("{path}: {}", value.get("message").unwrap_or(&value)) }),
        }
    }

    /// The collections that exist.
    pub fn collections(&self) -> Result<Vec<String>, CatalogError> {
        let v = self.call("GET", "/collections", None)?;
        Ok(v.as_array().map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect()).unwrap_or_default())
    }

    /// Creates the collection (HNSW, inner product) unless it exists.
    pub fn ensure_collection(&self, name: &str, dim: usize) -> Result<(), CatalogError> {
        if self.collections()?.iter().any(|c| c == name) {
            return Ok(());
        }
        let body = json!({"collectionName": name, "dimension": dim, "metricType": "IP", "primaryField": "pk", "vectorField": "vector",
                          "description": "knockoff reference image vectors"});
        self.call("POST", "/collections/create", Some(&body))?;
        Ok(())
    }

    /// Whether the collection is loaded (searchable): `Unavailable` naming
    /// its state otherwise, as right after Milvus restarted.
    pub fn loaded(&self, name: &str) -> Result<(), CatalogError> {
        let v = self.call("GET", &format!("/collections/describe?collectionName={name}"), None)?;
        match v.get("load").and_then(Value::as_str) {
            Some("LoadStateLoaded") => Ok(()),
            state => Err(self.down(format!("collection {name} is not loaded yet ({})", state.unwrap_or("no load state")))),
        }
    }

    /// Waits (at most `limit`) until the collection is loaded, saying so
    /// once if it is not at first; an engine restart needs no person.
    pub fn wait_loaded(&self, name: &str, limit: Duration) -> Result<(), CatalogError> {
        let start = std::time::Instant::now();
        let mut said = false;
        loop {
            match self.loaded(name) {
                Err(CatalogError::Unavailable { detail, .. }) if start.elapsed() < limit => {
                    if !said {
                        tracing::warn!("waiting for Milvus at {}: {detail}", self.address);
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    pub fn drop_collection(&self, name: &str) -> Result<(), CatalogError> {
        self.call("POST", "/collections/drop", Some(&json!({"collectionName": name})))?;
        Ok(())
    }

    /// Inserts rows (callers delete an image's earlier copy first: Milvus
    /// does not deduplicate); returns the primary key of the last row.
    pub fn insert(&self, name: &str, rows: &[VectorRow<'_>]) -> Result<Option<i64>, CatalogError> {
        let mut last = None;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let data: Vec<Value> = chunk
                .iter()
                .map(|r| {
                    json!({"vector": r.vector, "image_id": r.id, "label": r.label.as_str(),
                           "brand": r.brand.unwrap_or(""), "category": r.category.unwrap_or("")})
                })
                .collect();
            let v = self.call("POST", "/insert", Some(&json!({"collectionName": name, "data": data})))?;
            last = v.get("insertIds").and_then(Value::as_array).and_then(|ids| ids.last()).and_then(primary_key).or(last);
        }
        Ok(last)
    }

    /// The `limit` nearest vectors passing `filter`: (image id, inner product), best first.
    pub fn search(&self, name: &str, q: &[f32], limit: usize, filter: &Filter) -> Result<Vec<(i64, f32)>, CatalogError> {
        let mut body = json!({"collectionName": name, "vector": q, "limit": limit, "outputFields": ["image_id"]});
        if let Some(expr) = filter_expr(filter) {
            body["filter"] = Value::String(expr);
        }
        let v = self.call("POST", "/search", Some(&body))?;
        let mut hits: Vec<(i64, f32)> = v
            .as_array()
            .map(|a| a.iter().filter_map(|h| Some((h.get("image_id")?.as_i64()?, h.get("distance")?.as_f64()? as f32))).collect())
            .unwrap_or_default();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(hits)
    }

    /// Milvus primary keys of the given images' vectors.
    fn keys_of(&self, name: &str, image_ids: &[i64]) -> Result<Vec<i64>, CatalogError> {
        let mut keys = Vec::new();
        for chunk in image_ids.chunks(1000) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let body = json!({"collectionName": name, "filter": format!("image_id in [{}]", list.join(",")), "outputFields": ["pk"],
                              "limit": QUERY_WINDOW});
            let v = self.call("POST", "/query", Some(&body))?;
            keys.extend(v.as_array().into_iter().flatten().filter_map(|r| primary_key(r.get("pk")?)));
        }
        Ok(keys)
    }

    /// Deletes every vector of these images (all copies).
    pub fn delete_images(&self, name: &str, image_ids: &[i64]) -> Result<(), CatalogError> {
        let keys = self.keys_of(name, image_ids)?;
        for chunk in keys.chunks(1000) {
            self.call("POST", "/delete", Some(&json!({"collectionName": name, "id": chunk})))?;
        }
        Ok(())
    }

    /// Waits (at most `limit`) until the row with primary key `key` is
    /// searchable (Milvus makes inserts searchable at its next time tick,
    /// ~200 ms), so that a writer reads its own writes. Returns whether it became visible.
    pub fn wait_visible(&self, name: &str, key: i64, limit: Duration) -> Result<bool, CatalogError> {
        let start = std::time::Instant::now();
        let body = json!({"collectionName": name, "filter": format!("pk in [{key}]"), "outputFields": ["pk"], "limit": 1});
        loop {
            let v = self.call("POST", "/query", Some(&body))?;
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                return Ok(true);
            }
            if start.elapsed() >= limit {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Image ids of vectors with an image id above `above` (at most 10,000 per call).
    pub fn image_ids_above(&self, name: &str, above: i64) -> Result<Vec<i64>, CatalogError> {
        let body =
            json!({"collectionName": name, "filter": format!("image_id > {above}"), "outputFields": ["image_id"], "limit": QUERY_WINDOW});
        let v = self.call("POST", "/query", Some(&body))?;
        Ok(v.as_array().into_iter().flatten().filter_map(|r| r.get("image_id")?.as_i64()).collect())
    }

    /// Every image id with a vector in the collection, for ids in `[lo, hi]`.
    pub fn image_ids(&self, name: &str, lo: i64, hi: i64) -> Result<Vec<i64>, CatalogError> {
        let mut out = Vec::new();
        let mut start = lo;
        // Windows of ids narrow enough that one query answers all of them
        // (an image has one vector, or two briefly while it is re-inserted).
        let step = QUERY_WINDOW / 2;
        while start <= hi {
            let end = start.saturating_add(step);
            let body = json!({"collectionName": name, "filter": format!("image_id >= {start} and image_id < {end}"),
                              "outputFields": ["image_id"], "limit": QUERY_WINDOW});
            let v = self.call("POST", "/query", Some(&body))?;
            out.extend(v.as_array().into_iter().flatten().filter_map(|r| r.get("image_id")?.as_i64()));
            start = end;
        }
        Ok(out)
    }
}

/// One collection of a Milvus server, as a [`VectorIndex`].
pub struct MilvusCollection {
    pub milvus: std::sync::Arc<Milvus>,
    pub name: String,
    pub dim: usize,
}

impl VectorIndex for MilvusCollection {
    fn dim(&self) -> usize {
        self.dim
    }

    /// Inserts, then waits (at most 2 s) until the last row is searchable, so a writer reads its own writes.
    fn insert(&self, rows: &[VectorRow<'_>]) -> Result<(), CatalogError> {
        if let Some(last) = self.milvus.insert(&self.name, rows)? {
            if !self.milvus.wait_visible(&self.name, last, Duration::from_secs(2))? {
                tracing::warn!("Milvus has not made its row {last} searchable after 2 s");
            }
        }
        Ok(())
    }

    /// Filters inside Milvus; `ef` is Milvus's own. A few more than `k` are
    /// asked for, and an image's vector met twice (a re-placement not yet
    /// cleaned up) counts once.
    fn search(
        &self,
        q: &[f32],
        k: usize,
        _ef: usize,
        filter: &Filter,
        _keep: &dyn Fn(i64) -> bool,
    ) -> Result<Vec<(i64, f32)>, CatalogError> {
        let mut seen = std::collections::HashSet::new();
        let hits = self.milvus.search(&self.name, q, k + 8, filter)?;
        Ok(hits.into_iter().filter(|(id, _)| seen.insert(*id)).collect())
    }
}

/// Milvus answers 64-bit keys as strings (JSON numbers lose precision past 2^53).
fn primary_key(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// A string literal in Milvus's expression language.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The search filter as a Milvus boolean expression (`None`: no filter).
pub fn filter_expr(f: &Filter) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(l) = f.label {
        parts.push(format!("label == {}", quoted(l.as_str())));
    }
    if let Some(b) = &f.brand {
        parts.push(format!("brand == {}", quoted(b)));
    }
    if let Some(c) = &f.category {
        parts.push(format!("category == {}", quoted(c)));
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_expressions_with_escaped_strings() {
        assert_eq!(filter_expr(&Filter::default()), None);
        let f = Filter { brand: Some("Ac\"me\\".into()), label: Some(crate::catalog::Label::Counterfeit), category: None };
        assert_eq!(filter_expr(&f).unwrap(), r#"label == "counterfeit" and brand == "Ac\"me\\""#);
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_shown() {
        // Nothing listens on port 9: the error names the address only.
        let err = Milvus::connect("milvus://ro%40ot:p%2Fw%20x@127.0.0.1:9").unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:9") && err.contains("KNOCKOFF_VECTORS") && !err.contains("p%2Fw") && !err.contains("p/w"), "{err}");
        assert!(Milvus::connect("postgres://x@127.0.0.1:9").is_err());
    }

    #[test]
    fn keys_are_read_from_strings_and_numbers() {
        assert_eq!(primary_key(&json!("470804696871207132")), Some(470_804_696_871_207_132));
        assert_eq!(primary_key(&json!(7)), Some(7));
        assert_eq!(primary_key(&json!(null)), None);
    }
}
