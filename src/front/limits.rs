//! Caps on open control connections (SPEC §2, §11): all clients together
//! (`max_sessions`), per client address (`max_sessions_per_ip`), and of those
//! the ones not logged in yet (`max_unauthenticated_per_ip`), so that
//! connections that never log in cannot fill the caps.
//!
//! When all `max_sessions` places are taken, a newcomer takes the place of a
//! connection that has not logged in, from the address holding the most of
//! them (its oldest), provided that address holds more than the newcomer's
//! own: connections that only wait, spread over many addresses, cannot shut
//! customers out, and a customer's own connection, alone from its address,
//! is the last to go. The displaced connection is closed
//! ([`SessionSlot::displaced`]). Only logged-in sessions can fill the server.
//!
//! A [`SessionSlot`] holds one place until it is dropped; it moves from "not
//! logged in" to "logged in" once ([`SessionSlot::logged_in`]).
//!
//! A "client address" is [`client_key`]: an IPv4 address, or an IPv6 /64
//! prefix (what one customer network gets, and what an attacker can rotate
//! addresses within).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::metrics;

/// The address that caps and the login guard count by: IPv4 as is (also
/// when it comes IPv4-mapped), IPv6 by its /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

#[derive(Debug)]
pub struct SessionLimits {
    max_total: u32,
    max_per_ip: u32,
    max_unauthenticated_per_ip: u32,
    open: Mutex<Open>,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    by_ip: HashMap<IpAddr, PerIp>,
}

#[derive(Debug, Default)]
struct PerIp {
    open: u32,
    /// Connections not logged in yet, oldest first: (slot id, its closer).
    waiting: VecDeque<(u64, CancellationToken)>,
}

/// Which cap refused a connection (the `cap` label of the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Total,
    PerIp,
    Unauthenticated,
}

impl Cap {
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::Total => "total",
            Cap::PerIp => "per_ip",
            Cap::Unauthenticated => "unauthenticated_per_ip",
        }
    }

    /// The 421 line sent before closing the connection.
    pub fn reply(self) -> &'static [u8] {
        match self {
            Cap::Total => b"421 Too many connections, try again later.\r\n",
            Cap::PerIp => b"421 Too many connections from your address, try again later.\r\n",
            Cap::Unauthenticated => {
                b"421 Too many connections from your address waiting to log in, try again later.\r\n"
            }
        }
    }
}

impl Open {
    /// Frees the place of the oldest waiting connection of the address that
    /// holds the most waiting connections, if it holds more than `than`.
    fn displace(&mut self, than: usize) -> bool {
        let Some((&ip, _)) = self
            .by_ip
            .iter()
            .filter(|(_, p)| p.waiting.len() > than)
            .max_by_key(|(_, p)| p.waiting.len())
        else {
            return false;
        };
        let (_, closer) = self
            .by_ip
            .get_mut(&ip)
            .and_then(|mine| mine.waiting.pop_front())
            .expect("address has waiting connections");
        closer.cancel();
        self.release(ip);
        metrics::SESSIONS_DISPLACED.inc();
        true
    }

    /// Gives back one of `key`'s places.
    fn release(&mut self, key: IpAddr) {
        self.total -= 1;
        if let Some(mine) = self.by_ip.get_mut(&key) {
            mine.open -= 1;
            if mine.open == 0 {
                self.by_ip.remove(&key);
            }
        }
        metrics::SESSIONS_ACTIVE.dec();
    }
}

impl SessionLimits {
    pub fn new(max_total: u32, max_per_ip: u32, max_unauthenticated_per_ip: u32) -> Arc<Self> {
        Arc::new(SessionLimits {
            max_total,
            max_per_ip,
            max_unauthenticated_per_ip,
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
        })
    }

    /// A place for a new connection from `ip`, or the cap that is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Arc<SessionSlot>, Cap> {
        let key = client_key(ip);
        let mut open = self.open.lock().expect("session lock");
        let (mine_open, mine_waiting) = open
            .by_ip
            .get(&key)
            .map_or((0, 0), |p| (p.open, p.waiting.len()));
        if mine_open >= self.max_per_ip {
            return Err(Cap::PerIp);
        }
        if mine_waiting >= self.max_unauthenticated_per_ip as usize {
            return Err(Cap::Unauthenticated);
        }
        if open.total >= self.max_total && !open.displace(mine_waiting) {
            return Err(Cap::Total);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let closer = CancellationToken::new();
        let mine = open.by_ip.entry(key).or_default();
        mine.open += 1;
        mine.waiting.push_back((id, closer.clone()));
        open.total += 1;
        metrics::SESSIONS_ACTIVE.inc();
        Ok(Arc::new(SessionSlot {
            limits: self.clone(),
            key,
            id,
            closer,
            logged_in: AtomicBool::new(false),
        }))
    }

    /// Are the caps full: every place taken? A newcomer from an address
    /// holding fewer waiting connections than the busiest one may still get in
    /// by displacing one, but one from that address (or from the only
    /// address, as on a single test machine) cannot, and an operator wants to
    /// know the server is at its cap either way (SPEC §10: 503 "caps full").
    pub fn full(&self) -> bool {
        self.open.lock().expect("session lock").total >= self.max_total
    }

    /// Open connections, those not logged in yet, and the cap on all.
    pub fn usage(&self) -> (u32, usize, u32) {
        let open = self.open.lock().expect("session lock");
        let waiting = open.by_ip.values().map(|p| p.waiting.len()).sum();
        (open.total, waiting, self.max_total)
    }
}

/// One open connection, counted until dropped (or displaced).
#[derive(Debug)]
pub struct SessionSlot {
    limits: Arc<SessionLimits>,
    key: IpAddr,
    id: u64,
    /// Cancelled when the place was given to a newcomer.
    closer: CancellationToken,
    logged_in: AtomicBool,
}

impl SessionSlot {
    /// The connection has logged in: it no longer counts as waiting to, and
    /// can no longer be displaced.
    pub fn logged_in(&self) {
        if self.logged_in.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut open = self.limits.open.lock().expect("session lock");
        if let Some(mine) = open.by_ip.get_mut(&self.key) {
            mine.waiting.retain(|(id, _)| *id != self.id);
        }
    }

    pub fn is_logged_in(&self) -> bool {
        self.logged_in.load(Ordering::Acquire)
    }

    /// Resolves when the connection's place was given to a newcomer.
    pub async fn displaced(&self) {
        self.closer.cancelled().await
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("session lock");
        // Asked under the lock, which displacement holds while it cancels, so
        // that a slot displaced while it is being dropped gives its place
        // back once.
        if self.closer.is_cancelled() {
            return; // its place was already given away
        }
        if let Some(mine) = open.by_ip.get_mut(&self.key) {
            mine.waiting.retain(|(id, _)| *id != self.id);
        }
        open.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_count_per_address_and_in_all() {
        let limits = SessionLimits::new(3, 2, 2);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let a1 = limits.admit(a).unwrap();
        let a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Cap::PerIp);
        for s in [&a1, &a2] {
            s.logged_in();
        }
        let b1 = limits.admit(b).unwrap();
        b1.logged_in();
        assert_eq!(limits.admit(b).unwrap_err(), Cap::Total);
        assert!(limits.full());
        drop(a1);
        let a3 = limits.admit(a).unwrap();
        drop((a2, a3, b1));
        assert_eq!(limits.usage().0, 0);
        assert!(limits.open.lock().unwrap().by_ip.is_empty());
    }

    #[test]
    fn connections_waiting_to_log_in_have_their_own_cap() {
        let limits = SessionLimits::new(10, 5, 2);
        let a = ip("192.0.2.1");
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Cap::Unauthenticated);
        a1.logged_in();
        a1.logged_in();
        let _a3 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Cap::Unauthenticated);
        drop(a1);
        let _a4 = limits.admit(a).unwrap_err();
        assert_eq!(limits.usage().0, 2);
    }

    #[test]
    fn a_newcomer_displaces_the_oldest_waiting_connection_of_the_busiest_address() {
        let limits = SessionLimits::new(4, 4, 3);
        let (attacker, other, customer) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        let a: Vec<_> = (0..3).map(|_| limits.admit(attacker).unwrap()).collect();
        let o = limits.admit(other).unwrap();
        assert!(
            limits.full(),
            "every place is taken, if only by waiting connections"
        );
        let c = limits.admit(customer).unwrap();
        assert!(a[0].closer.is_cancelled(), "the attacker's oldest goes");
        assert!(!a[1].closer.is_cancelled() && !o.closer.is_cancelled());
        assert_eq!(limits.usage().0, 4);
        // Equal holdings: nobody is displaced for an address that has as many.
        let a2 = limits.admit(attacker).unwrap_err();
        assert_eq!(a2, Cap::Total);
        // The displaced slot's drop does not count twice.
        drop(a);
        assert_eq!(limits.usage().0, 2);
        // Logged-in sessions are never displaced.
        c.logged_in();
        o.logged_in();
        let x = limits.admit(ip("192.0.2.9")).unwrap();
        let y = limits.admit(ip("192.0.2.10")).unwrap();
        x.logged_in();
        y.logged_in();
        assert!(limits.full());
        assert_eq!(limits.admit(ip("192.0.2.11")).unwrap_err(), Cap::Total);
    }

    #[test]
    fn a_slot_dropped_while_displaced_gives_its_place_back_once() {
        // Many addresses racing for few places: each newcomer displaces a
        // waiting connection while others are being dropped.
        let limits = SessionLimits::new(4, 8, 8);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let limits = &limits;
                s.spawn(move || {
                    let mut held = VecDeque::new();
                    for i in 0..50_000u32 {
                        let addr = IpAddr::from([10, t, (i % 7) as u8, 1]);
                        if let Ok(slot) = limits.admit(addr) {
                            if i % 5 == 0 {
                                slot.logged_in();
                            }
                            held.push_back(slot);
                        }
                        if held.len() > 2 {
                            held.pop_front();
                        }
                    }
                });
            }
        });
        assert_eq!(limits.usage(), (0, 0, 4));
        assert!(limits.open.lock().unwrap().by_ip.is_empty());
    }

    #[test]
    fn client_keys() {
        let key = |s: &str| client_key(ip(s)).to_string();
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key("::1"), "::");
    }
}
