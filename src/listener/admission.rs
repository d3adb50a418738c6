//! Admission of accepted TCP connections: the caps on connections open in total
//! (`server.max_connections`) and from one client address
//! (`server.max_connections_per_address`), checked before TLS so a refused connection
//! costs no handshake. Both are read from the live configuration at each accept, so a
//! reload applies to the next connection. Refusals are counted in
//! `portcullis_connections_refused_total` and logged at most once per [`WARN_EVERY`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Least time between two warnings about one limit: a flood of refused connections
/// must not become a flood of log lines.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Which cap refused a connection (the metric's `limit` label is the key's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerAddress,
}

impl Refusal {
    pub fn key(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerAddress => "max_connections_per_address",
        }
    }
}

/// The connections open now, in total and by client address.
#[derive(Default)]
pub struct Admission {
    open: AtomicUsize,
    /// Only addresses with a connection open: bounded by `max_connections`.
    by_address: Mutex<HashMap<IpAddr, usize>>,
    warned: Mutex<[Quiet; 2]>,
}

/// The rate limit of one limit's warning.
#[derive(Default, Clone, Copy)]
struct Quiet {
    last: Option<Instant>,
    /// Refusals not logged since `last`.
    unsaid: u64,
}

/// One admitted connection; its slots are given back when dropped.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut map = self.admission.addresses();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        drop(map);
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The address a client is counted under: an IPv4 client of a dual-stack listener
/// (`::ffff:a.b.c.d`) is the IPv4 address it is.
fn client(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Admission {
    fn addresses(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.by_address.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a connection from `ip` under the current caps, or say which one refuses it
    /// (counted, and logged unless another refusal of that cap was logged recently).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_address: usize,
    ) -> Result<Ticket, Refusal> {
        let ip = client(ip);
        let refused = if self.open.fetch_add(1, Ordering::AcqRel) >= max_total {
            Some(Refusal::Total)
        } else {
            let mut map = self.addresses();
            let n = map.entry(ip).or_insert(0);
            if *n >= max_per_address {
                if *n == 0 {
                    map.remove(&ip);
                }
                Some(Refusal::PerAddress)
            } else {
                *n += 1;
                None
            }
        };
        match refused {
            None => Ok(Ticket {
                admission: self.clone(),
                ip,
            }),
            Some(why) => {
                self.open.fetch_sub(1, Ordering::AcqRel);
                let limit = match why {
                    Refusal::Total => max_total,
                    Refusal::PerAddress => max_per_address,
                };
                self.refused(why, ip, limit);
                Err(why)
            }
        }
    }

    fn refused(&self, why: Refusal, ip: IpAddr, limit: usize) {
        crate::metrics::get()
            .connections_refused
            .get_or_create(&crate::metrics::LimitLabels { limit: why.key() })
            .inc();
        let now = Instant::now();
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let q = &mut warned[why as usize];
        if q.last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            q.unsaid += 1;
            return;
        }
        let unsaid = std::mem::take(&mut q.unsaid);
        q.last = Some(now);
        drop(warned);
        tracing::warn!(
            peer = %ip,
            limit,
            refused_since_last_warning = unsaid,
            "server.{} reached; connection closed before TLS",
            why.key()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_address_and_come_back() {
        let a = Arc::new(Admission::default());
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        let t1 = a.admit(one, 10, 2).unwrap();
        let t2 = a.admit(one, 10, 2).unwrap();
        assert_eq!(a.admit(one, 10, 2).err(), Some(Refusal::PerAddress));
        let t3 = a.admit(two, 10, 2).unwrap();
        assert_eq!(a.addresses().get(&"127.0.0.2".parse().unwrap()), Some(&1));
        assert_eq!(a.admit(two, 3, 2).err(), Some(Refusal::Total));
        drop(t1);
        let t4 = a.admit(one, 10, 2).unwrap();
        drop((t2, t3, t4));
        assert_eq!(a.open.load(Ordering::Relaxed), 0);
        assert!(a.addresses().is_empty());
    }
}
