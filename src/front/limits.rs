//! Caps on open control connections (SPEC §2, §11): all clients together
//! (`max_sessions`), per client address (`max_sessions_per_ip`), and of those
//! the ones not logged in yet (`max_unauthenticated_per_ip`), so that
//! connections that never log in cannot fill the caps.
//!
//! A [`SessionSlot`] holds one place until it is dropped; it moves from "not
//! logged in" to "logged in" once ([`SessionSlot::logged_in`]).
//!
//! A "client address" is [`client_key`]: an IPv4 address, or an IPv6 /64
//! prefix (what one customer network gets, and what an attacker can rotate
//! addresses within).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    by_ip: HashMap<IpAddr, PerIp>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PerIp {
    open: u32,
    unauthenticated: u32,
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

impl SessionLimits {
    pub fn new(max_total: u32, max_per_ip: u32, max_unauthenticated_per_ip: u32) -> Arc<Self> {
        Arc::new(SessionLimits {
            max_total,
            max_per_ip,
            max_unauthenticated_per_ip,
            open: Mutex::default(),
        })
    }

    /// A place for a new connection from `ip`, or the cap that is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Arc<SessionSlot>, Cap> {
        let key = client_key(ip);
        let mut open = self.open.lock().expect("session lock");
        if open.total >= self.max_total {
            return Err(Cap::Total);
        }
        let mine = open.by_ip.entry(key).or_default();
        let refused = if mine.open >= self.max_per_ip {
            Some(Cap::PerIp)
        } else if mine.unauthenticated >= self.max_unauthenticated_per_ip {
            Some(Cap::Unauthenticated)
        } else {
            None
        };
        if let Some(cap) = refused {
            if mine.open == 0 {
                open.by_ip.remove(&key);
            }
            return Err(cap);
        }
        mine.open += 1;
        mine.unauthenticated += 1;
        open.total += 1;
        metrics::SESSIONS_ACTIVE.inc();
        Ok(Arc::new(SessionSlot {
            limits: self.clone(),
            key,
            logged_in: AtomicBool::new(false),
        }))
    }

    /// Can no new session be opened (the total cap is reached)?
    pub fn full(&self) -> bool {
        self.open.lock().expect("session lock").total >= self.max_total
    }

    /// Open connections, and the cap on them.
    pub fn usage(&self) -> (u32, u32) {
        (
            self.open.lock().expect("session lock").total,
            self.max_total,
        )
    }
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct SessionSlot {
    limits: Arc<SessionLimits>,
    key: IpAddr,
    logged_in: AtomicBool,
}

impl SessionSlot {
    /// The connection has logged in: it no longer counts as waiting to.
    pub fn logged_in(&self) {
        if self.logged_in.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut open = self.limits.open.lock().expect("session lock");
        if let Some(mine) = open.by_ip.get_mut(&self.key) {
            mine.unauthenticated = mine.unauthenticated.saturating_sub(1);
        }
    }

    pub fn is_logged_in(&self) -> bool {
        self.logged_in.load(Ordering::Acquire)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("session lock");
        open.total -= 1;
        if let Some(mine) = open.by_ip.get_mut(&self.key) {
            mine.open -= 1;
            if !self.logged_in.load(Ordering::Acquire) {
                mine.unauthenticated = mine.unauthenticated.saturating_sub(1);
            }
            if mine.open == 0 {
                open.by_ip.remove(&self.key);
            }
        }
        metrics::SESSIONS_ACTIVE.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_in_all() {
        let limits = SessionLimits::new(3, 2, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Cap::PerIp);
        let b1 = limits.admit(b).unwrap();
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
        let a: IpAddr = "192.0.2.1".parse().unwrap();
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
    fn client_keys() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key("::1"), "::");
    }
}
