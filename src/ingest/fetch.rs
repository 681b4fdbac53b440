//! Reading an image's bytes from a file or an http(s) URL, with a size
//! limit, timeouts and a bounded number of retries.

use std::io::Read;
use std::time::Duration;

use super::source::is_url;
use super::IngestError;

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub max_bytes: u64,
    pub timeout: Duration,
    pub retries: u32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions { max_bytes: 20 * 1024 * 1024, timeout: Duration::from_secs(20), retries: 2 }
    }
}

pub fn fetch(source: &str, opts: &FetchOptions) -> Result<Vec<u8>, IngestError> {
    let err = |detail: String| IngestError::Fetch { source_name: source.to_string(), detail };
    if !is_url(source) {
        let meta = std::fs::metadata(source).map_err(|e| IngestError::Embed(crate::embed::EmbedError::Io { source_name: source.into(), error: e }))?;
        if meta.len() > opts.max_bytes {
            return Err(err(format!("file is {} bytes, over the {} byte limit", meta.len(), opts.max_bytes)));
        }
        return std::fs::read(source).map_err(|e| IngestError::Embed(crate::embed::EmbedError::Io { source_name: source.into(), error: e }));
    }
    let agent = ureq::AgentBuilder::new().timeout_connect(opts.timeout).timeout(opts.timeout).redirects(3).build();
    let mut last = String::new();
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(250 << attempt.min(4)));
        }
        match agent.get(source).call() {
            Ok(resp) => {
                if let Some(len) = resp.header("content-length").and_then(|l| l.parse::<u64>().ok()) {
                    if len > opts.max_bytes {
                        return Err(err(format!("response is {len} bytes, over the {} byte limit", opts.max_bytes)));
                    }
                }
                let mut buf = Vec::new();
                match resp.into_reader().take(opts.max_bytes + 1).read_to_end(&mut buf) {
                    Ok(_) if buf.len() as u64 > opts.max_bytes => {
                        return Err(err(format!("response is over the {} byte limit", opts.max_bytes)));
                    }
                    Ok(_) => return Ok(buf),
                    Err(e) => last = format!("reading the response failed: {e}"),
                }
            }
            // Client errors will not improve with a retry.
            Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) && code != 429 => {
                return Err(err(format!("HTTP {code}")));
            }
            Err(ureq::Error::Status(code, _)) => last = format!("HTTP {code}"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(err(format!("{last} (after {} attempts)", opts.retries + 1)))
}
