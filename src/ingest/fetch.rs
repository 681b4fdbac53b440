//! Reading an image's bytes from a file or an http(s) URL, with a size
//! limit, timeouts, at most 3 redirects and a bounded number of retries.
//!
//! URLs are checked against server-side request forgery: unless
//! `allow_private` is set, every hop's host must resolve only to public
//! addresses (no loopback, private, link-local, CGNAT, unique-local,
//! multicast or unspecified), and the connection goes to the address that
//! was checked (no second DNS lookup to rebind).

use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::source::is_url;
use super::IngestError;
use crate::embed::EmbedError;

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub max_bytes: u64,
    pub timeout: Duration,
    pub retries: u32,
    /// Allow private, loopback and link-local targets.
    pub allow_private: bool,
    /// Allow local file paths (the CLI does; the HTTP service's URL lookups do not).
    pub allow_files: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions { max_bytes: 20 * 1024 * 1024, timeout: Duration::from_secs(20), retries: 2, allow_private: false, allow_files: true }
    }
}

pub const MAX_REDIRECTS: usize = 3;

/// Why an address is not a public one, if it is not.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_multicast() || v4.is_broadcast() || o[0] >= 240 {
                Some("multicast/reserved")
            } else if o[0] == 100 && (o[1] & 0xC0) == 64 {
                Some("shared (CGNAT)")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("unique-local")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

pub fn fetch(source: &str, opts: &FetchOptions) -> Result<Vec<u8>, IngestError> {
    let err = |detail: String| IngestError::Fetch { source_name: source.to_string(), detail };
    if !is_url(source) {
        if !opts.allow_files {
            return Err(err("only http(s) URLs are accepted here".into()));
        }
        let io = |e| IngestError::Embed(EmbedError::Io { source_name: source.into(), error: e });
        let meta = std::fs::metadata(source).map_err(io)?;
        if meta.len() > opts.max_bytes {
            return Err(err(format!("file is {} bytes, over the {} byte limit", meta.len(), opts.max_bytes)));
        }
        return std::fs::read(source).map_err(io);
    }
    let mut last = String::new();
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(250 << attempt.min(4)));
        }
        match fetch_once(source, opts) {
            Ok(b) => return Ok(b),
            Err(Failure::Final(d)) => return Err(err(d)),
            Err(Failure::Retry(d)) => last = d,
        }
    }
    Err(err(format!("{last} (after {} attempts)", opts.retries + 1)))
}

enum Failure {
    Final(String),
    Retry(String),
}

fn fetch_once(source: &str, opts: &FetchOptions) -> Result<Vec<u8>, Failure> {
    let mut current = url::Url::parse(source).map_err(|e| Failure::Final(format!("invalid URL: {e}")))?;
    for _ in 0..=MAX_REDIRECTS {
        if !matches!(current.scheme(), "http" | "https") {
            return Err(Failure::Final(format!("unsupported URL scheme '{}'", current.scheme())));
        }
        let host = current.host_str().ok_or_else(|| Failure::Final("URL has no host".into()))?.to_string();
        let port = current.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = (host.trim_matches(|c| c == '[' || c == ']'), port)
            .to_socket_addrs()
            .map_err(|e| Failure::Retry(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Failure::Retry(format!("{host} has no address")));
        }
        if !opts.allow_private {
            if let Some((a, why)) = addrs.iter().find_map(|a| non_public(a.ip()).map(|w| (a, w))) {
                return Err(Failure::Final(format!("refused: {host} resolves to {} ({why}); private targets are not allowed", a.ip())));
            }
        }
        let pinned = addrs.clone();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(opts.timeout)
            .timeout(opts.timeout)
            .redirects(0)
            .resolver(move |_: &str| Ok(pinned.clone()))
            .build();
        let resp = match agent.get(current.as_str()).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) && code != 429 => {
                return Err(Failure::Final(format!("HTTP {code}")));
            }
            Err(ureq::Error::Status(code, _)) => return Err(Failure::Retry(format!("HTTP {code}"))),
            Err(e) => return Err(Failure::Retry(e.to_string())),
        };
        if (300..400).contains(&resp.status()) {
            let loc = resp.header("location").ok_or_else(|| Failure::Final(format!("HTTP {} without Location", resp.status())))?;
            current = current.join(loc).map_err(|e| Failure::Final(format!("bad redirect: {e}")))?;
            continue;
        }
        if let Some(len) = resp.header("content-length").and_then(|l| l.parse::<u64>().ok()) {
            if len > opts.max_bytes {
                return Err(Failure::Final(format!("response is {len} bytes, over the {} byte limit", opts.max_bytes)));
            }
        }
        let mut buf = Vec::new();
        return match resp.into_reader().take(opts.max_bytes + 1).read_to_end(&mut buf) {
            Ok(_) if buf.len() as u64 > opts.max_bytes => {
                Err(Failure::Final(format!("response is over the {} byte limit", opts.max_bytes)))
            }
            Ok(_) => Ok(buf),
            Err(e) => Err(Failure::Retry(format!("reading the response failed: {e}"))),
        };
    }
    Err(Failure::Final(format!("more than {MAX_REDIRECTS} redirects")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for (ip, want) in [
            ("127.0.0.1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("192.168.0.1", Some("private")),
            ("172.16.5.5", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("0.0.0.0", Some("unspecified")),
            ("::1", Some("loopback")),
            ("fd00::1", Some("unique-local")),
            ("fe80::1", Some("link-local")),
            ("::ffff:10.0.0.1", Some("private")),
            ("8.8.8.8", None),
            ("2606:4700::1111", None),
        ] {
            assert_eq!(non_public(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn refuses_loopback_urls_unless_allowed() {
        let opts = FetchOptions { retries: 0, ..Default::default() };
        let e = fetch("http://127.0.0.1:9/x.jpg", &opts).unwrap_err().to_string();
        assert!(e.contains("refused") && e.contains("loopback"), "{e}");
        let no_files = FetchOptions { allow_files: false, ..opts };
        assert!(fetch("/etc/passwd", &no_files).unwrap_err().to_string().contains("only http"));
    }
}
