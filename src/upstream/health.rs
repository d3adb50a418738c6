//! Active health checks (`[upstream.health_check]`): `GET path` on every peer each
//! `interval`; 200 or 401 keeps a peer in, anything else takes it out of the balancer
//! until it passes again.

use super::{forward, Pool};
use crate::body;
use crate::config;
use http::Uri;
use std::sync::{Arc, Weak};
use std::time::Duration;

impl Pool {
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
                let checks = (0..pool.peers().len()).map(|i| pool.check_one(i, &hc));
                futures_util::future::join_all(checks).await;
            }
        });
    }

    async fn check_one(&self, i: usize, hc: &config::HealthCheck) {
        let peer = &self.peers()[i];
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
