//! The login guard (SPEC §2): password guessing from one client address is
//! refused for a while.
//!
//! Invariants:
//! - Failures are counted per client address ([`client_key`]) over all
//!   logins, within `window_secs`; the `max_failures`-th bans the address for
//!   `ban_secs`. A success does not clear them (else one right login for an
//!   account of the attacker's own would reset the count for another's).
//! - The check and the count are one step: a verification starts only while
//!   the failures so far plus the verifications in progress stay under
//!   `max_failures`, so parallel attempts get no more than `max_failures`
//!   password verifications in all. Attempts beyond wait for a turn (a
//!   customer's eight parallel logins all go through) and are refused once a
//!   ban starts.
//! - Memory is bounded: at most [`MAX_TRACKED`] addresses; beyond it stale
//!   entries go first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::LoginGuardConfig;
use crate::front::limits::client_key;

/// Tracked addresses at most, so that a spray of addresses cannot grow memory
/// without bound.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug)]
pub struct LoginGuard {
    max_failures: usize,
    window: Duration,
    pub(crate) ban: Duration,
    by_ip: Mutex<HashMap<IpAddr, Record>>,
    /// Woken whenever a verification ends, for attempts waiting their turn.
    turn: Notify,
}

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    verifying: usize,
    banned_until: Option<Instant>,
}

impl Record {
    fn forget_before(&mut self, now: Instant, window: Duration) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
    }

    fn stale(&self, now: Instant, window: Duration) -> bool {
        self.verifying == 0
            && self.banned_until.is_none_or(|until| now >= until)
            && self
                .failures
                .back()
                .is_none_or(|t| now.duration_since(*t) >= window)
    }
}

/// A password verification the guard allowed; its outcome must be reported.
/// Dropped without one, it counts as a failure.
#[derive(Debug)]
pub struct Attempt {
    guard: Arc<LoginGuard>,
    ip: IpAddr,
    done: bool,
}

impl LoginGuard {
    pub fn new(config: &LoginGuardConfig) -> Arc<LoginGuard> {
        Arc::new(LoginGuard {
            max_failures: config.max_failures.max(1) as usize,
            window: Duration::from_secs(config.window_secs),
            ban: Duration::from_secs(config.ban_secs),
            by_ip: Mutex::default(),
            turn: Notify::new(),
        })
    }

    /// A verification for a login from `ip`, or `None` when the address is
    /// banned. Waits while the verifications in progress could still reach
    /// `max_failures`.
    pub async fn begin(self: &Arc<Self>, ip: IpAddr) -> Option<Attempt> {
        let ip = client_key(ip);
        loop {
            // Registered before the check, so a turn freed in between is seen.
            let turn = self.turn.notified();
            match self.try_begin(ip, Instant::now()) {
                Some(true) => {
                    return Some(Attempt {
                        guard: self.clone(),
                        ip,
                        done: false,
                    });
                }
                Some(false) => return None,
                None => turn.await,
            }
        }
    }

    /// `Some(true)`: verify; `Some(false)`: banned; `None`: wait for a turn.
    fn try_begin(&self, ip: IpAddr, now: Instant) -> Option<bool> {
        let mut map = self.by_ip.lock().expect("guard lock");
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, r| !r.stale(now, window));
        }
        let record = map.entry(ip).or_default();
        if record.banned_until.is_some_and(|until| now < until) {
            return Some(false);
        }
        record.forget_before(now, self.window);
        if record.failures.len() + record.verifying >= self.max_failures {
            return None;
        }
        record.verifying += 1;
        Some(true)
    }

    /// Ends a verification; `true` when its failure starts a ban.
    fn end(&self, ip: IpAddr, failed: bool, now: Instant) -> bool {
        let mut banned = false;
        {
            let mut map = self.by_ip.lock().expect("guard lock");
            let record = map.entry(ip).or_default();
            record.verifying = record.verifying.saturating_sub(1);
            if failed {
                record.forget_before(now, self.window);
                record.failures.push_back(now);
                if record.failures.len() >= self.max_failures {
                    record.failures.clear();
                    record.banned_until = Some(now + self.ban);
                    banned = true;
                }
            }
        }
        self.turn.notify_waiters();
        banned
    }

    /// Is `ip` banned now?
    pub fn banned(&self, ip: IpAddr) -> bool {
        let map = self.by_ip.lock().expect("guard lock");
        map.get(&client_key(ip))
            .and_then(|r| r.banned_until)
            .is_some_and(|until| Instant::now() < until)
    }
}

impl Attempt {
    pub fn succeeded(mut self) {
        self.done = true;
        self.guard.end(self.ip, false, Instant::now());
    }

    /// Counts the failure; `true` when it starts a ban.
    pub fn failed(mut self) -> bool {
        self.done = true;
        self.guard.end(self.ip, true, Instant::now())
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.guard.end(self.ip, true, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_failures: u32, window_secs: u64, ban_secs: u64) -> Arc<LoginGuard> {
        LoginGuard::new(&LoginGuardConfig {
            max_failures,
            window_secs,
            ban_secs,
        })
    }

    #[test]
    fn a_ban_starts_at_max_failures_and_expires() {
        let g = guard(3, 60, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(g.try_begin(ip, t0), Some(true));
            assert_eq!(g.end(ip, true, t0 + Duration::from_secs(i)), i == 2);
        }
        assert_eq!(g.try_begin(ip, t0 + Duration::from_secs(3)), Some(false));
        assert_eq!(g.try_begin(other, t0 + Duration::from_secs(3)), Some(true));
        assert_eq!(g.try_begin(ip, t0 + Duration::from_secs(13)), Some(true));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let g = guard(2, 5, 10);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let t0 = Instant::now();
        g.try_begin(ip, t0);
        assert!(!g.end(ip, true, t0));
        g.try_begin(ip, t0 + Duration::from_secs(6));
        assert!(!g.end(ip, true, t0 + Duration::from_secs(6)));
        g.try_begin(ip, t0 + Duration::from_secs(7));
        assert!(g.end(ip, true, t0 + Duration::from_secs(7)));
    }

    #[test]
    fn a_success_does_not_clear_the_failures() {
        let g = guard(3, 60, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..2 {
            g.try_begin(ip, t0);
            g.end(ip, true, t0);
        }
        g.try_begin(ip, t0);
        g.end(ip, false, t0);
        g.try_begin(ip, t0);
        assert!(
            g.end(ip, true, t0),
            "the third failure bans, success or not between"
        );
    }

    #[test]
    fn verifications_in_progress_count_against_the_limit() {
        let g = guard(3, 60, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.try_begin(ip, t0), Some(true));
        }
        assert_eq!(g.try_begin(ip, t0), None, "a fourth waits for a turn");
        g.end(ip, false, t0);
        assert_eq!(g.try_begin(ip, t0), Some(true), "a success frees a turn");
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_a_record() {
        let g = guard(2, 60, 10);
        let t0 = Instant::now();
        let a = client_key("2001:db8:1:2::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:ffff::9".parse().unwrap());
        g.try_begin(a, t0);
        g.end(a, true, t0);
        g.try_begin(b, t0);
        assert!(g.end(b, true, t0));
    }

    #[tokio::test]
    async fn parallel_attempts_get_max_failures_verifications_in_all() {
        let g = guard(5, 60, 10);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let verified = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (g, verified) = (g.clone(), verified.clone());
            tasks.push(tokio::spawn(async move {
                if let Some(attempt) = g.begin(ip).await {
                    verified.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    attempt.failed();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(verified.load(std::sync::atomic::Ordering::SeqCst), 5);
        assert!(g.banned(ip));
    }
}
