//! Metrics: the process-wide Prometheus counters (they outlive configuration reloads)
//! and their text exposition. Served by `admin`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

/// The method as a label: the registry's verbs by name, anything else as `OTHER`, so
/// a client inventing methods cannot grow the series without bound.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// The password hash scheme (`bcrypt`, `apr1`, `md5crypt`, `sha1`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SchemeLabels {
    pub scheme: &'static str,
}

/// Which login-throttle bucket refused an attempt: `address` or `user`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByLabels {
    pub by: &'static str,
}

/// The `[server]` key whose cap refused a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s: API calls at the bottom, layer transfers at the top.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric Portcullis exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub connections: Gauge,
    pub connections_refused: Family<LimitLabels, Counter>,
    pub tls_handshakes: Counter,
    pub tls_failures: Counter,
    pub auth_successes: Counter,
    pub auth_failures: Counter,
    pub access_denied: Counter,
    pub tokens_issued: Counter,
    pub auth_cache_hits: Counter,
    pub auth_hashes: Family<SchemeLabels, Counter>,
    pub auth_failure_delay: Gauge<f64, AtomicU64>,
    pub auth_throttled: Family<ByLabels, Counter>,
    pub upstream_selections: Family<UpstreamLabels, Counter>,
    pub upstream_failures: Family<UpstreamLabels, Counter>,
    pub upstream_healthy: Family<UpstreamLabels, Gauge>,
    pub storage_errors: Counter,
    pub reloads: Counter,
    pub reload_failures: Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            connections: Gauge::default(),
            connections_refused: Family::default(),
            tls_handshakes: Counter::default(),
            tls_failures: Counter::default(),
            auth_successes: Counter::default(),
            auth_failures: Counter::default(),
            access_denied: Counter::default(),
            tokens_issued: Counter::default(),
            auth_cache_hits: Counter::default(),
            auth_hashes: Family::default(),
            auth_failure_delay: Gauge::default(),
            auth_throttled: Family::default(),
            upstream_selections: Family::default(),
            upstream_failures: Family::default(),
            upstream_healthy: Family::default(),
            storage_errors: Counter::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by method, route class and status",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response body, by route class",
            m.latency.clone(),
        );
        registry.register(
            "received_bytes",
            "Request body bytes received from clients",
            m.bytes_in.clone(),
        );
        registry.register(
            "sent_bytes",
            "Response body bytes sent to clients",
            m.bytes_out.clone(),
        );
        registry.register(
            "active_connections",
            "Client connections open now",
            m.connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at accept, before TLS, by the limit that refused them \
             (max_connections, max_connections_per_address)",
            m.connections_refused.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes failed or timed out",
            m.tls_failures.clone(),
        );
        registry.register(
            "auth_successes",
            "Requests with valid credentials",
            m.auth_successes.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests with credentials that were refused",
            m.auth_failures.clone(),
        );
        registry.register(
            "access_denied",
            "Requests the [access] policy refused (403 for users, 401 for anonymous callers)",
            m.access_denied.clone(),
        );
        registry.register(
            "tokens_issued",
            "Tokens handed out by /token (the token flow of anonymous access)",
            m.tokens_issued.clone(),
        );
        registry.register(
            "auth_cache_hits",
            "Verified credentials answered from the cache (no password hash)",
            m.auth_cache_hits.clone(),
        );
        registry.register(
            "auth_hashes",
            "Password hashes computed, by scheme (cache hits, unknown users and checks \
             cancelled before their turn cost none)",
            m.auth_hashes.clone(),
        );
        registry.register(
            "auth_failure_delay_seconds",
            "Least time a failed password check takes (the costliest hash in the file)",
            m.auth_failure_delay.clone(),
        );
        registry.register(
            "auth_throttled",
            "Login attempts refused with 429 by the failed-login throttle (no password \
             hash), by the bucket that was empty: address or user",
            m.auth_throttled.clone(),
        );
        registry.register(
            "upstream_selections",
            "Attempts sent to each upstream",
            m.upstream_selections.clone(),
        );
        registry.register(
            "upstream_failures",
            "Failed attempts (connect error, timeout, bad response head) per upstream",
            m.upstream_failures.clone(),
        );
        registry.register(
            "upstream_healthy",
            "1 when the upstream passes its health check (or has none), else 0",
            m.upstream_healthy.clone(),
        );
        registry.register(
            "registry_storage_errors",
            "Storage errors in the bundled registry",
            m.storage_errors.clone(),
        );
        registry.register(
            "reloads",
            "Configuration reloads applied (SIGHUP)",
            m.reloads.clone(),
        );
        registry.register(
            "reload_failures",
            "Configuration reloads refused (old configuration kept)",
            m.reload_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
