//! The login throttle: token buckets of failed password checks, one per client address
//! and one per user name, so guessing costs the guesser time instead of costing the
//! server a bcrypt per try (`[auth.throttle]`: `burst` failures at once, one more every
//! `refill`).
//!
//! Why it works the way it does:
//!
//! - **Only failures take tokens.** A check reserves a token in the address's and in
//!   the user's bucket before its hash runs, and gives both back if the password was
//!   right. So a CI user pulling with 300 parallel requests never trips it: identical
//!   checks share one hash and one reservation (the caller's single flight), and the
//!   verified-credential cache is consulted before the throttle, so a credential known
//!   to be good is served even while its address or name is throttled, at no hash.
//! - **Reservations, not after-the-fact counting.** Were tokens taken only when a
//!   failure came back, 200 parallel wrong guesses would all find a full bucket and
//!   all run their hash. A check that would need a token already promised to checks
//!   in flight waits for them to finish (a failure then empties the bucket and it is
//!   refused; a success gives the tokens back and it goes on). So the hashes run from
//!   one address are at most `burst` per `burst × refill`, however parallel the flood.
//! - **Reserved at the hash, settled by the hash.** The reservation travels into the
//!   hashing job: it is settled by what the hash found, even if the client reset the
//!   stream meanwhile (so resetting does not dodge the count); a job skipped before it
//!   ran (nobody waited any more) hands its tokens back, as it cost nothing.
//! - **An empty address bucket is refused at once:** 429 with `Retry-After` (whole
//!   seconds until the next token), no hash.
//! - **An empty user bucket** (someone guesses one account from many addresses) does
//!   not lock the account's owner out: an attempt from an address whose bucket is FULL
//!   (no recent failure there) is still checked, so the owner's right password from
//!   their own address is never delayed by someone else's failures; but a failure on
//!   that path drains the address's bucket completely, so each attacking address gets
//!   one guess at that account per `burst × refill`. From an address with any recent
//!   failure, an empty user bucket is a 429 without a hash.
//! - **Keys.** An IPv6 client is keyed by its /64 (one host usually holds a whole
//!   /64, so per-address buckets would be free to dodge); IPv4 (and IPv4-mapped IPv6)
//!   by its address. User names are keyed by a 64-bit keyed hash (random per
//!   process, so names cannot be chosen to collide) instead of the name itself, so a
//!   long client-chosen name costs eight bytes.
//! - **Bounded memory.** Only buckets that are not full are stored; a bucket that has
//!   refilled is dropped when next looked at and by [`Throttle::tick`]'s periodic
//!   prune. Each map holds at most [`CAPACITY`] entries. When a map is full (after
//!   pruning, at most once per [`PRUNE_WHEN_FULL`]), keys that have no entry share
//!   one overflow bucket instead of each getting a fresh, full one: an attacker who
//!   fills the table with 100,000 addresses then shares a single `burst` with every
//!   other new address, rather than getting a free bucket per new address. That
//!   fails closed for new addresses with wrong passwords while the table is full;
//!   cached credentials and addresses already tracked are unaffected.
//! - **Quiet logs.** A throttled try writes no log line of its own (the access log
//!   still has its one line per request). [`Throttle::tick`] writes one summary at
//!   most every [`SUMMARY_EVERY`] while anything was throttled: how many tries, how
//!   many addresses and names, and the address refused most often; a flood of any
//!   size writes one line per interval.
//! - **Reloads.** The throttle lives across SIGHUP reloads (the new state takes the
//!   previous one's); [`Throttle::configure`] applies a new `burst`/`refill` to the
//!   buckets as they stand (time passed so far counted at the old rate).

mod summary;

pub use summary::Summary;

use crate::config::Throttle as Limits;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use summary::Window;
use tokio::sync::Notify;

/// Most buckets stored per map (addresses, user names).
pub const CAPACITY: usize = 100_000;
/// Shortest time between two summary log lines, and between periodic prunes.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Shortest time between two prunes forced by a full map (a prune walks it all).
pub const PRUNE_WHEN_FULL: Duration = Duration::from_secs(1);
/// Float slack when comparing token counts (refill arithmetic is in f64).
const EPSILON: f64 = 1e-9;

/// Which bucket refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Address,
    User,
}

impl By {
    pub fn label(self) -> &'static str {
        match self {
            By::Address => "address",
            By::User => "user",
        }
    }
}

/// What the throttle says about a password check that would run now.
pub enum Admission {
    /// Go ahead; settle the reservation with the check's outcome (`None`: throttle off).
    Go(Option<Reservation>),
    /// Refused without a check: answer 429 with `Retry-After`.
    Throttled { by: By, retry_after: Duration },
    /// Checks in flight hold the last tokens: wait for one to settle, then ask again.
    Wait,
}

/// One bucket: tokens missing as of `at` (refilling at one per `refill` since), and
/// tokens promised to checks in flight.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    missing: f64,
    at: Instant,
    pending: u32,
}

impl Bucket {
    fn full(now: Instant) -> Bucket {
        Bucket {
            missing: 0.0,
            at: now,
            pending: 0,
        }
    }

    /// Bring `missing` up to `now`.
    fn settle(&mut self, now: Instant, refill: Duration) {
        if now > self.at {
            let refilled = (now - self.at).as_secs_f64() / refill.as_secs_f64();
            self.missing = (self.missing - refilled).max(0.0);
            self.at = now;
        }
    }

    fn is_full(&self) -> bool {
        self.missing <= EPSILON && self.pending == 0
    }

    /// Less than one token left, counting only failures that happened.
    fn is_empty(&self, burst: f64) -> bool {
        self.missing > burst - 1.0 + EPSILON
    }

    /// A token is left for one more check besides those in flight.
    fn has_free(&self, burst: f64) -> bool {
        burst - self.missing - f64::from(self.pending) >= 1.0 - EPSILON
    }

    /// Time until one token is back.
    fn until_token(&self, burst: f64, refill: Duration) -> Duration {
        let short = (self.missing - (burst - 1.0)).max(0.0);
        Duration::from_secs_f64(short * refill.as_secs_f64())
    }

    fn fail(&mut self, burst: f64, drain: bool) {
        self.missing = if drain {
            burst
        } else {
            (self.missing + 1.0).min(burst)
        };
    }
}

/// Where a key's bucket lives: its own entry, or the shared overflow of a full map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot<K> {
    Key(K),
    Overflow,
}

/// One map of buckets with its cap and overflow bucket.
struct Buckets<K> {
    map: HashMap<K, Bucket>,
    overflow: Bucket,
    cap: usize,
    pruned: Instant,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    fn new(cap: usize, now: Instant) -> Buckets<K> {
        Buckets {
            map: HashMap::new(),
            overflow: Bucket::full(now),
            cap,
            pruned: now,
        }
    }

    fn slot(&mut self, key: K, now: Instant, refill: Duration) -> Slot<K> {
        if self.map.contains_key(&key) || self.map.len() < self.cap {
            return Slot::Key(key);
        }
        if now.saturating_duration_since(self.pruned) >= PRUNE_WHEN_FULL {
            self.prune(now, refill);
            if self.map.len() < self.cap {
                return Slot::Key(key);
            }
        }
        Slot::Overflow
    }

    /// The bucket as of `now` (a full one if the key has none); drops a stored entry
    /// that has refilled.
    fn view(&mut self, slot: Slot<K>, now: Instant, refill: Duration) -> Bucket {
        match slot {
            Slot::Overflow => {
                self.overflow.settle(now, refill);
                self.overflow
            }
            Slot::Key(k) => match self.map.get_mut(&k) {
                Some(b) => {
                    b.settle(now, refill);
                    let b = *b;
                    if b.is_full() {
                        self.map.remove(&k);
                    }
                    b
                }
                None => Bucket::full(now),
            },
        }
    }

    fn reserve(&mut self, slot: Slot<K>, now: Instant) {
        let b = match slot {
            Slot::Overflow => &mut self.overflow,
            Slot::Key(k) => self.map.entry(k).or_insert_with(|| Bucket::full(now)),
        };
        b.pending += 1;
    }

    /// A check in flight ended: give its token back, or (`failed`) keep it.
    fn settle(&mut self, slot: Slot<K>, failed: bool, drain: bool, now: Instant, l: Limits) {
        let b = match slot {
            Slot::Overflow => &mut self.overflow,
            // Never absent: an entry with checks in flight is not pruned.
            Slot::Key(k) => self.map.entry(k).or_insert_with(|| Bucket::full(now)),
        };
        b.settle(now, l.refill);
        b.pending = b.pending.saturating_sub(1);
        if failed {
            b.fail(f64::from(l.burst), drain);
        }
        if let Slot::Key(k) = slot {
            if self.map.get(&k).is_some_and(Bucket::is_full) {
                self.map.remove(&k);
            }
        }
    }

    fn prune(&mut self, now: Instant, refill: Duration) {
        self.map.retain(|_, b| {
            b.settle(now, refill);
            !b.is_full()
        });
        self.pruned = now;
    }

    /// Apply new limits: count time so far at the old rate, cap at the new burst.
    fn rescale(&mut self, now: Instant, old: Duration, burst: u32) {
        let burst = f64::from(burst);
        for b in self
            .map
            .values_mut()
            .chain(std::iter::once(&mut self.overflow))
        {
            b.settle(now, old);
            b.missing = b.missing.min(burst);
        }
    }
}

struct Inner {
    limits: Option<Limits>,
    addresses: Buckets<IpAddr>,
    users: Buckets<u64>,
    window: Window,
    last_tick: Instant,
    /// Bumped when switching off clears the maps: reservations from before settle
    /// into nothing rather than into buckets that are not theirs.
    epoch: u64,
}

/// The login throttle of a process: kept across reloads (see the module notes).
pub struct Throttle {
    inner: Mutex<Inner>,
    /// Woken whenever a reservation is settled, for checks that [`Admission::Wait`].
    settled: Notify,
    names: RandomState,
}

/// Tokens promised to one password check in flight; settle it with the outcome.
/// Dropped unsettled: if the check had started, counted as a failure (its hash may
/// have run, its outcome is unknown); if not, the tokens go back.
pub struct Reservation {
    throttle: Arc<Throttle>,
    address: Slot<IpAddr>,
    user: Slot<u64>,
    drain: bool,
    epoch: u64,
    started: bool,
    done: bool,
}

impl Reservation {
    /// The check is about to run: from now on, dropping this counts as a failure.
    pub fn start(&mut self) {
        self.started = true;
    }

    /// The check ended: `failed` keeps the tokens taken, else they go back.
    pub fn settle(mut self, failed: bool) {
        self.done = true;
        self.throttle.settle(&self, failed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.throttle.settle(self, self.started);
        }
    }
}

/// The key of a client address's bucket (see the module notes).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Throttle {
    /// A throttle with `limits` (`None`: off, every check goes ahead).
    pub fn new(limits: Option<Limits>) -> Throttle {
        Throttle::with_capacity(limits, CAPACITY)
    }

    /// The same with another cap per map (tests of the full-map policy).
    pub fn with_capacity(limits: Option<Limits>, cap: usize) -> Throttle {
        let now = Instant::now();
        Throttle {
            inner: Mutex::new(Inner {
                limits,
                addresses: Buckets::new(cap, now),
                users: Buckets::new(cap, now),
                window: Window::new(now),
                last_tick: now,
                epoch: 0,
            }),
            settled: Notify::new(),
            names: RandomState::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a few field writes; a panic cannot leave a bucket half-set
        // in a way that matters more than a lost token.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limits(&self) -> Option<Limits> {
        self.lock().limits
    }

    /// Apply a reloaded configuration to the buckets as they stand.
    pub fn configure(&self, limits: Option<Limits>) {
        let now = Instant::now();
        let mut g = self.lock();
        let inner = &mut *g;
        match (inner.limits, limits) {
            (Some(old), Some(new)) => {
                inner.addresses.rescale(now, old.refill, new.burst);
                inner.users.rescale(now, old.refill, new.burst);
            }
            (_, None) => {
                // Off: forget every failure (checks in flight settle into nothing).
                let (a, u) = (inner.addresses.cap, inner.users.cap);
                inner.addresses = Buckets::new(a, now);
                inner.users = Buckets::new(u, now);
                inner.epoch += 1;
            }
            (None, Some(_)) => {}
        }
        inner.limits = limits;
        drop(g);
        self.settled.notify_waiters();
    }

    /// Stored buckets: (addresses, user names).
    pub fn entries(&self) -> (usize, usize) {
        let g = self.lock();
        (g.addresses.map.len(), g.users.map.len())
    }

    fn user_key(&self, user: &str) -> u64 {
        self.names.hash_one(user)
    }

    /// A future that completes at the next settlement; enable it before [`admit`]
    /// (Self::admit) so a settlement in between is not missed.
    pub fn settled(&self) -> tokio::sync::futures::Notified<'_> {
        self.settled.notified()
    }

    /// May a password check for `user` from `peer` run now? See the module notes.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, user: &str) -> Admission {
        let now = Instant::now();
        let user_key = self.user_key(user);
        let address_key = address_key(peer);
        let mut g = self.lock();
        let inner = &mut *g;
        let Some(limits) = inner.limits else {
            return Admission::Go(None);
        };
        let burst = f64::from(limits.burst);
        let a_slot = inner.addresses.slot(address_key, now, limits.refill);
        let a = inner.addresses.view(a_slot, now, limits.refill);
        if a.is_empty(burst) {
            return self.refused(
                inner,
                By::Address,
                a.until_token(burst, limits.refill),
                address_key,
                user_key,
            );
        }
        let u_slot = inner.users.slot(user_key, now, limits.refill);
        let u = inner.users.view(u_slot, now, limits.refill);
        let drain = u.is_empty(burst);
        if drain && !a.is_full() {
            return self.refused(
                inner,
                By::User,
                u.until_token(burst, limits.refill),
                address_key,
                user_key,
            );
        }
        if !a.has_free(burst) || (!drain && !u.has_free(burst)) {
            return Admission::Wait;
        }
        inner.addresses.reserve(a_slot, now);
        inner.users.reserve(u_slot, now);
        Admission::Go(Some(Reservation {
            throttle: self.clone(),
            address: a_slot,
            user: u_slot,
            drain,
            epoch: inner.epoch,
            started: false,
            done: false,
        }))
    }

    fn refused(
        &self,
        inner: &mut Inner,
        by: By,
        wait: Duration,
        address: IpAddr,
        user: u64,
    ) -> Admission {
        inner.window.record(by, address, user);
        crate::metrics::get()
            .auth_throttled
            .get_or_create(&crate::metrics::ByLabels { by: by.label() })
            .inc();
        // Whole seconds, rounded up, at least one (RFC 9110 §10.2.3 delay-seconds).
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Admission::Throttled {
            by,
            retry_after: Duration::from_secs(secs.max(1)),
        }
    }

    fn settle(&self, r: &Reservation, failed: bool) {
        let now = Instant::now();
        {
            let mut g = self.lock();
            let inner = &mut *g;
            if let (Some(l), true) = (inner.limits, inner.epoch == r.epoch) {
                inner.addresses.settle(r.address, failed, r.drain, now, l);
                inner.users.settle(r.user, failed, false, now, l);
            }
        }
        self.settled.notify_waiters();
    }

    /// Periodic work (call about once a second): every [`SUMMARY_EVERY`], drop
    /// refilled buckets and, if anything was throttled since the last line, log one
    /// summary line (also returned).
    pub fn tick(&self, now: Instant) -> Option<Summary> {
        let mut g = self.lock();
        let inner = &mut *g;
        if now.saturating_duration_since(inner.last_tick) < SUMMARY_EVERY {
            return None;
        }
        inner.last_tick = now;
        if let Some(l) = inner.limits {
            inner.addresses.prune(now, l.refill);
            inner.users.prune(now, l.refill);
        }
        let w = std::mem::replace(&mut inner.window, Window::new(now));
        let tracked = (inner.addresses.map.len(), inner.users.map.len());
        drop(g);
        w.close(now, tracked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn throttle(burst: u32, refill: Duration) -> Arc<Throttle> {
        Arc::new(Throttle::new(Some(Limits { burst, refill })))
    }

    fn go(t: &Arc<Throttle>, peer: IpAddr, user: &str) -> Reservation {
        match t.admit(peer, user) {
            Admission::Go(Some(r)) => r,
            Admission::Go(None) => panic!("throttle off"),
            Admission::Throttled { by, .. } => panic!("throttled by {by:?}"),
            Admission::Wait => panic!("wait"),
        }
    }

    fn fail(t: &Arc<Throttle>, peer: IpAddr, user: &str) {
        go(t, peer, user).settle(true);
    }

    fn refused(t: &Arc<Throttle>, peer: IpAddr, user: &str) -> (By, Duration) {
        match t.admit(peer, user) {
            Admission::Throttled { by, retry_after } => (by, retry_after),
            Admission::Go(_) => panic!("admitted"),
            Admission::Wait => panic!("wait"),
        }
    }

    #[test]
    fn an_address_gets_burst_failures_then_429_with_whole_seconds() {
        let t = throttle(3, Duration::from_millis(1500));
        for n in 0..3 {
            fail(&t, ip(1), &format!("user{n}"));
        }
        let (by, retry) = refused(&t, ip(1), "someone-else");
        assert_eq!(by, By::Address);
        assert_eq!(retry, Duration::from_secs(2), "1.5 s rounded up");
        // Another address is not affected.
        fail(&t, ip(2), "user0");
        assert_eq!(t.entries().0, 2);
    }

    #[test]
    fn successes_take_no_token() {
        let t = throttle(2, HOUR);
        for _ in 0..100 {
            go(&t, ip(1), "ci").settle(false);
        }
        assert_eq!(t.entries(), (0, 0), "nothing stored for successes");
        fail(&t, ip(1), "ci");
        go(&t, ip(1), "ci").settle(false);
        fail(&t, ip(1), "ci");
        assert_eq!(refused(&t, ip(1), "ci").0, By::Address);
    }

    #[test]
    fn checks_in_flight_hold_their_tokens_and_a_skipped_check_gives_them_back() {
        let t = throttle(2, HOUR);
        let a = go(&t, ip(1), "x");
        let mut b = go(&t, ip(1), "y");
        assert!(matches!(t.admit(ip(1), "z"), Admission::Wait));
        drop(a); // never started: tokens back
        let c = go(&t, ip(1), "z");
        b.start();
        drop(b); // started and abandoned: counted as a failure
        assert!(matches!(t.admit(ip(1), "z"), Admission::Wait));
        c.settle(true);
        assert_eq!(refused(&t, ip(1), "w").0, By::Address);
    }

    #[test]
    fn an_empty_user_bucket_still_checks_from_clean_addresses_and_drains_them() {
        let t = throttle(3, HOUR);
        // Three addresses, one failure each at "alice": her bucket is empty.
        for n in 1..=3 {
            fail(&t, ip(n), "alice");
        }
        // A dirty address (one failure) is refused for alice, not for others.
        assert_eq!(refused(&t, ip(1), "alice").0, By::User);
        go(&t, ip(1), "bob").settle(false);
        // A clean address is checked; its right password costs it nothing.
        go(&t, ip(9), "alice").settle(false);
        go(&t, ip(9), "alice").settle(false);
        // A failure from a clean address drains it completely.
        fail(&t, ip(8), "alice");
        assert_eq!(refused(&t, ip(8), "bob").0, By::Address);
        // While one such check is in flight the address is no longer clean.
        let r = go(&t, ip(7), "alice");
        assert_eq!(refused(&t, ip(7), "alice").0, By::User);
        r.settle(false);
    }

    #[test]
    fn buckets_refill_and_refilled_entries_are_dropped() {
        let refill = Duration::from_millis(100);
        let t = throttle(2, refill);
        fail(&t, ip(1), "a");
        fail(&t, ip(1), "a");
        assert_eq!(refused(&t, ip(1), "a").0, By::Address);
        std::thread::sleep(refill * 3);
        fail(&t, ip(1), "a");
        std::thread::sleep(refill * 3);
        assert!(t.tick(Instant::now() + SUMMARY_EVERY).is_some());
        assert_eq!(t.entries(), (0, 0), "refilled buckets pruned");
    }

    #[test]
    fn a_full_map_shares_one_overflow_bucket_among_new_keys() {
        let t = Arc::new(Throttle::with_capacity(
            Some(Limits {
                burst: 2,
                refill: HOUR,
            }),
            2,
        ));
        fail(&t, ip(1), "u");
        fail(&t, ip(2), "u");
        // Both maps full: new addresses (and names) share the overflow bucket.
        fail(&t, ip(3), "v");
        fail(&t, ip(4), "w");
        assert_eq!(refused(&t, ip(5), "x").0, By::Address);
        assert_eq!(refused(&t, ip(200), "y").0, By::Address);
        assert_eq!(t.entries(), (2, 2), "the cap holds");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), ip(1));
    }

    #[test]
    fn a_reload_keeps_the_buckets_and_applies_new_limits() {
        let t = throttle(3, HOUR);
        for _ in 0..2 {
            fail(&t, ip(1), "u");
        }
        t.configure(Some(Limits {
            burst: 2,
            refill: HOUR,
        }));
        assert_eq!(
            refused(&t, ip(1), "u").0,
            By::Address,
            "2 failures, burst 2"
        );
        t.configure(Some(Limits {
            burst: 5,
            refill: HOUR,
        }));
        fail(&t, ip(1), "u");
        t.configure(None);
        assert!(matches!(t.admit(ip(1), "u"), Admission::Go(None)));
    }

    #[test]
    fn a_check_from_before_switching_off_does_not_settle_into_new_buckets() {
        let t = throttle(1, HOUR);
        let old = go(&t, ip(1), "u");
        t.configure(None);
        t.configure(Some(Limits {
            burst: 1,
            refill: HOUR,
        }));
        let new = go(&t, ip(1), "u");
        old.settle(false);
        assert!(
            matches!(t.admit(ip(1), "u"), Admission::Wait),
            "the new check still holds the token"
        );
        new.settle(true);
        assert_eq!(refused(&t, ip(1), "u").0, By::Address);
    }

    #[test]
    fn the_summary_is_one_line_per_interval_however_many_refusals() {
        let t = throttle(1, HOUR);
        for n in 0..50u8 {
            fail(&t, ip(n), "u");
        }
        for _ in 0..1000 {
            let _ = t.admit(ip(7), "u");
        }
        for n in 0..50u8 {
            let _ = t.admit(ip(n), "v");
        }
        assert!(t.tick(Instant::now()).is_none(), "not yet an interval");
        let s = t.tick(Instant::now() + SUMMARY_EVERY).expect("a summary");
        assert_eq!(s.by_address, 1050);
        assert_eq!(s.addresses, 50);
        assert_eq!(s.users, 2);
        assert_eq!(s.top, Some((ip(7), 1001)));
        assert!(
            t.tick(Instant::now() + SUMMARY_EVERY * 2).is_none(),
            "nothing new"
        );
    }
}
