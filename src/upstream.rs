//! The upstream backend: a group of registries behind a balancer, the forwarding of
//! requests to them over a keep-alive pool of HTTP/1.1 connections (plain or TLS), and
//! active health checks.

pub mod balance;
pub mod forward;

use crate::body::{self, Body};
use crate::config;
use balance::{Balancer, PeerConfig};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// One upstream registry.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `http(s)://host:port`, no path.
    pub base: Uri,
    /// `host:port`, for logs.
    pub label: String,
    /// This peer's metric series.
    pub(crate) selections: Counter,
    pub(crate) failures: Counter,
    pub(crate) healthy: Gauge,
}

impl Peer {
    /// A peer at `base`, with its metric series looked up once (not per request).
    pub fn new(base: Uri) -> Peer {
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
            base,
            label,
        }
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A group of upstream registries and the connections to them.
pub struct Pool {
    peers: Vec<Peer>,
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

impl Pool {
    pub fn new(cfg: &config::Upstream, read_timeout: Duration) -> Result<Pool, CaError> {
        let peers: Vec<Peer> = cfg
            .servers
            .iter()
            .map(|s| Peer::new(s.url.clone()))
            .collect();
        let balancer = Balancer::new(
            cfg.balance,
            cfg.servers
                .iter()
                .map(|s| PeerConfig {
                    key: s.url.to_string(),
                    weight: s.weight,
                    max_fails: s.max_fails,
                    fail_timeout: s.fail_timeout,
                    down: s.down,
                    backup: s.backup,
                    max_conns: s.max_conns,
                })
                .collect(),
        );
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            // Upstreams are HTTP/1.1 registries; h2 clients are multiplexed onto this
            // pool, as nginx does with proxy_http_version 1.1 + keepalive.
            .build(connector(cfg.ca.as_deref())?);
        Ok(Pool {
            peers,
            balancer: Arc::new(balancer),
            client,
            read_timeout,
            health_check: cfg.health_check.clone(),
        })
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Start the active health checks, if configured. The task ends by itself when
    /// the pool is dropped (a reload builds a new one).
    pub fn start_health_checks(self: &Arc<Pool>) {
        let Some(hc) = self.health_check.clone() else {
            return;
        };
        let weak: Weak<Pool> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(hc.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                let checks = (0..pool.peers.len()).map(|i| pool.check_one(i, &hc));
                futures_util::future::join_all(checks).await;
            }
        });
    }

    async fn check_one(&self, i: usize, hc: &config::HealthCheck) {
        let peer = &self.peers[i];
        let mut uri = peer.base.clone().into_parts();
        uri.path_and_query = hc.path.parse().ok();
        let Ok(uri) = Uri::from_parts(uri) else {
            return;
        };
        let req = http::Request::get(uri)
            .header(http::header::USER_AGENT, "portcullis-health-check")
            .body(body::empty());
        let Ok(req) = req else { return };
        let limit = hc.interval.min(Duration::from_secs(10));
        let verdict = match tokio::time::timeout(limit, self.client.request(req)).await {
            Ok(Ok(r)) => {
                let s = r.status().as_u16();
                // A registry with its own auth answers 401 to /v2/: alive all the same.
                if s == 200 || s == 401 {
                    Ok(())
                } else {
                    Err(format!("status {s}"))
                }
            }
            Ok(Err(e)) => Err(forward::describe(&e)),
            Err(_) => Err(format!("no answer within {limit:?}")),
        };
        let healthy = verdict.is_ok();
        let was = self.balancer.set_healthy(i, healthy);
        peer.healthy.set(i64::from(healthy));
        match (was, verdict) {
            (true, Err(why)) => {
                tracing::warn!(upstream = %peer.label, reason = %why, "health check failed; upstream taken out")
            }
            (false, Ok(())) => {
                tracing::info!(upstream = %peer.label, "health check passed; upstream back in")
            }
            _ => {}
        }
    }
}
