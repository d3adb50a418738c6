//! The login throttle's summary log line: throttled tries counted over one interval
//! (bounded: at most [`WINDOW_KEYS`] distinct addresses and names are told apart),
//! written as one line when the interval closes.

use super::By;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

/// Distinct addresses and names counted in one summary window; beyond, "at least".
const WINDOW_KEYS: usize = 4096;

/// What one summary line says (returned by [`super::Throttle::tick`] for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub by_address: u64,
    pub by_user: u64,
    /// Distinct addresses (at least this many when `more`).
    pub addresses: usize,
    pub users: usize,
    pub more: bool,
    /// The address refused most often, and how often.
    pub top: Option<(IpAddr, u64)>,
}

/// Throttled tries since the last summary line.
pub(super) struct Window {
    since: Instant,
    by_address: u64,
    by_user: u64,
    addresses: HashMap<IpAddr, u64>,
    addresses_more: bool,
    users: HashSet<u64>,
    users_more: bool,
}

impl Window {
    pub(super) fn new(now: Instant) -> Window {
        Window {
            since: now,
            by_address: 0,
            by_user: 0,
            addresses: HashMap::new(),
            addresses_more: false,
            users: HashSet::new(),
            users_more: false,
        }
    }

    pub(super) fn record(&mut self, by: By, address: IpAddr, user: u64) {
        match by {
            By::Address => self.by_address += 1,
            By::User => self.by_user += 1,
        }
        let room = self.addresses.len() < WINDOW_KEYS;
        match self.addresses.get_mut(&address) {
            Some(n) => *n += 1,
            None if room => {
                self.addresses.insert(address, 1);
            }
            None => self.addresses_more = true,
        }
        if self.users.len() < WINDOW_KEYS {
            self.users.insert(user);
        } else if !self.users.contains(&user) {
            self.users_more = true;
        }
    }

    /// End the interval: log one line and return what it says, if anything was
    /// throttled. `tracked`: buckets stored now (addresses, names).
    pub(super) fn close(self, now: Instant, tracked: (usize, usize)) -> Option<Summary> {
        if self.by_address + self.by_user == 0 {
            return None;
        }
        let summary = Summary {
            by_address: self.by_address,
            by_user: self.by_user,
            addresses: self.addresses.len(),
            users: self.users.len(),
            more: self.addresses_more || self.users_more,
            top: self
                .addresses
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(a, n)| (*a, *n)),
        };
        let (top, top_count) = summary
            .top
            .map_or((String::new(), 0), |(a, n)| (a.to_string(), n));
        tracing::warn!(
            seconds = now.saturating_duration_since(self.since).as_secs(),
            refused = summary.by_address + summary.by_user,
            by_address = summary.by_address,
            by_user = summary.by_user,
            addresses = summary.addresses,
            users = summary.users,
            at_least = summary.more,
            top_address = %top,
            top_address_refused = top_count,
            tracked_addresses = tracked.0,
            tracked_users = tracked.1,
            "login throttle: failed logins refused with 429 (summary)"
        );
        Some(summary)
    }
}
