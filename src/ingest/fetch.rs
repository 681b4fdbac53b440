//! Reading an image's bytes from a file or an http(s) URL, with a size
//! limit, at most 3 redirects and a bounded number of retries, all within
//! one deadline (`timeout`) for the whole fetch: a slow server cannot
//! stretch it hop by hop or retry by retry.
//!
//! URLs are checked against server-side request forgery: unless
//! `allow_private` is set, every hop's host must resolve only to public
//! addresses (no loopback, private, link-local, CGNAT, unique-local,
//! multicast or unspecified), and the connection goes to the address that
//! was checked (no second DNS lookup to rebind).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

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

/// Why an address is not a public (globally reachable) one, if it is not.
/// IPv4 uses `ip_network`'s classification of the IANA special-purpose
/// registry (private, loopback, link-local, shared/CGNAT, documentation,
/// benchmarking 198.18/15, IETF protocol assignments 192.0.0/24, reserved,
/// broadcast, "this network"), plus multicast; IPv6 refuses every
/// non-global unicast range and every multicast address, and judges an IPv4
/// address embedded in IPv6 (compatible `::a.b.c.d`, mapped `::ffff:`,
/// NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo
/// `2001::/32`) by the IPv4 rules (and refuses it even when that IPv4 is public).
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                // Named by the IPv4 rules; a public IPv4 behind a translation
                // prefix is refused too (a translated route we do not follow).
                return Some(non_public_v4(v4).unwrap_or("IPv4-embedding (NAT64 / 6to4 / Teredo / compatible)"));
            }
            let net = ip_network::Ipv6Network::from(v6);
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if net.is_unique_local() {
                Some("unique-local")
            } else if net.is_unicast_link_local() {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if !net.is_unicast_global() {
                Some("special-purpose")
            } else {
                None
            }
        }
    }
}

fn non_public_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let net = ip_network::Ipv4Network::from(v4);
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if v4.is_unspecified() || v4.octets()[0] == 0 {
        Some("unspecified")
    } else if net.is_shared_address_space() {
        Some("shared (CGNAT)")
    } else if v4.is_multicast() || v4.is_broadcast() {
        Some("multicast/broadcast")
    } else if !net.is_global() {
        Some("special-purpose")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    match s {
        // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are judged as IPv6.
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some(tail(hi, lo)),
        // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48
        // (the IPv4 in the last 32 bits); 6to4 2002:AABB:CCDD::/48.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x64, 0xff9b, 1, _, _, _, hi, lo] | [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        // Teredo 2001:0000::/32: the client's address is the last 32 bits, inverted.
        [0x2001, 0, _, _, _, _, hi, lo] => Some(Ipv4Addr::from(!((u32::from(hi) << 16) | u32::from(lo)))),
        _ => None,
    }
}

/// Why a URL's host may not be connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    /// Not now (no address, DNS failed): worth trying again.
    Unresolved(String),
    /// Never: the URL has no host, or its host resolves to a non-public
    /// address and private targets are not allowed.
    Refused(String),
}

/// The addresses to connect to for `url`, each checked by [`non_public`]
/// unless `allow_private`: the caller connects to these and resolves no
/// more (a second lookup could rebind to a private address).
pub fn allowed_addrs(url: &url::Url, allow_private: bool) -> Result<Vec<SocketAddr>, AddrError> {
    let host = url.host_str().ok_or_else(|| AddrError::Refused("URL has no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = (host.trim_matches(|c| c == '[' || c == ']'), port)
        .to_socket_addrs()
        .map_err(|e| AddrError::Unresolved(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(AddrError::Unresolved(format!("{host} has no address")));
    }
    if !allow_private {
        if let Some((a, why)) = addrs.iter().find_map(|a| non_public(a.ip()).map(|w| (a, w))) {
            return Err(AddrError::Refused(format!("refused: {host} resolves to {} ({why}); private targets are not allowed", a.ip())));
        }
    }
    Ok(addrs)
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
    let deadline = Instant::now() + opts.timeout;
    let mut last = String::new();
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            let pause = Duration::from_millis(250 << attempt.min(4));
            if Instant::now() + pause >= deadline {
                break;
            }
            std::thread::sleep(pause);
        }
        match fetch_once(source, opts, deadline) {
            Ok(b) => return Ok(b),
            Err(Failure::Final(d)) => return Err(err(d)),
            Err(Failure::Retry(d)) => last = d,
        }
    }
    if Instant::now() >= deadline {
        return Err(err(format!("no complete answer within {:?} ({last})", opts.timeout)));
    }
    Err(err(format!("{last} (after {} attempts)", opts.retries + 1)))
}

enum Failure {
    Final(String),
    Retry(String),
}

fn fetch_once(source: &str, opts: &FetchOptions, deadline: Instant) -> Result<Vec<u8>, Failure> {
    let mut current = url::Url::parse(source).map_err(|e| Failure::Final(format!("invalid URL: {e}")))?;
    for _ in 0..=MAX_REDIRECTS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Retry(format!("no complete answer within {:?}", opts.timeout)));
        }
        if !matches!(current.scheme(), "http" | "https") {
            return Err(Failure::Final(format!("unsupported URL scheme '{}'", current.scheme())));
        }
        let addrs = match allowed_addrs(&current, opts.allow_private) {
            Ok(addrs) => addrs,
            Err(AddrError::Refused(d)) => return Err(Failure::Final(d)),
            Err(AddrError::Unresolved(d)) => return Err(Failure::Retry(d)),
        };
        let pinned = addrs.clone();
        let agent =
            ureq::AgentBuilder::new().timeout_connect(left).timeout(left).redirects(0).resolver(move |_: &str| Ok(pinned.clone())).build();
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
            ("::127.0.0.1", Some("loopback")),
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b:1::10.0.0.1", Some("private")),
            ("2002:7f00:1::", Some("loopback")),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Some("loopback")),
            ("198.18.0.1", Some("special-purpose")),
            ("198.19.255.255", Some("special-purpose")),
            ("192.0.0.8", Some("special-purpose")),
            ("192.0.2.1", Some("special-purpose")),
            ("203.0.113.9", Some("special-purpose")),
            ("224.0.0.1", Some("multicast/broadcast")),
            ("255.255.255.255", Some("multicast/broadcast")),
            ("240.0.0.1", Some("special-purpose")),
            ("2001:db8::1", Some("special-purpose")),
            ("ff0e::1", Some("multicast")),
            ("64:ff9b::8.8.8.8", Some("IPv4-embedding (NAT64 / 6to4 / Teredo / compatible)")),
            ("8.8.8.8", None),
            ("2606:4700::1111", None),
        ] {
            assert_eq!(non_public(ip.parse().unwrap()), want, "{ip}");
        }
    }

    /// A server that answers every request with a redirect after `pause`, then with an image.
    fn slow_redirects(pause: Duration, hops: usize) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for (i, conn) in l.incoming().enumerate() {
                let Ok(mut c) = conn else { continue };
                let mut buf = [0u8; 2048];
                let _ = std::io::Read::read(&mut c, &mut buf);
                std::thread::sleep(pause);
                let answer = if i < hops {
                    format!("HTTP/1.1 302 Found\r\nLocation: /hop{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", i + 1)
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx".to_string()
                };
                let _ = std::io::Write::write_all(&mut c, answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn redirects_do_not_each_get_a_fresh_timeout() {
        // Three hops of 0.6 s each, under a 1 s deadline for the whole fetch: each hop alone fits.
        let addr = slow_redirects(Duration::from_millis(600), 3);
        let opts = FetchOptions { retries: 2, timeout: Duration::from_secs(1), allow_private: true, ..Default::default() };
        let e = fetch(&format!("http://{addr}/start"), &opts).unwrap_err().to_string();
        assert!(e.contains("no complete answer within 1s"), "{e}");
        // The same server within a deadline that holds all hops answers.
        let addr = slow_redirects(Duration::from_millis(10), 3);
        let opts = FetchOptions { timeout: Duration::from_secs(60), ..opts };
        assert_eq!(fetch(&format!("http://{addr}/start"), &opts).unwrap(), b"x");
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
