//! Prometheus metrics of the agent (prometheus-client, text format).

use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `succeeded` or `failed`.
    pub result: String,
}

/// A `verb` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    /// The Kubernetes API verb.
    pub verb: String,
}

/// A `rule` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// The rule that refused (`tag`, `signature`, `scan`, `registry`, `policy`).
    pub rule: String,
}

/// Labels of the Applications gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    /// Sync status.
    pub sync: String,
    /// Health status.
    pub health: String,
}

/// Every metric the agent exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Time to reconcile one Application.
    pub reconcile_duration: Histogram,
    /// Syncs by result.
    pub syncs: Family<ResultLabel, Counter>,
    /// Drift seen in the cluster.
    pub drift_events: Counter,
    /// Applications by sync and health status.
    pub applications: Family<AppLabels, Gauge>,
    /// Time to check or fetch a Git revision.
    pub git_fetch_duration: Histogram,
    /// Requests to Kubernetes API servers by verb.
    pub kube_requests: Family<VerbLabel, Counter>,
    /// Images the deploy gate refused, by rule.
    pub policy_denials: Family<RuleLabel, Counter>,
    /// Plaintext-secret findings that refused a commit, by rule.
    pub secret_refusals: Family<RuleLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("plumb");
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let syncs = Family::<ResultLabel, Counter>::default();
        let drift_events = Counter::default();
        let applications = Family::<AppLabels, Gauge>::default();
        let git_fetch_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let kube_requests = Family::<VerbLabel, Counter>::default();
        let policy_denials = Family::<RuleLabel, Counter>::default();
        let secret_refusals = Family::<RuleLabel, Counter>::default();
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one Application",
            reconcile_duration.clone(),
        );
        registry.register("syncs", "Syncs by result", syncs.clone());
        registry.register(
            "drift_events",
            "Changes to managed objects seen in the cluster",
            drift_events.clone(),
        );
        registry.register(
            "applications",
            "Applications by sync and health status",
            applications.clone(),
        );
        registry.register(
            "git_fetch_duration_seconds",
            "Time to check or fetch a Git revision",
            git_fetch_duration.clone(),
        );
        registry.register(
            "kube_api_requests",
            "Requests to Kubernetes API servers by verb",
            kube_requests.clone(),
        );
        registry.register(
            "policy_denials",
            "Denials of the deploy gate, by rule",
            policy_denials.clone(),
        );
        registry.register(
            "secret_refusals",
            "Plaintext-secret findings that refused a commit, by rule",
            secret_refusals.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconcile_duration,
            syncs,
            drift_events,
            applications,
            git_fetch_duration,
            kube_requests,
            policy_denials,
            secret_refusals,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A tower layer that counts a kube client's requests into this registry.
    pub fn kube_layer(&self) -> CountRequests {
        CountRequests {
            counter: self.kube_requests.clone(),
        }
    }
}

/// Counts requests by verb.
#[derive(Clone)]
pub struct CountRequests {
    counter: Family<VerbLabel, Counter>,
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counter: self.counter.clone(),
        }
    }
}

/// A service wrapped by [`CountRequests`].
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    counter: Family<VerbLabel, Counter>,
}

/// The Kubernetes verb of an HTTP request.
pub fn verb_of<B>(req: &http::Request<B>) -> &'static str {
    let query = req.uri().query().unwrap_or("");
    let dry = query.contains("dryRun=");
    match *req.method() {
        http::Method::GET if query.contains("watch=true") || query.contains("watch=1") => "watch",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::DELETE => "delete",
        http::Method::PATCH => {
            let apply = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/apply-patch"));
            match (apply, dry) {
                (true, true) => "apply-dry-run",
                (true, false) => "apply",
                (false, _) => "patch",
            }
        }
        _ => "other",
    }
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.counter
            .get_or_create(&VerbLabel {
                verb: verb_of(&req).to_string(),
            })
            .inc();
        self.inner.call(req)
    }
}
