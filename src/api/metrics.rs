//! Prometheus metrics through `prometheus-client` (`OpenMetrics` text):
//! request counts and latency histograms per route, embed and search time,
//! what lookups decided, the inference queue, jobs, refits, the index and
//! the process. Names: `knockoff_http_requests_total{method,route,status}`,
//! `knockoff_http_request_duration_seconds{method,route}`,
//! `knockoff_embed_duration_seconds`, `knockoff_search_duration_seconds`,
//! `knockoff_lookup_verdicts_total{verdict}`, `knockoff_lookup_copies_found_total`,
//! `knockoff_lookup_copy_checks_total{outcome}` (`full`, or `stopped_at_gate`: the photo lined up with no candidate),
//! `knockoff_queue_depth`, `knockoff_queue_shed_total` (503 + `Retry-After`),
//! `knockoff_queue_abandoned_total` (queued photos whose client had gone),
//! `knockoff_jobs_total{outcome}`, `knockoff_job_items_total{outcome}`,
//! `knockoff_refits_total{stage}`, `knockoff_webhook_deliveries_total{outcome}`, `knockoff_calibration_age_seconds`,
//! `knockoff_index_{images,graph_points,products,tombstones}`,
//! `knockoff_process_resident_memory_bytes`, `knockoff_process_open_fds`,
//! `knockoff_build_info{version,model}`. Every label takes a fixed set of
//! values (the method is one of HTTP's or `other`; the route is the pattern).

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
struct VerdictLabel {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Stage {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    model: String,
}

/// What the service counts outside the request path, read at each scrape.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    pub queue_depth: usize,
    pub shed: u64,
    /// Photos skipped because their client had gone.
    pub abandoned: u64,
    /// Jobs done and failed.
    pub jobs: [(&'static str, u64); 2],
    /// Job items indexed, skipped and failed.
    pub items: [(&'static str, u64); 3],
    /// Refits started, finished, loaded.
    pub refits: [(&'static str, u64); 3],
    /// Webhook deliveries delivered, retried, failed (given up) and targets disabled (410).
    pub webhooks: [(&'static str, u64); 4],
    /// Seconds since the calibration in force was fitted (`None`: none fitted).
    pub calibration_age: Option<f64>,
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
    verdicts: Family<VerdictLabel, Counter>,
    copies: Counter,
    copy_checks: Family<Outcome, Counter>,
    queue_depth: Gauge,
    shed: Counter,
    abandoned: Counter,
    jobs: Family<Outcome, Counter>,
    items: Family<Outcome, Counter>,
    refits: Family<Stage, Counter>,
    webhooks: Family<Outcome, Counter>,
    calibration_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    rss: Gauge,
    fds: Gauge,
    build: Family<BuildLabels, Gauge>,
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
        let (verdicts, jobs, items, refits) = (Family::default(), Family::default(), Family::default(), Family::default());
        let (copies, shed, queue_depth, rss, fds) =
            (Counter::default(), Counter::default(), Gauge::default(), Gauge::default(), Gauge::default());
        let abandoned = Counter::default();
        let calibration_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register("lookup_verdicts", "Lookups by verdict", verdicts.clone());
        registry.register("lookup_copies_found", "Lookups that found a copy of a catalog image", copies.clone());
        let copy_checks = Family::<Outcome, Counter>::default();
        registry.register(
            "lookup_copy_checks",
            "Lookups by how far the copy check went (full, or stopped_at_gate: the photo lined up with no candidate)",
            copy_checks.clone(),
        );
        registry.register("queue_depth", "Photos waiting for the inference threads", queue_depth.clone());
        registry.register("queue_shed", "Requests turned away with 503 and Retry-After: the inference queue was full", shed.clone());
        registry.register("queue_abandoned", "Queued photos skipped because their client had gone", abandoned.clone());
        registry.register("jobs", "Indexing jobs by outcome (done, failed) run by this process", jobs.clone());
        registry.register("job_items", "Job items by outcome (indexed, skipped, failed) in this process", items.clone());
        registry.register("refits", "Refits by stage (started, finished, loaded) in this process", refits.clone());
        let webhooks = Family::<Outcome, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retried, failed: given up, disabled: the receiver answered 410) in this process",
            webhooks.clone(),
        );
        registry.register(
            "calibration_age_seconds",
            "Seconds since the calibration in force was fitted (absent: none)",
            calibration_age.clone(),
        );
        registry.register("process_resident_memory_bytes", "Resident memory of the process", rss.clone());
        registry.register("process_open_fds", "Open file descriptors of the process", fds.clone());
        registry.register("build_info", "The running version and model (always 1)", build.clone());
        Metrics {
            registry,
            requests,
            latency,
            embed,
            search,
            images,
            graph_points,
            products,
            tombstones,
            verdicts,
            copies,
            copy_checks,
            queue_depth,
            shed,
            abandoned,
            jobs,
            items,
            refits,
            webhooks,
            calibration_age,
            rss,
            fds,
            build,
        }
    }
}

/// The method as a label: one of HTTP's own, or `other`, so that a client
/// cannot grow the label set (and every scrape) with made-up methods.
pub fn method_label(method: &str) -> &'static str {
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

    /// Counts one lookup's outcome: its verdict, how far its copy check went, and whether it found a copy.
    pub fn lookup(&self, answer: &crate::search::Lookup) {
        self.verdicts.get_or_create(&VerdictLabel { verdict: answer.verdict.as_str() }).inc();
        if let Some(gate) = answer.copy_gate {
            let outcome = if gate.passed() { "full" } else { "stopped_at_gate" };
            self.copy_checks.get_or_create(&Outcome { outcome }).inc();
        }
        if !answer.copies.is_empty() {
            self.copies.inc();
        }
    }

    /// The running version and model (set once at start).
    pub fn build(&self, model: &str) {
        self.build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION"), model: model.to_string() }).set(1);
    }

    /// The exposition, with the gauges set from `stats` and `rt`.
    #[must_use]
    pub fn render(&self, stats: &CatalogStats, rt: &Runtime) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        self.queue_depth.set(i64::try_from(rt.queue_depth).unwrap_or(i64::MAX));
        self.shed.inner().store(rt.shed, Relaxed);
        self.abandoned.inner().store(rt.abandoned, Relaxed);
        for (family, values) in [(&self.jobs, &rt.jobs[..]), (&self.items, &rt.items[..])] {
            for (outcome, v) in values {
                family.get_or_create(&Outcome { outcome }).inner().store(*v, Relaxed);
            }
        }
        for (outcome, v) in rt.webhooks {
            self.webhooks.get_or_create(&Outcome { outcome }).inner().store(v, Relaxed);
        }
        for (stage, v) in rt.refits {
            self.refits.get_or_create(&Stage { stage }).inner().store(v, Relaxed);
        }
        if let Some(age) = rt.calibration_age {
            self.calibration_age.set(age);
        }
        let (rss, fds) = process_usage();
        self.rss.set(rss);
        self.fds.set(fds);
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

/// The process's resident memory (bytes) and open file descriptors, from
/// `/proc` (0 where there is none).
fn process_usage() -> (i64, i64) {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<i64>().ok()))
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page = i64::from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i32).max(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| i64::try_from(d.count()).unwrap_or(i64::MAX));
    (pages.saturating_mul(page), fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_do_not_grow_the_exposition() {
        let m = Metrics::default();
        m.request("GET", "/v1/stats", 200, 0.01);
        let stats = CatalogStats::default();
        let small = m.render(&stats, &Runtime::default()).len();
        for i in 0..500 {
            m.request(&format!("X{i}{}", "Y".repeat(8000)), "unmatched", 405, 0.001);
        }
        let after = m.render(&stats, &Runtime::default());
        assert!(after.contains("method=\"other\""), "{after}");
        assert!(after.len() < small + 4_000, "{} bytes after 500 made-up methods (was {small})", after.len());
    }
}
