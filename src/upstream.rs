//! The upstream backend: a group of registries ([`Peer`]s) behind a balancer, the
//! forwarding of requests to them over a keep-alive pool of HTTP/1.1 connections
//! (plain or TLS), and active health checks.

pub mod balance;
pub mod forward;
mod health;

use crate::body::Body;
use crate::config;
use balance::{Balancer, PeerConfig};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// One upstream registry: where it is, its `[[upstream.server]]` settings and its
/// metric series. Its balancing counters are the [`Balancer`]'s, under the group lock.
#[derive(Debug)]
pub struct Peer {
    /// `http(s)://host:port`, no path.
    pub base: Uri,
    /// `host:port`, for logs.
    pub label: String,
    /// Weight, failure window, down/backup, max_conns.
    pub config: PeerConfig,
    /// This peer's metric series.
    pub(crate) selections: Counter,
    pub(crate) failures: Counter,
    pub(crate) healthy: Gauge,
    /// How often the balancer picked it.
    pub(crate) picks: AtomicU64,
}

impl Peer {
    /// A peer at `base` with nginx's defaults for a `server` line (weight 1,
    /// max_fails 1, fail_timeout 10s).
    pub fn new(base: Uri) -> Peer {
        let config = PeerConfig {
            key: base.to_string(),
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            down: false,
            backup: false,
            max_conns: 0,
        };
        Peer::with_config(base, config)
    }

    /// A peer at `base` with `config`, its metric series looked up once (not per
    /// request).
    pub fn with_config(base: Uri, config: PeerConfig) -> Peer {
        let label = base.authority().map(|a| a.to_string()).unwrap_or_default();
        let m = crate::metrics::get();
        let labels = crate::metrics::UpstreamLabels {
            upstream: label.clone(),
        };
        let healthy = m.upstream_healthy.get_or_create(&labels).clone();
        healthy.set(1);
        Peer {
            selections: m.upstream_selections.get_or_create(&labels).clone(),
            failures: m.upstream_failures.get_or_create(&labels).clone(),
            healthy,
            picks: AtomicU64::new(0),
            base,
            label,
            config,
        }
    }
}

impl From<PeerConfig> for Peer {
    /// A peer known only by its settings: the key is its URL.
    fn from(config: PeerConfig) -> Peer {
        let base = config.key.parse().unwrap_or_default();
        Peer::with_config(base, config)
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A group of upstream registries and the connections to them.
pub struct Pool {
    balancer: Arc<Balancer>,
    client: Client<Connector, Body>,
    read_timeout: Duration,
    health_check: Option<config::HealthCheck>,
}

/// The CA bundle for https upstreams could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: upstream.ca: {detail}")]
pub struct CaError {
    pub path: String,
    pub detail: String,
}

fn connector(ca: Option<&std::path::Path>) -> Result<Connector, CaError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca {
        let err = |detail: String| CaError {
            path: path.display().to_string(),
            detail,
        };
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?;
        for c in certs {
            roots
                .add(c.map_err(|e| err(e.to_string()))?)
                .map_err(|e| err(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(err("no PEM certificate in the file".into()));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError {
            path: String::new(),
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    // nginx's proxy_connect_timeout default.
    http.set_connect_timeout(Some(Duration::from_secs(60)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Most bytes of one upstream response read ahead of the client (hyper's buffer
/// bound, which also bounds the response head: registries send a few hundred bytes).
const UPSTREAM_READ_BUFFER: usize = 32 << 10;

impl Pool {
    pub fn new(cfg: &config::Upstream, read_timeout: Duration) -> Result<Pool, CaError> {
        let peers: Vec<Peer> = cfg
            .servers
            .iter()
            .map(|s| {
                let config = PeerConfig {
                    key: s.url.to_string(),
                    weight: s.weight,
                    max_fails: s.max_fails,
                    fail_timeout: s.fail_timeout,
                    down: s.down,
                    backup: s.backup,
                    max_conns: s.max_conns,
                };
                Peer::with_config(s.url.clone(), config)
            })
            .collect();
        let balancer = Balancer::new(cfg.balance, peers);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            // hyper reads a response body into a buffer that grows up to ~400 KiB, and
            // every chunk handed on keeps its whole buffer alive while the client's
            // connection queues it: ~1 MiB per slow download. nginx reads through 64 KiB
            // (proxy_buffers 8 × 8 KiB) per request. Smaller costs CPU per byte (a read,
            // a hand-off and a TLS write per chunk): 32 KiB, bench/results/memory.md.
            .http1_max_buf_size(UPSTREAM_READ_BUFFER)
            // Upstreams are HTTP/1.1 registries; h2 clients are multiplexed onto this
            // pool, as nginx does with proxy_http_version 1.1 + keepalive.
            .build(connector(cfg.ca.as_deref())?);
        Ok(Pool {
            balancer: Arc::new(balancer),
            client,
            read_timeout,
            health_check: cfg.health_check.clone(),
        })
    }

    pub fn peers(&self) -> &[Peer] {
        self.balancer.peers()
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }
}
