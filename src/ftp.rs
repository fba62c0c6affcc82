//! The FTP/FTPS front: accounts, homes and atomic landing (SPEC §2).
//!
//! - [`Accounts`] is both the authenticator (argon2id, `allowed_ips`, TLS required
//!   globally or per account) and the user-detail provider, so a login can never
//!   fall back to libunftp's anonymous authenticator, and every user it returns
//!   has a home folder (`<spool>/<login>`): without one the file back-end would
//!   show the whole spool.
//! - [`Landing`] is the storage back-end: the stock file-system back-end for
//!   listing, download and delete inside the home, and its own upload path that
//!   writes `.<name>.part` in 256 KiB chunks (a few queued for a blocking
//!   writer, so the network is read while the disk writes), caps the size at
//!   `max_archive_bytes`, drops a transfer that stalls for `idle_timeout_secs`,
//!   and renames to `<name>` only when the transfer ended — so the poller, which
//!   ignores hidden files, never sees a partial file. Only `*.zip` names at the
//!   home's top level are accepted.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use std::io::Write;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;
use unftp_core::auth::{
    AuthenticationError, Authenticator, ChannelEncryptionState, Credentials, Principal, UserDetail,
    UserDetailError, UserDetailProvider,
};
use unftp_core::storage::{self, ErrorKind, Metadata, StorageBackend};
use unftp_sbe_fs::Filesystem;

use crate::config::Live;
use crate::metrics;

/// A logged-in account.
#[derive(Debug, Clone)]
pub struct FtpUser {
    pub login: String,
    /// Absolute path of `<spool>/<login>`.
    pub home: PathBuf,
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.login)
    }
}

impl UserDetail for FtpUser {
    fn home(&self) -> Option<&Path> {
        Some(&self.home)
    }
}

/// The configured accounts, as authenticator and user-detail provider. They are
/// read from the live configuration at every login, so a reload (SIGHUP) applies
/// to the next login while open sessions go on.
#[derive(Debug)]
pub struct Accounts {
    config: Arc<Live>,
    /// Absolute spool folder.
    spool: PathBuf,
    guard: LoginGuard,
    /// Password verifications running ([`crate::password::parallel`] at most).
    verifying: tokio::sync::Semaphore,
}

impl Accounts {
    pub fn new(config: Arc<Live>, spool: PathBuf) -> Accounts {
        let guard = LoginGuard::new(&config.get().ftp.login_guard);
        Accounts {
            config,
            spool,
            guard,
            verifying: tokio::sync::Semaphore::new(crate::password::parallel()),
        }
    }

    async fn check(&self, username: &str, creds: &Credentials) -> Result<(), AuthenticationError> {
        let config = self.config.get();
        let account = config
            .account(username)
            .ok_or(AuthenticationError::BadUser)?;
        let tls_required =
            account.require_tls || config.ftp.tls.as_ref().is_some_and(|tls| tls.require);
        if tls_required && creds.command_channel_security == ChannelEncryptionState::Plaintext {
            return Err(AuthenticationError::new(format!(
                "account {username} must log in over TLS (AUTH TLS)"
            )));
        }
        if !account.allowed_ips.is_empty()
            && !account
                .allowed_ips
                .iter()
                .any(|net| net.contains(&creds.source_ip))
        {
            return Err(AuthenticationError::IpDisallowed);
        }
        let password = creds.password.clone().unwrap_or_default();
        let hash = account.password_hash.clone();
        // A login waits for one of as many turns as there are cores: a burst
        // of logins (200 sessions at once) then takes as long as before but
        // holds 2 × 19 MiB of argon2 memory instead of 200 ×.
        let Ok(_turn) = self.verifying.acquire().await else {
            return Err(AuthenticationError::BadPassword);
        };
        // argon2 is deliberately slow: keep it off the async executor.
        let ok = tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
            .await
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(AuthenticationError::BadPassword)
        }
    }
}

/// Refuses an IP for `ban_secs` after `max_failures` failed logins within
/// `window_secs` — even with the right password, so a ban cannot be probed.
#[derive(Debug)]
struct LoginGuard {
    max_failures: usize,
    window: Duration,
    ban: Duration,
    by_ip: std::sync::Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Default)]
struct Failures {
    recent: VecDeque<Instant>,
    banned_until: Option<Instant>,
}

/// Tracked addresses at most; beyond it stale entries are dropped first, so a
/// spray of addresses cannot grow memory without bound.
const GUARD_MAX_IPS: usize = 100_000;

impl LoginGuard {
    fn new(config: &crate::config::LoginGuardConfig) -> LoginGuard {
        LoginGuard {
            max_failures: config.max_failures as usize,
            window: Duration::from_secs(config.window_secs),
            ban: Duration::from_secs(config.ban_secs),
            by_ip: Default::default(),
        }
    }

    fn banned(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self.by_ip.lock().expect("guard lock");
        map.get(&ip)
            .and_then(|f| f.banned_until)
            .is_some_and(|until| now < until)
    }

    /// Records a failure; `true` when it starts a ban.
    fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.by_ip.lock().expect("guard lock");
        if map.len() >= GUARD_MAX_IPS && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, f| {
                f.banned_until.is_some_and(|u| now < u)
                    || f.recent
                        .back()
                        .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let entry = map.entry(ip).or_default();
        while entry
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            entry.recent.pop_front();
        }
        entry.recent.push_back(now);
        if entry.recent.len() >= self.max_failures {
            entry.recent.clear();
            entry.banned_until = Some(now + self.ban);
            return true;
        }
        false
    }

    fn succeeded(&self, ip: IpAddr) {
        self.by_ip.lock().expect("guard lock").remove(&ip);
    }
}

#[async_trait]
impl Authenticator for Accounts {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let ip = creds.source_ip;
        if self.guard.banned(ip, Instant::now()) {
            metrics::LOGINS_REFUSED_BANNED.inc();
            tracing::warn!(user = username, %ip, "login refused: address banned");
            return Err(AuthenticationError::BadPassword);
        }
        match self.check(username, creds).await {
            Ok(()) => {
                self.guard.succeeded(ip);
                Ok(Principal {
                    username: username.to_owned(),
                })
            }
            Err(e) => {
                metrics::LOGIN_FAILURES.inc();
                tracing::warn!(user = username, %ip, reason = %e, "login failed");
                if self.guard.failed(ip, Instant::now()) {
                    metrics::LOGIN_BANS.inc();
                    tracing::warn!(%ip, ban_secs = self.guard.ban.as_secs(), "address banned");
                }
                // The same reply for every reason: nothing to probe.
                Err(AuthenticationError::BadPassword)
            }
        }
    }
}

#[async_trait]
impl UserDetailProvider for Accounts {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        let config = self.config.get();
        let account = config
            .account(&principal.username)
            .ok_or_else(|| UserDetailError::new("no such account"))?;
        Ok(FtpUser {
            login: account.login.clone(),
            home: self.spool.join(&account.login),
        })
    }
}

/// Caps on open control connections, all clients together and per client
/// address. A [`SessionSlot`] holds one place until it is dropped.
#[derive(Debug)]
pub struct SessionLimits {
    max_total: u32,
    max_per_ip: u32,
    open: std::sync::Mutex<(u32, HashMap<IpAddr, u32>)>,
}

/// Which cap refused a connection (the `cap` label of the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Total,
    PerIp,
}

impl Cap {
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::Total => "total",
            Cap::PerIp => "per_ip",
        }
    }
}

impl SessionLimits {
    pub fn new(max_total: u32, max_per_ip: u32) -> Arc<SessionLimits> {
        Arc::new(SessionLimits {
            max_total,
            max_per_ip,
            open: Default::default(),
        })
    }

    /// A place for a connection from `ip`, or the cap that is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SessionSlot, Cap> {
        let mut open = self.open.lock().expect("session lock");
        let (total, by_ip) = &mut *open;
        if *total >= self.max_total {
            return Err(Cap::Total);
        }
        let mine = by_ip.entry(ip).or_default();
        if *mine >= self.max_per_ip {
            return Err(Cap::PerIp);
        }
        *mine += 1;
        *total += 1;
        metrics::SESSIONS_ACTIVE.inc();
        Ok(SessionSlot {
            limits: self.clone(),
            ip,
        })
    }
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct SessionSlot {
    limits: Arc<SessionLimits>,
    ip: IpAddr,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("session lock");
        let (total, by_ip) = &mut *open;
        *total -= 1;
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
        metrics::SESSIONS_ACTIVE.dec();
    }
}

/// The storage back-end; see the module documentation.
#[derive(Debug)]
pub struct Landing {
    inner: Filesystem,
    max_bytes: u64,
    stall: Duration,
    /// Poked when an upload has landed, to wake the poller.
    landed: Arc<Notify>,
    /// Uploads in progress, so that shutdown can wait for them.
    uploads: Arc<AtomicUsize>,
    /// fsync before the upload is acknowledged (`ftp.sync_uploads`).
    sync: bool,
}

impl Landing {
    pub fn new(
        spool: &Path,
        max_bytes: u64,
        stall: Duration,
        landed: Arc<Notify>,
        uploads: Arc<AtomicUsize>,
        sync: bool,
    ) -> std::io::Result<Landing> {
        Ok(Landing {
            inner: Filesystem::new(spool)?,
            max_bytes,
            stall,
            landed,
            uploads,
            sync,
        })
    }
}

/// Bytes of an upload gathered before each write to disk.
const UPLOAD_CHUNK: usize = 1 << 18;

/// Chunks of an upload waiting for the disk, at most (2 MiB). With one (the
/// double buffer this replaced), each `sync_file_range` that waited for a
/// full device queue stopped the reading: 200 MB uploads with fsync went
/// 786–1,096 → 1,287–1,432 MB/s in rotating runs against the same server
/// with one (tools/bench_ftp.sh's method). An upload in progress holds at
/// most IN_FLIGHT + 2 chunks (2.5 MiB; the kernel's socket buffer may hold
/// a few MiB more), so `max_sessions` bounds the total.
const IN_FLIGHT: usize = 8;

/// The result of a blocking write task.
async fn joined<T>(task: tokio::task::JoinHandle<std::io::Result<T>>) -> std::io::Result<T> {
    task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    joined(tokio::task::spawn_blocking(work)).await
}

/// An upload in progress: counted, and its part file removed unless it
/// landed — also when the session is dropped mid-transfer (shutdown, abort).
struct Upload<'a> {
    part: PathBuf,
    landed: bool,
    uploads: &'a AtomicUsize,
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        self.uploads.fetch_sub(1, AtomicOrdering::AcqRel);
        if !self.landed {
            // One unlink; not worth a trip to the blocking pool.
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

fn refuse(kind: ErrorKind, message: String) -> storage::Error {
    storage::Error::new(kind, message)
}

/// The file name of an upload if it may land: one `*.zip` name at the top of
/// the home, not hidden.
fn landing_name(path: &Path) -> Result<String, storage::Error> {
    let mut parts = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir));
    let (Some(Component::Normal(name)), None) = (parts.next(), parts.next()) else {
        return Err(refuse(
            ErrorKind::FileNameNotAllowedError,
            format!(
                "{}: upload archives to your home folder only",
                path.display()
            ),
        ));
    };
    let name = name.to_string_lossy().into_owned();
    if name.starts_with('.') || !name.ends_with(".zip") {
        return Err(refuse(
            ErrorKind::FileNameNotAllowedError,
            format!("{name}: only <login>_<YYYYMMDDhhmmss>.zip archives are accepted"),
        ));
    }
    Ok(name)
}

#[async_trait]
impl StorageBackend<FtpUser> for Landing {
    type Metadata = <Filesystem as StorageBackend<FtpUser>>::Metadata;

    fn enter(&mut self, user: &FtpUser) -> std::io::Result<()> {
        StorageBackend::<FtpUser>::enter(&mut self.inner, user)
    }

    async fn metadata<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Self::Metadata> {
        self.inner.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Vec<storage::Fileinfo<PathBuf, Self::Metadata>>>
    where
        Self::Metadata: Metadata,
    {
        let all = self.inner.list(user, path).await?;
        // Uploads in progress (hidden part files) are nobody's business.
        Ok(all
            .into_iter()
            .filter(|f| {
                !f.path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect())
    }

    async fn get<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> storage::Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        self.inner.get(user, path, start_pos).await
    }

    async fn put<
        P: AsRef<Path> + Send + fmt::Debug,
        R: AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &FtpUser,
        mut input: R,
        path: P,
        start_pos: u64,
    ) -> storage::Result<u64> {
        if start_pos != 0 {
            return Err(refuse(
                ErrorKind::CommandNotImplemented,
                "resumed uploads are not supported: upload the whole archive".into(),
            ));
        }
        let name = landing_name(path.as_ref())?;
        let part = user.home.join(format!(".{name}.part"));
        let target = user.home.join(&name);
        self.uploads.fetch_add(1, AtomicOrdering::AcqRel);
        let mut upload = Upload {
            part: part.clone(),
            landed: false,
            uploads: &self.uploads,
        };
        let part_path = part.clone();
        let file = blocking(move || std::fs::File::create(part_path)).await?;
        let mut total: u64 = 0;
        let sync = self.sync;
        let result: storage::Result<()> = async {
            // One blocking task writes the chunks the network delivers, with
            // up to IN_FLIGHT of them queued: a moment when the disk is slower
            // (its queue full, a journal commit) does not stop the reading.
            let (to_disk, mut queued) = tokio::sync::mpsc::channel::<Vec<u8>>(IN_FLIGHT);
            let (give_back, mut spare) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            let writer = tokio::task::spawn_blocking(move || {
                let mut file = file;
                let mut offset = 0;
                while let Some(chunk) = queued.blocking_recv() {
                    file.write_all(&chunk)?;
                    if sync {
                        // The disk works while the network delivers the rest.
                        crate::writeback::start(&file, offset, chunk.len() as u64);
                    }
                    offset += chunk.len() as u64;
                    // Reused for a later chunk (or dropped with the upload).
                    let _ = give_back.send(chunk);
                }
                Ok(file)
            });
            let mut ended = false;
            while !ended {
                let mut buf = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(UPLOAD_CHUNK));
                buf.clear();
                while buf.len() < UPLOAD_CHUNK {
                    let n = match tokio::time::timeout(self.stall, input.read_buf(&mut buf)).await {
                        Ok(read) => read?,
                        Err(_) => {
                            return Err(refuse(
                                ErrorKind::ConnectionClosed,
                                format!("{name}: transfer stalled"),
                            ));
                        }
                    };
                    if n == 0 {
                        ended = true;
                        break;
                    }
                    total += n as u64;
                    if total > self.max_bytes {
                        return Err(refuse(
                            ErrorKind::ExceededStorageAllocationError,
                            format!("{name}: archives are limited to {} bytes", self.max_bytes),
                        ));
                    }
                }
                if !buf.is_empty() && to_disk.send(buf).await.is_err() {
                    // The writer stopped on an error: its result says which.
                    break;
                }
            }
            drop(to_disk);
            let f = joined(writer).await?;
            if sync {
                // Durable before the 226 reply and before the poller sees it.
                blocking(move || f.sync_all()).await?;
            }
            Ok(())
        }
        .await;
        result?;
        tokio::fs::rename(&part, &target).await?;
        upload.landed = true;
        drop(upload);
        self.landed.notify_one();
        Ok(total)
    }

    async fn del<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        self.inner.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        Err(refuse(
            ErrorKind::PermissionDenied,
            format!("{}: folders cannot be created", path.as_ref().display()),
        ))
    }

    async fn rename<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        from: P,
        _to: P,
    ) -> storage::Result<()> {
        Err(refuse(
            ErrorKind::PermissionDenied,
            format!(
                "{}: renaming is not supported; upload under the final name",
                from.as_ref().display()
            ),
        ))
    }

    async fn rmd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        Err(refuse(
            ErrorKind::PermissionDenied,
            format!("{}: folders cannot be removed", path.as_ref().display()),
        ))
    }

    async fn cwd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        self.inner.cwd(user, path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_starts_at_max_failures_and_expires() {
        let guard = LoginGuard::new(&crate::config::LoginGuardConfig {
            max_failures: 3,
            window_secs: 60,
            ban_secs: 10,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(!guard.failed(ip, t0));
        assert!(!guard.failed(ip, t0 + Duration::from_secs(1)));
        assert!(!guard.banned(ip, t0 + Duration::from_secs(2)));
        assert!(guard.failed(ip, t0 + Duration::from_secs(2)));
        assert!(guard.banned(ip, t0 + Duration::from_secs(3)));
        assert!(!guard.banned(other, t0 + Duration::from_secs(3)));
        assert!(!guard.banned(ip, t0 + Duration::from_secs(13)));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let guard = LoginGuard::new(&crate::config::LoginGuardConfig {
            max_failures: 2,
            window_secs: 5,
            ban_secs: 10,
        });
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let t0 = Instant::now();
        assert!(!guard.failed(ip, t0));
        assert!(!guard.failed(ip, t0 + Duration::from_secs(6)));
        assert!(guard.failed(ip, t0 + Duration::from_secs(7)));
    }

    #[test]
    fn session_caps_count_per_address_and_in_all() {
        let limits = SessionLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Cap::PerIp);
        let b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Cap::Total);
        drop(a1);
        let a3 = limits.admit(a).unwrap();
        drop((a2, a3, b1));
        assert_eq!(limits.open.lock().unwrap().0, 0);
        assert!(limits.open.lock().unwrap().1.is_empty());
    }

    #[test]
    fn only_top_level_zip_names_land() {
        assert_eq!(
            landing_name(Path::new("/guest_20261123070000.zip")).unwrap(),
            "guest_20261123070000.zip"
        );
        assert_eq!(landing_name(Path::new("a.zip")).unwrap(), "a.zip");
        for bad in [
            "/results/a.zip",
            "../a.zip",
            "a.txt",
            "/.a.zip",
            "x/../a.zip",
            "/",
        ] {
            assert!(landing_name(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
