//! Prometheus metrics through `prometheus-client` (`OpenMetrics` text):
//! request counts and latency histograms per route, embed and search time,
//! index size. Names: `knockoff_http_requests_total{method,route,status}`,
//! `knockoff_http_request_duration_seconds{method,route}`,
//! `knockoff_embed_duration_seconds`, `knockoff_search_duration_seconds`,
//! `knockoff_index_{images,graph_points,products,tombstones}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::catalog::CatalogStats;

const BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The media type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    embed: Histogram,
    search: Histogram,
    images: Gauge,
    graph_points: Gauge,
    products: Gauge,
    tombstones: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("knockoff");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        let (embed, search) = (histogram(), histogram());
        let (images, graph_points, products, tombstones) = (Gauge::default(), Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        registry.register("embed_duration_seconds", "Time to decode and embed one photo", embed.clone());
        registry.register("search_duration_seconds", "Time to search the index for one photo", search.clone());
        registry.register("index_images", "Live catalog images", images.clone());
        registry.register("index_graph_points", "Points in the HNSW graph (tombstones included)", graph_points.clone());
        registry.register("index_products", "Live catalog products", products.clone());
        registry.register("index_tombstones", "Deleted images awaiting compaction", tombstones.clone());
        Metrics { registry, requests, latency, embed, search, images, graph_points, products, tombstones }
    }
}

/// The method as a label: one of HTTP's own, or `other`, so that a client
/// cannot grow the label set (and every scrape) with made-up methods.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

impl Metrics {
    /// Counts one request; `route` must be the matched route pattern (or
    /// `unmatched`), never the raw path.
    pub fn request(&self, method: &str, route: &str, status: u16, secs: f64) {
        let method = method_label(method);
        let labels = RequestLabels { method: method.into(), route: route.into(), status: status.to_string() };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&RouteLabels { method: method.into(), route: route.into() }).observe(secs);
    }

    pub fn embed(&self, secs: f64) {
        self.embed.observe(secs);
    }

    pub fn search(&self, secs: f64) {
        self.search.observe(secs);
    }

    /// The exposition, with the index gauges set from `stats`.
    #[must_use]
    pub fn render(&self, stats: &CatalogStats) -> String {
        self.images.set(stats.counts.images);
        self.graph_points.set(i64::try_from(stats.graph_points).unwrap_or(i64::MAX));
        self.products.set(stats.counts.products);
        self.tombstones.set(stats.counts.tombstones);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("cannot encode metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_do_not_grow_the_exposition() {
        let m = Metrics::default();
        m.request("GET", "/v1/stats", 200, 0.01);
        let stats = CatalogStats::default();
        let small = m.render(&stats).len();
        for i in 0..500 {
            m.request(&format!("X{i}{}", "Y".repeat(8000)), "unmatched", 405, 0.001);
        }
        let after = m.render(&stats);
        assert!(after.contains("method=\"other\""), "{after}");
        assert!(after.len() < small + 4_000, "{} bytes after 500 made-up methods (was {small})", after.len());
    }
}
