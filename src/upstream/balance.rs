//! Peer selection with nginx's own algorithms. A [`Selection`] yields peers in try
//! order for one request; failover is the next item (pingora's `BackendSelection::iter`).
//!
//! Smooth weighted round-robin, eligibility and failure accounting follow nginx's
//! `ngx_http_upstream_round_robin.c` (`ngx_http_upstream_get_peer`,
//! `ngx_http_upstream_free_round_robin_peer`), `ip_hash` follows
//! `ngx_http_upstream_ip_hash_module.c` and `least_conn`
//! `ngx_http_upstream_least_conn_module.c`. `repository_hash` (consistent hashing on
//! the repository name) is ours. Times come from the caller so tests drive the clock.

use super::Peer;
use crate::config::Balance;
use sha2::Digest as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Static settings of one peer, from `[[upstream.server]]`.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Stable identity (the URL): positions on the consistent-hash ring derive from it,
    /// so reordering the configuration moves no repository.
    pub key: String,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub down: bool,
    pub backup: bool,
    /// 0 = unlimited.
    pub max_conns: u32,
}

/// nginx's per-peer counters (`ngx_http_upstream_rr_peer_t`), plus the active health
/// check's verdict. They live apart from [`Peer`] under one lock for the whole group,
/// as nginx's do: a pick reads and writes every peer's current weight at once.
#[derive(Debug, Clone)]
struct PeerState {
    current_weight: i64,
    effective_weight: i64,
    fails: u32,
    conns: u32,
    accessed: Option<Instant>,
    checked: Option<Instant>,
    healthy: bool,
}

/// Virtual points per unit of weight on the repository ring.
const RING_POINTS: u32 = 160;
/// nginx ip_hash: rehash at most this many times, then round-robin.
const IP_HASH_TRIES: u32 = 20;

/// The peers of one upstream group (primaries and backups) and their balancing state.
#[derive(Debug)]
pub struct Balancer {
    method: Balance,
    peers: Vec<Peer>,
    primaries: Vec<usize>,
    backups: Vec<usize>,
    /// Sum of primary weights, down peers included (nginx `peers->total_weight`), so
    /// marking a server down moves only its own clients under ip_hash.
    total_weight: u32,
    /// (point, peer) sorted by point: primaries only.
    ring: Vec<(u64, usize)>,
    // One lock over the group, as nginx's `ngx_http_upstream_rr_peers_wlock`: a pick
    // reads and writes every peer's current weight.
    state: Mutex<Vec<PeerState>>,
}

/// What a request offers to hash on.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    pub client: IpAddr,
    /// The repository of a `/v2/<name>/...` request.
    pub repository: Option<&'a str>,
}

fn ring_hash(data: &[u8]) -> u64 {
    let d = sha2::Sha256::digest(data);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

impl Balancer {
    /// A group of `peers` (a [`Peer`], or a bare [`PeerConfig`] whose key is its URL).
    pub fn new<P: Into<Peer>>(method: Balance, peers: Vec<P>) -> Balancer {
        let peers: Vec<Peer> = peers.into_iter().map(Into::into).collect();
        let state = peers
            .iter()
            .map(|p| PeerState {
                current_weight: 0,
                effective_weight: i64::from(p.config.weight),
                fails: 0,
                conns: 0,
                accessed: None,
                checked: None,
                healthy: true,
            })
            .collect();
        let config = |i: usize| &peers[i].config;
        let primaries: Vec<usize> = (0..peers.len()).filter(|&i| !config(i).backup).collect();
        let backups = (0..peers.len()).filter(|&i| config(i).backup).collect();
        let total_weight = primaries.iter().map(|&i| config(i).weight).sum();
        let mut ring = Vec::new();
        if method == Balance::RepositoryHash {
            for &i in &primaries {
                for k in 0..config(i).weight.saturating_mul(RING_POINTS) {
                    ring.push((ring_hash(format!("{}#{k}", config(i).key).as_bytes()), i));
                }
            }
            ring.sort_unstable();
        }
        Balancer {
            method,
            peers,
            primaries,
            backups,
            total_weight,
            ring,
            state: Mutex::new(state),
        }
    }

    /// The group's peers, in configuration order (a peer's index is its identity in
    /// every other call).
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PeerState>> {
        // Counters stay meaningful after a panic elsewhere; never poison the group.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// nginx's `peers->single`: a one-server group is never marked failed.
    fn single(&self) -> bool {
        self.peers.len() == 1
    }

    /// Start the try order for one request.
    pub fn select<'a>(&'a self, key: RequestKey<'a>) -> Selection<'a> {
        Selection {
            balancer: self,
            key,
            tried: vec![false; self.peers.len()],
            in_backups: false,
            ip_hash: 89,
            ip_tries: 0,
        }
    }

    /// Can peer `i` take a request now? (down, health, failure window, max_conns, tried)
    fn eligible(&self, st: &[PeerState], i: usize, tried: &[bool], now: Instant) -> bool {
        let c = &self.peers[i].config;
        let p = &st[i];
        if tried[i] || c.down || !p.healthy {
            return false;
        }
        if c.max_conns > 0 && p.conns >= c.max_conns {
            return false;
        }
        if self.single() {
            return true;
        }
        !(c.max_fails > 0
            && p.fails >= c.max_fails
            && p.checked
                .is_some_and(|t| now.saturating_duration_since(t) <= c.fail_timeout))
    }

    /// Bookkeeping of a successful pick (`checked` restarts the fail window).
    fn take(&self, st: &mut [PeerState], i: usize, now: Instant) -> usize {
        let c = &self.peers[i].config;
        let p = &mut st[i];
        if p.checked
            .is_none_or(|t| now.saturating_duration_since(t) > c.fail_timeout)
        {
            p.checked = Some(now);
        }
        p.conns += 1;
        self.peers[i].picks.fetch_add(1, Ordering::Relaxed);
        i
    }

    /// nginx `ngx_http_upstream_get_peer`: smooth weighted round-robin over `among`.
    fn round_robin(
        &self,
        st: &mut [PeerState],
        among: &[usize],
        tried: &[bool],
        now: Instant,
    ) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total: i64 = 0;
        for &i in among {
            if !self.eligible(st, i, tried, now) {
                continue;
            }
            let weight = i64::from(self.peers[i].config.weight);
            let p = &mut st[i];
            p.current_weight += p.effective_weight;
            total += p.effective_weight;
            if p.effective_weight < weight {
                p.effective_weight += 1;
            }
            let cw = p.current_weight;
            // Strictly greater: the first peer wins ties, as in nginx.
            if best.is_none_or(|b| cw > st[b].current_weight) {
                best = Some(i);
            }
        }
        let i = best?;
        st[i].current_weight -= total;
        Some(self.take(st, i, now))
    }

    /// nginx `ngx_http_upstream_get_least_conn_peer`: fewest connections per weight;
    /// ties are broken by smooth weighted round-robin among the tied peers.
    fn least_conn(
        &self,
        st: &mut [PeerState],
        among: &[usize],
        tried: &[bool],
        now: Instant,
    ) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut many = false;
        for &i in among {
            if !self.eligible(st, i, tried, now) {
                continue;
            }
            match best {
                None => best = Some(i),
                Some(b) => {
                    let (ci, cb) = (u64::from(st[i].conns), u64::from(st[b].conns));
                    let (wi, wb) = (
                        u64::from(self.peers[i].config.weight),
                        u64::from(self.peers[b].config.weight),
                    );
                    if ci * wb < cb * wi {
                        best = Some(i);
                        many = false;
                    } else if ci * wb == cb * wi {
                        many = true;
                    }
                }
            }
        }
        let b = best?;
        if !many {
            return Some(self.take(st, b, now));
        }
        let (cb, wb) = (
            u64::from(st[b].conns),
            u64::from(self.peers[b].config.weight),
        );
        let tied: Vec<usize> = among
            .iter()
            .copied()
            .filter(|&i| {
                self.eligible(st, i, tried, now)
                    && u64::from(st[i].conns) * wb == cb * u64::from(self.peers[i].config.weight)
            })
            .collect();
        self.round_robin(st, &tied, tried, now)
    }

    /// Consistent hashing: the first eligible peer clockwise from the repository's
    /// point. Removing a peer moves only the repositories that were on it.
    fn repository_hash(
        &self,
        st: &mut [PeerState],
        repo: &str,
        tried: &[bool],
        now: Instant,
    ) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let h = ring_hash(repo.as_bytes());
        let start = self.ring.partition_point(|(p, _)| *p < h);
        let mut seen = vec![false; self.peers.len()];
        for k in 0..self.ring.len() {
            let (_, i) = self.ring[(start + k) % self.ring.len()];
            if seen[i] {
                continue;
            }
            seen[i] = true;
            if self.eligible(st, i, tried, now) {
                return Some(self.take(st, i, now));
            }
        }
        None
    }

    /// nginx `ngx_http_upstream_report`-side of `free_round_robin_peer`: the attempt
    /// on peer `i` failed or succeeded. A failure counts toward `max_fails` and lowers
    /// the effective weight by `weight / max_fails`; a success after the fail window
    /// clears the count.
    pub fn report(&self, i: usize, failed: bool, now: Instant) {
        if self.single() {
            return;
        }
        let mut st = self.lock();
        let c = &self.peers[i].config;
        let p = &mut st[i];
        if failed {
            p.fails += 1;
            p.accessed = Some(now);
            p.checked = Some(now);
            if let Some(step) = c.weight.checked_div(c.max_fails) {
                p.effective_weight -= i64::from(step);
                if p.fails >= c.max_fails {
                    tracing::warn!(upstream = %c.key, "upstream server temporarily disabled");
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

    /// The request on peer `i` is over (its response body finished or was dropped).
    pub fn release(&self, i: usize) {
        let mut st = self.lock();
        st[i].conns = st[i].conns.saturating_sub(1);
    }

    /// `report` then `release`, for attempts that end at once.
    pub fn finish(&self, i: usize, failed: bool, now: Instant) {
        self.report(i, failed, now);
        self.release(i);
    }

    /// The active health check's verdict on peer `i`.
    pub fn set_healthy(&self, i: usize, healthy: bool) -> bool {
        let mut st = self.lock();
        std::mem::replace(&mut st[i].healthy, healthy)
    }

    pub fn healthy(&self, i: usize) -> bool {
        self.lock()[i].healthy
    }

    /// Current failure count of peer `i` (for logs, metrics and tests).
    pub fn fails(&self, i: usize) -> u32 {
        self.lock()[i].fails
    }

    /// Requests in flight on peer `i`.
    pub fn conns(&self, i: usize) -> u32 {
        self.lock()[i].conns
    }

    /// How often peer `i` has been picked.
    pub fn picks(&self, i: usize) -> u64 {
        self.peers[i].picks.load(Ordering::Relaxed)
    }
}

/// One request's walk through the group.
pub struct Selection<'a> {
    balancer: &'a Balancer,
    key: RequestKey<'a>,
    tried: Vec<bool>,
    in_backups: bool,
    /// nginx keeps the hash and the try count across retries of one request.
    ip_hash: u32,
    ip_tries: u32,
}

impl Selection<'_> {
    /// The next peer to try, or None when every eligible peer has been tried.
    pub fn next_at(&mut self, now: Instant) -> Option<usize> {
        let b = self.balancer;
        let mut st = b.lock();
        let picked = if self.in_backups {
            None
        } else {
            match b.method {
                Balance::RoundRobin => b.round_robin(&mut st, &b.primaries, &self.tried, now),
                Balance::LeastConn => b.least_conn(&mut st, &b.primaries, &self.tried, now),
                Balance::IpHash => self.ip_hash(&mut st, now),
                Balance::RepositoryHash => match self.key.repository {
                    Some(r) => b.repository_hash(&mut st, r, &self.tried, now),
                    None => b.round_robin(&mut st, &b.primaries, &self.tried, now),
                },
            }
        };
        let picked = picked.or_else(|| {
            // nginx falls over to the backup servers only when no primary is left.
            self.in_backups = true;
            match b.method {
                Balance::LeastConn => b.least_conn(&mut st, &b.backups, &self.tried, now),
                _ => b.round_robin(&mut st, &b.backups, &self.tried, now),
            }
        });
        let i = picked?;
        self.tried[i] = true;
        Some(i)
    }

    /// nginx `ngx_http_upstream_get_ip_hash_peer`, byte for byte: key = first three
    /// octets of IPv4 or all sixteen of IPv6; hash = (hash * 113 + byte) % 6271 from 89;
    /// walk the weights; rehash from the current hash while the pick is ineligible;
    /// after 20 tries, round-robin.
    fn ip_hash(&mut self, st: &mut [PeerState], now: Instant) -> Option<usize> {
        let b = self.balancer;
        if self.ip_tries > IP_HASH_TRIES || b.single() || b.total_weight == 0 {
            return b.round_robin(st, &b.primaries, &self.tried, now);
        }
        let v4;
        let v6;
        let addr: &[u8] = match self.key.client {
            IpAddr::V4(a) => {
                v4 = a.octets();
                &v4[..3]
            }
            IpAddr::V6(a) => {
                v6 = a.octets();
                &v6[..]
            }
        };
        let mut hash = self.ip_hash;
        loop {
            for &byte in addr {
                hash = (hash * 113 + u32::from(byte)) % 6271;
            }
            let mut w = hash % b.total_weight;
            let mut k = 0;
            while w >= b.peers[b.primaries[k]].config.weight {
                w -= b.peers[b.primaries[k]].config.weight;
                k += 1;
            }
            let i = b.primaries[k];
            if b.eligible(st, i, &self.tried, now) {
                self.ip_hash = hash;
                return Some(b.take(st, i, now));
            }
            self.ip_tries += 1;
            if self.ip_tries > IP_HASH_TRIES {
                return b.round_robin(st, &b.primaries, &self.tried, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(weight: u32) -> PeerConfig {
        PeerConfig {
            key: format!("http://peer-{weight}-{}", rand::random::<u32>()),
            weight,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            down: false,
            backup: false,
            max_conns: 0,
        }
    }

    const LOCAL: RequestKey<'static> = RequestKey {
        client: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        repository: None,
    };

    fn rr(cfg: Vec<PeerConfig>) -> Balancer {
        Balancer::new(Balance::RoundRobin, cfg)
    }

    /// One pick per request, each request finishing successfully.
    fn sequence(b: &Balancer, n: usize, now: Instant) -> String {
        (0..n)
            .map(|_| {
                let i = b.select(LOCAL).next_at(now).unwrap();
                b.finish(i, false, now);
                (b'a' + i as u8) as char
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_matches_nginx() {
        // The sequence quoted in nginx's commit 52327e0627f4 ("smooth weighted round-robin").
        let b = rr(vec![peer(5), peer(1), peer(1)]);
        let now = Instant::now();
        assert_eq!(sequence(&b, 7, now), "aabacaa");
        assert_eq!(sequence(&b, 7, now), "aabacaa", "the cycle repeats");
        let b = rr(vec![peer(2), peer(1)]);
        assert_eq!(sequence(&b, 6, now), "abaaba");
        let b = rr(vec![peer(1), peer(1), peer(1)]);
        assert_eq!(sequence(&b, 6, now), "abcabc");
    }

    #[test]
    fn down_peers_are_skipped() {
        let mut cfg = vec![peer(1), peer(1), peer(1)];
        cfg[1].down = true;
        let b = rr(cfg);
        assert_eq!(sequence(&b, 4, Instant::now()), "acac");
    }

    #[test]
    fn failed_peer_rests_for_fail_timeout_then_returns() {
        let b = rr(vec![peer(1), peer(1)]);
        let t0 = Instant::now();
        let mut s = b.select(LOCAL);
        let first = s.next_at(t0).unwrap();
        assert_eq!(first, 0);
        b.finish(0, true, t0);
        // Failover for the same request goes to the other peer.
        assert_eq!(s.next_at(t0), Some(1));
        b.finish(1, false, t0);
        assert_eq!(s.next_at(t0), None, "each peer is tried once per request");
        // Within fail_timeout, peer a is not eligible.
        assert_eq!(sequence(&b, 3, t0 + Duration::from_secs(5)), "bbb");
        // After fail_timeout it is tried again; its effective weight climbs back from 0,
        // so it returns within a few picks, and success clears its failures.
        let later = t0 + Duration::from_secs(11);
        assert!(sequence(&b, 4, later).contains('a'));
        assert_eq!(b.fails(0), 0);
    }

    #[test]
    fn effective_weight_drops_on_failure_and_climbs_back() {
        let mut cfg = vec![peer(4), peer(4)];
        cfg[0].max_fails = 2;
        let b = rr(cfg);
        let t0 = Instant::now();
        let i = b.select(LOCAL).next_at(t0).unwrap();
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
        let b = rr(cfg);
        let t0 = Instant::now();
        assert!(!sequence(&b, 10, t0).contains('c'));
        let mut s = b.select(LOCAL);
        let a = s.next_at(t0).unwrap();
        b.finish(a, true, t0);
        let n = s.next_at(t0).unwrap();
        b.finish(n, true, t0);
        assert_eq!(s.next_at(t0), Some(2), "backup after both primaries failed");
        b.finish(2, false, t0);
        assert_eq!(sequence(&b, 3, t0 + Duration::from_secs(1)), "ccc");
        // Back to the primaries once their fail_timeout is over.
        assert!(!sequence(&b, 4, t0 + Duration::from_secs(11)).contains('c'));
    }

    #[test]
    fn single_server_is_never_marked_failed() {
        let b = rr(vec![peer(1)]);
        let t0 = Instant::now();
        for _ in 0..5 {
            let mut s = b.select(LOCAL);
            let i = s.next_at(t0).unwrap();
            b.finish(i, true, t0);
            assert_eq!(s.next_at(t0), None);
        }
        assert_eq!(b.fails(0), 0);
    }

    #[test]
    fn max_conns_caps_a_peer() {
        let mut cfg = vec![peer(1), peer(1)];
        cfg[0].max_conns = 1;
        let b = rr(cfg);
        let t0 = Instant::now();
        let first = b.select(LOCAL).next_at(t0).unwrap();
        assert_eq!(first, 0);
        // Peer a is busy: the next requests go to b until a is released.
        assert_eq!(b.select(LOCAL).next_at(t0), Some(1));
        assert_eq!(b.select(LOCAL).next_at(t0), Some(1));
        b.release(0);
        assert!((0..3).any(|_| b.select(LOCAL).next_at(t0) == Some(0)));
    }

    // Agreement with nginx's ip_hash over many addresses, weights and a down server is
    // checked against a real nginx run: tests/balance.rs `balancer_agrees_with_a_real_nginx`.

    #[test]
    fn ip_hash_quoted_vectors_and_stability() {
        // 192.168.1.x all hash on 192.168.1: same peer whatever the last octet.
        let b = Balancer::new(Balance::IpHash, vec![peer(1), peer(1), peer(1)]);
        let t0 = Instant::now();
        let pick = |ip: &str| {
            let i = b
                .select(RequestKey {
                    client: ip.parse().unwrap(),
                    repository: None,
                })
                .next_at(t0)
                .unwrap();
            b.release(i);
            i
        };
        let first = pick("192.168.1.1");
        for last in [2, 77, 254] {
            assert_eq!(pick(&format!("192.168.1.{last}")), first);
        }
        // By hand: 89 → (89*113+192)%6271 = 3978 → (3978*113+168)%6271 = 4441
        // → (4441*113+1)%6271 = 154; 154 % 3 = 1 → the second peer.
        assert_eq!(first, 1);
    }

    #[test]
    fn ip_hash_marking_one_down_moves_only_its_clients() {
        let cfg = || vec![peer(1), peer(1), peer(1)];
        let up = Balancer::new(Balance::IpHash, cfg());
        let mut c = cfg();
        c[1].down = true;
        let one_down = Balancer::new(Balance::IpHash, c);
        let t0 = Instant::now();
        for n in 0..500u32 {
            let client = IpAddr::V4(std::net::Ipv4Addr::from(n.wrapping_mul(2654435761)));
            let key = RequestKey {
                client,
                repository: None,
            };
            let before = up.select(key).next_at(t0).unwrap();
            let after = one_down.select(key).next_at(t0).unwrap();
            up.release(before);
            one_down.release(after);
            if before != 1 {
                assert_eq!(before, after, "{client} moved although its server is up");
            } else {
                assert_ne!(after, 1);
            }
        }
    }

    #[test]
    fn least_conn_prefers_idle_peers_by_weight() {
        let b = Balancer::new(Balance::LeastConn, vec![peer(1), peer(2)]);
        let t0 = Instant::now();
        // Start: both idle; tie broken by weighted round-robin → b (weight 2) first.
        let x = b.select(LOCAL).next_at(t0).unwrap();
        assert_eq!(x, 1);
        // b has 1 conn / weight 2 = 0.5 > a's 0: a next.
        assert_eq!(b.select(LOCAL).next_at(t0), Some(0));
        // a 1/1, b 1/2: b.
        assert_eq!(b.select(LOCAL).next_at(t0), Some(1));
        b.release(0);
        assert_eq!(b.select(LOCAL).next_at(t0), Some(0));
        assert_eq!(b.conns(1), 2);
    }

    #[test]
    fn repository_hash_is_sticky_and_moves_only_the_lost_share() {
        let cfg = vec![peer(1), peer(1), peer(1)];
        let keys: Vec<String> = cfg.iter().map(|c| c.key.clone()).collect();
        let all = Balancer::new(Balance::RepositoryHash, cfg.clone());
        let mut c = cfg.clone();
        c[2].down = true;
        let less = Balancer::new(Balance::RepositoryHash, c);
        let t0 = Instant::now();
        let mut counts = [0; 3];
        let mut moved = 0;
        for n in 0..3000 {
            let repo = format!("team-{}/app-{n}", n % 17);
            let key = RequestKey {
                client: LOCAL.client,
                repository: Some(&repo),
            };
            let a = all.select(key).next_at(t0).unwrap();
            let again = all.select(key).next_at(t0).unwrap();
            assert_eq!(a, again, "sticky");
            let l = less.select(key).next_at(t0).unwrap();
            counts[a] += 1;
            if a != 2 {
                assert_eq!(a, l, "{repo} moved although its server is up");
            } else {
                moved += 1;
                assert_ne!(l, 2);
            }
        }
        assert_eq!(moved, counts[2]);
        for c in counts {
            assert!((600..1400).contains(&c), "uneven ring: {counts:?}");
        }
        // The ring is keyed by URL, not position: reordering moves nothing.
        let mut reordered = cfg.clone();
        reordered.reverse();
        let r = Balancer::new(Balance::RepositoryHash, reordered);
        for n in 0..200 {
            let repo = format!("x/{n}");
            let key = RequestKey {
                client: LOCAL.client,
                repository: Some(&repo),
            };
            let a = all.select(key).next_at(t0).unwrap();
            let b = r.select(key).next_at(t0).unwrap();
            assert_eq!(keys[a], r.peers[b].config.key);
        }
    }

    #[test]
    fn unhealthy_peers_are_skipped_until_healthy_again() {
        let b = rr(vec![peer(1), peer(1)]);
        let t0 = Instant::now();
        b.set_healthy(0, false);
        assert_eq!(sequence(&b, 3, t0), "bbb");
        b.set_healthy(0, true);
        assert!(sequence(&b, 2, t0).contains('a'));
    }
}
