//! The upstream backend: a group of registries behind a balancer, and the forwarding
//! of requests to them over a keep-alive pool of HTTP/1.1 connections.

pub mod balance;
pub mod forward;

use crate::body::Body;
use crate::config;
use balance::{Balancer, PeerConfig};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// One upstream registry.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `http://host:port`, no path.
    pub base: Uri,
    /// `host:port`, for logs.
    pub label: String,
}

/// A group of upstream registries and the connections to them.
pub struct Pool {
    peers: Vec<Peer>,
    balancer: Balancer,
    client: Client<HttpConnector, Body>,
    read_timeout: Duration,
}

impl Pool {
    pub fn new(cfg: &config::Upstream, read_timeout: Duration) -> Pool {
        let peers = cfg
            .servers
            .iter()
            .map(|s| Peer {
                base: s.url.clone(),
                label: s.url.authority().map(|a| a.to_string()).unwrap_or_default(),
            })
            .collect();
        let balancer = Balancer::new(
            cfg.servers
                .iter()
                .map(|s| PeerConfig {
                    weight: s.weight,
                    max_fails: s.max_fails,
                    fail_timeout: s.fail_timeout,
                    down: s.down,
                    backup: s.backup,
                    max_conns: s.max_conns,
                })
                .collect(),
        );
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // nginx's proxy_connect_timeout default.
        connector.set_connect_timeout(Some(Duration::from_secs(60)));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            // Upstreams are plain HTTP/1.1 registries; h2 clients are multiplexed onto
            // this pool, as nginx does with proxy_http_version 1.1 + keepalive.
            .http1_preserve_header_case(false)
            .build(connector);
        Pool {
            peers,
            balancer,
            client,
            read_timeout,
        }
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }
}
