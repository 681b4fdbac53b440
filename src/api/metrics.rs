//! Prometheus text metrics: request counts and latency histograms per route,
//! embed and search time, index size.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
    embed: Histogram,
    search: Histogram,
}

#[derive(Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.requests.entry((method.into(), route.into(), status)).or_default() += 1;
        m.latency.entry((method.into(), route.into())).or_default().observe(secs);
    }

    pub fn embed(&self, secs: f64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).embed.observe(secs);
    }

    pub fn search(&self, secs: f64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).search.observe(secs);
    }

    pub fn render(&self, images: i64, graph_points: usize, products: i64, tombstones: i64) -> String {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str(
            "# HELP knockoff_http_requests_total HTTP requests by route and status.\n# TYPE knockoff_http_requests_total counter\n",
        );
        for ((method, route, status), n) in &m.requests {
            let _ = writeln!(out, "knockoff_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP knockoff_http_request_duration_seconds HTTP request latency by route.\n# TYPE knockoff_http_request_duration_seconds histogram\n");
        for ((method, route), h) in &m.latency {
            h.render(&mut out, "knockoff_http_request_duration_seconds", &format!("method=\"{method}\",route=\"{route}\""));
        }
        out.push_str("# HELP knockoff_embed_duration_seconds Time to decode and embed one photo.\n# TYPE knockoff_embed_duration_seconds histogram\n");
        m.embed.render(&mut out, "knockoff_embed_duration_seconds", "");
        out.push_str("# HELP knockoff_search_duration_seconds Time to search the index for one photo.\n# TYPE knockoff_search_duration_seconds histogram\n");
        m.search.render(&mut out, "knockoff_search_duration_seconds", "");
        let _ = writeln!(
            out,
            "# HELP knockoff_index_images Live catalog images.\n# TYPE knockoff_index_images gauge\nknockoff_index_images {images}"
        );
        let _ = writeln!(out, "# HELP knockoff_index_graph_points Points in the HNSW graph (tombstones included).\n# TYPE knockoff_index_graph_points gauge\nknockoff_index_graph_points {graph_points}");
        let _ = writeln!(out, "# HELP knockoff_index_products Live catalog products.\n# TYPE knockoff_index_products gauge\nknockoff_index_products {products}");
        let _ = writeln!(out, "# HELP knockoff_index_tombstones Deleted images awaiting compaction.\n# TYPE knockoff_index_tombstones gauge\nknockoff_index_tombstones {tombstones}");
        out
    }
}
