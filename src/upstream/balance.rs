//! Peer selection with nginx's own algorithms. A [`Selection`] yields peers in try
//! order for one request; failover is the next item (pingora's `BackendSelection::iter`).
//!
//! Smooth weighted round-robin, eligibility and failure accounting follow nginx's
//! `ngx_http_upstream_round_robin.c` (`ngx_http_upstream_get_peer`,
//! `ngx_http_upstream_free_round_robin_peer`) line for line; times come from the
//! caller so tests can drive the clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Static settings of one peer, from `[[upstream.server]]`.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub down: bool,
    pub backup: bool,
    /// 0 = unlimited.
    pub max_conns: u32,
}

/// nginx's per-peer counters (`ngx_http_upstream_rr_peer_t`).
#[derive(Debug, Clone)]
struct PeerState {
    current_weight: i64,
    effective_weight: i64,
    fails: u32,
    conns: u32,
    accessed: Option<Instant>,
    checked: Option<Instant>,
}

/// The balancing state of one upstream group (primaries and backups).
#[derive(Debug)]
pub struct Balancer {
    config: Vec<PeerConfig>,
    primaries: Vec<usize>,
    backups: Vec<usize>,
    // One lock over the group, as nginx's `ngx_http_upstream_rr_peers_wlock`: a pick
    // reads and writes every peer's current weight.
    state: Mutex<Vec<PeerState>>,
}

impl Balancer {
    pub fn new(config: Vec<PeerConfig>) -> Balancer {
        let state = config
            .iter()
            .map(|c| PeerState {
                current_weight: 0,
                effective_weight: i64::from(c.weight),
                fails: 0,
                conns: 0,
                accessed: None,
                checked: None,
            })
            .collect();
        let primaries = (0..config.len()).filter(|&i| !config[i].backup).collect();
        let backups = (0..config.len()).filter(|&i| config[i].backup).collect();
        Balancer {
            config,
            primaries,
            backups,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PeerState>> {
        // Counters stay meaningful after a panic elsewhere; never poison the group.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.config.len()
    }

    pub fn is_empty(&self) -> bool {
        self.config.is_empty()
    }

    /// Start the try order for one request.
    pub fn select(&self) -> Selection<'_> {
        Selection {
            balancer: self,
            tried: vec![false; self.config.len()],
            in_backups: false,
        }
    }

    /// nginx `ngx_http_upstream_get_peer` over one tier (primaries or backups).
    fn pick(&self, tier: &[usize], tried: &[bool], now: Instant) -> Option<usize> {
        let mut st = self.lock();
        // nginx's `peers->single`: a one-server group is never marked failed.
        if tier.len() == 1 && self.primaries.len() + self.backups.len() == 1 {
            let i = tier[0];
            let c = &self.config[i];
            if c.down || tried[i] || (c.max_conns > 0 && st[i].conns >= c.max_conns) {
                return None;
            }
            st[i].conns += 1;
            return Some(i);
        }
        let mut best: Option<usize> = None;
        let mut total: i64 = 0;
        for &i in tier {
            let c = &self.config[i];
            if tried[i] || c.down {
                continue;
            }
            let p = &mut st[i];
            if c.max_fails > 0
                && p.fails >= c.max_fails
                && p.checked
                    .is_some_and(|t| now.saturating_duration_since(t) <= c.fail_timeout)
            {
                continue;
            }
            if c.max_conns > 0 && p.conns >= c.max_conns {
                continue;
            }
            p.current_weight += p.effective_weight;
            total += p.effective_weight;
            if p.effective_weight < i64::from(c.weight) {
                p.effective_weight += 1;
            }
            let cw = p.current_weight;
            // Strictly greater: the first peer wins ties, as in nginx.
            if best.is_none_or(|b| cw > st[b].current_weight) {
                best = Some(i);
            }
        }
        let i = best?;
        let c = &self.config[i];
        let p = &mut st[i];
        p.current_weight -= total;
        if p.checked
            .is_none_or(|t| now.saturating_duration_since(t) > c.fail_timeout)
        {
            p.checked = Some(now);
        }
        p.conns += 1;
        Some(i)
    }

    /// nginx `ngx_http_upstream_free_round_robin_peer`: the attempt on peer `i` ended.
    /// A failure counts toward `max_fails` and lowers the effective weight by
    /// `weight / max_fails`; a success after the fail window clears the count.
    pub fn finish(&self, i: usize, failed: bool, now: Instant) {
        let mut st = self.lock();
        let c = &self.config[i];
        let single = self.config.len() == 1;
        let p = &mut st[i];
        p.conns = p.conns.saturating_sub(1);
        if single {
            return;
        }
        if failed {
            p.fails += 1;
            p.accessed = Some(now);
            p.checked = Some(now);
            if let Some(step) = c.weight.checked_div(c.max_fails) {
                p.effective_weight -= i64::from(step);
                if p.fails >= c.max_fails {
                    tracing::warn!(peer = i, "upstream server temporarily disabled");
                }
            }
            if p.effective_weight < 0 {
                p.effective_weight = 0;
            }
        } else if p.accessed < p.checked {
            // "mark peer live if check passed"
            p.fails = 0;
        }
    }

    /// Current failure count of peer `i` (for logs, metrics and tests).
    pub fn fails(&self, i: usize) -> u32 {
        self.lock()[i].fails
    }
}

/// One request's walk through the group.
pub struct Selection<'a> {
    balancer: &'a Balancer,
    tried: Vec<bool>,
    in_backups: bool,
}

impl Selection<'_> {
    /// The next peer to try, or None when every eligible peer has been tried.
    pub fn next_at(&mut self, now: Instant) -> Option<usize> {
        let b = self.balancer;
        if !self.in_backups {
            if let Some(i) = b.pick(&b.primaries, &self.tried, now) {
                self.tried[i] = true;
                return Some(i);
            }
            // nginx falls over to the backup servers only when no primary is left.
            self.in_backups = true;
        }
        let i = b.pick(&b.backups, &self.tried, now)?;
        self.tried[i] = true;
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(weight: u32) -> PeerConfig {
        PeerConfig {
            weight,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            down: false,
            backup: false,
            max_conns: 0,
        }
    }

    /// One pick per request, each request finishing successfully.
    fn sequence(b: &Balancer, n: usize, now: Instant) -> String {
        (0..n)
            .map(|_| {
                let i = b.select().next_at(now).unwrap();
                b.finish(i, false, now);
                (b'a' + i as u8) as char
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_matches_nginx() {
        // The sequence quoted in nginx's commit 52327e0627f4 ("smooth weighted round-robin").
        let b = Balancer::new(vec![peer(5), peer(1), peer(1)]);
        let now = Instant::now();
        assert_eq!(sequence(&b, 7, now), "aabacaa");
        assert_eq!(sequence(&b, 7, now), "aabacaa", "the cycle repeats");
        let b = Balancer::new(vec![peer(2), peer(1)]);
        assert_eq!(sequence(&b, 6, now), "abaaba");
        let b = Balancer::new(vec![peer(1), peer(1), peer(1)]);
        assert_eq!(sequence(&b, 6, now), "abcabc");
    }

    #[test]
    fn down_peers_are_skipped() {
        let mut cfg = vec![peer(1), peer(1), peer(1)];
        cfg[1].down = true;
        let b = Balancer::new(cfg);
        assert_eq!(sequence(&b, 4, Instant::now()), "acac");
    }

    #[test]
    fn failed_peer_rests_for_fail_timeout_then_returns() {
        let b = Balancer::new(vec![peer(1), peer(1)]);
        let t0 = Instant::now();
        let mut s = b.select();
        let first = s.next_at(t0).unwrap();
        assert_eq!(first, 0);
        b.finish(0, true, t0);
        // Failover for the same request goes to the other peer.
        assert_eq!(s.next_at(t0), Some(1));
        b.finish(1, false, t0);
        assert_eq!(s.next_at(t0), None, "each peer is tried once per request");
        // Within fail_timeout, peer a is not eligible.
        assert_eq!(sequence(&b, 3, t0 + Duration::from_secs(5)), "bbb");
        // After fail_timeout it is tried again; success clears its failures.
        let later = t0 + Duration::from_secs(11);
        // Its effective weight climbs back from 0, so it returns within a few picks.
        assert!(sequence(&b, 4, later).contains('a'));
        assert_eq!(b.fails(0), 0);
    }

    #[test]
    fn effective_weight_drops_on_failure_and_climbs_back() {
        let mut cfg = vec![peer(4), peer(4)];
        cfg[0].max_fails = 2;
        let b = Balancer::new(cfg);
        let t0 = Instant::now();
        let i = b.select().next_at(t0).unwrap();
        assert_eq!(i, 0);
        b.finish(0, true, t0); // effective 4 - 4/2 = 2, fails 1 < max_fails: still eligible
        assert_eq!(b.lock()[0].effective_weight, 2);
        // Each pick raises it by one until it is back at 4.
        let _ = sequence(&b, 4, t0);
        assert_eq!(b.lock()[0].effective_weight, 4);
    }

    #[test]
    fn backups_only_when_no_primary_is_eligible() {
        let mut cfg = vec![peer(1), peer(1), peer(1)];
        cfg[2].backup = true;
        let b = Balancer::new(cfg);
        let t0 = Instant::now();
        assert!(!sequence(&b, 10, t0).contains('c'));
        let mut s = b.select();
        let a = s.next_at(t0).unwrap();
        b.finish(a, true, t0);
        let n = s.next_at(t0).unwrap();
        b.finish(n, true, t0);
        assert_eq!(s.next_at(t0), Some(2), "backup after both primaries failed");
        b.finish(2, false, t0);
        assert_eq!(sequence(&b, 3, t0 + Duration::from_secs(1)), "ccc");
    }

    #[test]
    fn single_server_is_never_marked_failed() {
        let b = Balancer::new(vec![peer(1)]);
        let t0 = Instant::now();
        for _ in 0..5 {
            let mut s = b.select();
            let i = s.next_at(t0).unwrap();
            b.finish(i, true, t0);
            assert_eq!(s.next_at(t0), None);
        }
        assert_eq!(b.fails(0), 0);
    }
}
