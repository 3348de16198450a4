//! Prometheus metrics of the registry, served at `GET /metrics` in the text
//! format to anyone who may pull.
//!
//! Labels stay bounded: the endpoint kind (`blob`, `manifest`, `upload`, ...),
//! the method and the status code, never a repository name or a digest, so a
//! registry with many repositories does not grow many series.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The endpoint kind (`blob`, `manifest`, `upload`, `tags`, ...).
    pub endpoint: &'static str,
    /// The HTTP method.
    pub method: String,
    /// The status code.
    pub code: u16,
}

/// Labels of a request's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimingLabels {
    /// The endpoint kind.
    pub endpoint: &'static str,
    /// The HTTP method.
    pub method: String,
}

/// A `policy` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    /// The tag policy that refused a push.
    pub policy: String,
}

/// A `kind` label for what GC removed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `tag`, `manifest`, `blob` or `upload`.
    pub kind: &'static str,
}

/// Labels of a pull-through cache's answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    /// `manifest` or `blob`.
    pub kind: &'static str,
    /// `hit` (served from the cache) or `miss` (fetched upstream).
    pub result: &'static str,
}

/// Every metric the registry exports.
#[derive(Clone)]
pub struct RegistryMetrics {
    registry: Arc<Registry>,
    /// Requests served, by endpoint, method and status code.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from a request's arrival to its response head.
    pub duration: Family<TimingLabels, Histogram>,
    /// Body bytes of blob and manifest uploads, as declared by Content-Length.
    pub bytes_received: Counter,
    /// Body bytes of blob and manifest downloads.
    pub bytes_sent: Counter,
    /// Pushes a tag policy refused.
    pub policy_refusals: Family<PolicyLabel, Counter>,
    /// GC runs that deleted (dry runs are not counted).
    pub gc_runs: Counter,
    /// What GC removed.
    pub gc_removed: Family<KindLabel, Counter>,
    /// Bytes freed by GC.
    pub gc_bytes_freed: Counter,
    /// Scanning of pushed images.
    pub scan: crate::scan::ScanMetrics,
    /// Pull-through cache answers, by kind and hit or miss.
    pub proxy_requests: Family<ProxyLabels, Counter>,
    /// Pull-through cache upstream failures (unreachable, 5xx, refused,
    /// digest mismatch), by kind.
    pub proxy_upstream_errors: Family<KindLabel, Counter>,
    /// Bytes of blobs fetched from upstreams.
    pub proxy_fetched_bytes: Counter,
}

impl std::fmt::Debug for RegistryMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryMetrics")
    }
}

impl Default for RegistryMetrics {
    fn default() -> RegistryMetrics {
        RegistryMetrics::new()
    }
}

fn timing_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl RegistryMetrics {
    /// A registry with every metric registered under `plumb_registry_`.
    pub fn new() -> RegistryMetrics {
        let mut registry = Registry::with_prefix("plumb_registry");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<TimingLabels, Histogram>::new_with_constructor(
            timing_histogram as fn() -> Histogram,
        );
        let bytes_received = Counter::default();
        let bytes_sent = Counter::default();
        let policy_refusals = Family::<PolicyLabel, Counter>::default();
        let gc_runs = Counter::default();
        let gc_removed = Family::<KindLabel, Counter>::default();
        let gc_bytes_freed = Counter::default();
        registry.register(
            "http_requests",
            "Requests served, by endpoint, method and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response head",
            duration.clone(),
        );
        registry.register(
            "received_bytes",
            "Body bytes of blob and manifest uploads",
            bytes_received.clone(),
        );
        registry.register(
            "sent_bytes",
            "Body bytes of blob and manifest downloads",
            bytes_sent.clone(),
        );
        registry.register(
            "policy_refusals",
            "Pushes refused by a tag policy",
            policy_refusals.clone(),
        );
        registry.register("gc_runs", "GC runs that deleted", gc_runs.clone());
        registry.register(
            "gc_removed",
            "Tags, manifests, blobs and uploads removed by GC",
            gc_removed.clone(),
        );
        registry.register(
            "gc_freed_bytes",
            "Bytes freed by GC",
            gc_bytes_freed.clone(),
        );
        let scan = crate::scan::ScanMetrics::register(&mut registry);
        let proxy_requests = Family::<ProxyLabels, Counter>::default();
        let proxy_upstream_errors = Family::<KindLabel, Counter>::default();
        let proxy_fetched_bytes = Counter::default();
        registry.register(
            "proxy_requests",
            "Pull-through cache answers, by kind and hit or miss",
            proxy_requests.clone(),
        );
        registry.register(
            "proxy_upstream_errors",
            "Pull-through cache upstream failures, by kind",
            proxy_upstream_errors.clone(),
        );
        registry.register(
            "proxy_fetched_bytes",
            "Bytes of blobs fetched from pull-through upstreams",
            proxy_fetched_bytes.clone(),
        );
        RegistryMetrics {
            registry: Arc::new(registry),
            proxy_requests,
            proxy_upstream_errors,
            proxy_fetched_bytes,
            scan,
            requests,
            duration,
            bytes_received,
            bytes_sent,
            policy_refusals,
            gc_runs,
            gc_removed,
            gc_bytes_freed,
        }
    }

    /// Counts one served request.
    pub fn observe(&self, endpoint: &'static str, method: &str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                method: method.to_string(),
                code,
            })
            .inc();
        self.duration
            .get_or_create(&TimingLabels {
                endpoint,
                method: method.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one GC run that deleted: how many of each kind (`tag`,
    /// `manifest`, `blob`, `upload`) it removed, and the bytes it freed.
    pub fn gc_run(&self, removed: [(&'static str, usize); 4], bytes_freed: u64) {
        self.gc_runs.inc();
        for (kind, n) in removed {
            self.gc_removed
                .get_or_create(&KindLabel { kind })
                .inc_by(n as u64);
        }
        self.gc_bytes_freed.inc_by(bytes_freed);
    }

    /// Counts a pull-through cache answer (`hit` or `miss`) for `kind`.
    pub fn proxy(&self, kind: &'static str, result: &'static str) {
        self.proxy_requests
            .get_or_create(&ProxyLabels { kind, result })
            .inc();
    }

    /// Counts a pull-through cache upstream failure for `kind`.
    pub fn proxy_error(&self, kind: &'static str) {
        self.proxy_upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
