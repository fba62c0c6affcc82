//! Who may log in (SPEC §2): [`Accounts`] is both libunftp's authenticator
//! and its user-detail provider, so a login can never fall back to the
//! library's anonymous authenticator, and every user it returns has a home
//! folder (`<spool>/<login>`; without one the file back-end would show the
//! whole spool).
//!
//! A login is refused when the address is banned ([`LoginGuard`]), the login
//! is unknown, the password is wrong, the address is not in the account's
//! `allowed_ips`, or the account requires TLS and the control channel is
//! plain. Every refusal gets the same reply after the same time
//! ([`FAILED_LOGIN_DELAY`] from the `PASS`), whatever the reason: an unknown
//! login is verified against a dummy hash and a banned address waits too, so
//! neither logins nor bans can be told apart by timing. An anonymous attempt
//! (what Windows Explorer tries first) is refused the same way but is not
//! counted as a failure.
//!
//! Verifications take turns, as many at once as there are cores: a burst of
//! logins holds 2 × 19 MiB of argon2 memory instead of 200 ×.
//!
//! Accounts are read from the live configuration at every login, so a reload
//! (SIGHUP) applies to the next login while open sessions go on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use unftp_core::auth::{
    AuthenticationError, Authenticator, ChannelEncryptionState, Credentials, Principal, UserDetail,
    UserDetailError, UserDetailProvider,
};

use crate::config::Live;
use crate::front::guard::LoginGuard;
use crate::front::limits::SessionSlot;
use crate::front::shorten;
use crate::metrics;

/// How long after its `PASS` every refused login is answered (unless the
/// verification itself took longer), as vsftpd's `delay_failed_login`.
pub const FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);

/// What an unknown login's password is verified against, so that it costs
/// what a known login's does (argon2id with the default parameters, the
/// ones `smsdrop hash-password` uses).
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    crate::password::hash("smsdrop: no such account").expect("argon2 hashes a fixed password")
});

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

/// The configured accounts; see the module documentation.
#[derive(Debug)]
pub struct Accounts {
    config: Arc<Live>,
    /// Absolute spool folder.
    spool: PathBuf,
    guard: Arc<LoginGuard>,
    /// Password verifications running ([`crate::password::parallel`] at most).
    verifying: Semaphore,
}

/// Why a login was refused (logged; the client hears the same for each).
#[derive(Debug)]
enum Refusal {
    Banned,
    Anonymous,
    UnknownLogin,
    BadPassword,
    AddressNotAllowed,
    TlsRequired,
}

impl Refusal {
    fn as_str(&self) -> &'static str {
        match self {
            Refusal::Banned => "address banned",
            Refusal::Anonymous => "anonymous login",
            Refusal::UnknownLogin => "unknown login",
            Refusal::BadPassword => "wrong password",
            Refusal::AddressNotAllowed => "address not in allowed_ips",
            Refusal::TlsRequired => "account must log in over TLS (AUTH TLS)",
        }
    }
}

fn is_anonymous(login: &str) -> bool {
    login.eq_ignore_ascii_case("anonymous") || login.eq_ignore_ascii_case("ftp")
}

impl Accounts {
    pub fn new(config: Arc<Live>, spool: PathBuf) -> Accounts {
        let guard = LoginGuard::new(&config.get().ftp.login_guard);
        // Made now rather than at the first unknown login, which would be
        // the slower for it.
        LazyLock::force(&DUMMY_HASH);
        Accounts {
            config,
            spool,
            guard,
            verifying: Semaphore::new(crate::password::parallel()),
        }
    }

    /// Must `login` use TLS (globally required, or by its account)?
    pub fn tls_required(&self, login: &str) -> bool {
        let config = self.config.get();
        config.tls_required(config.account(login))
    }

    /// Verifies `password` against `hash`, waiting for a turn.
    async fn verify(&self, password: String, hash: String) -> bool {
        let Ok(_turn) = self.verifying.acquire().await else {
            return false;
        };
        // argon2 is deliberately slow: keep it off the async executor.
        tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
            .await
            .unwrap_or(false)
    }

    /// Checks a login the guard let through.
    async fn check(&self, username: &str, creds: &Credentials) -> Result<(), Refusal> {
        let config = self.config.get();
        let password = creds.password.clone().unwrap_or_default();
        let Some(account) = config.account(username) else {
            self.verify(password, DUMMY_HASH.clone()).await;
            return Err(Refusal::UnknownLogin);
        };
        let verified = self.verify(password, account.password_hash.clone()).await;
        if !verified {
            Err(Refusal::BadPassword)
        } else if config.tls_required(Some(account))
            && creds.command_channel_security == ChannelEncryptionState::Plaintext
        {
            Err(Refusal::TlsRequired)
        } else if !account.allowed_ips.is_empty()
            && !account
                .allowed_ips
                .iter()
                .any(|net| net.contains(&creds.source_ip.to_canonical()))
        {
            Err(Refusal::AddressNotAllowed)
        } else {
            Ok(())
        }
    }

    async fn login(&self, username: &str, creds: &Credentials) -> Result<Principal, Refusal> {
        let ip = creds.source_ip;
        if is_anonymous(username) && self.config.get().account(username).is_none() {
            return Err(Refusal::Anonymous);
        }
        let Some(attempt) = self.guard.begin(ip).await else {
            metrics::LOGINS_REFUSED_BANNED.inc();
            return Err(Refusal::Banned);
        };
        match self.check(username, creds).await {
            Ok(()) => {
                attempt.succeeded();
                Ok(Principal {
                    username: username.to_owned(),
                })
            }
            Err(refusal) => {
                metrics::LOGIN_FAILURES.inc();
                if attempt.failed() {
                    metrics::LOGIN_BANS.inc();
                    tracing::warn!(%ip, ban_secs = self.guard.ban.as_secs(), "address banned");
                }
                Err(refusal)
            }
        }
    }
}

#[async_trait]
impl Authenticator for Accounts {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let started = Instant::now();
        match self.login(username, creds).await {
            Ok(principal) => Ok(principal),
            Err(refusal) => {
                // One line per refusal, with the client's values shortened;
                // a banned address's attempts are only counted, an anonymous
                // attempt (Windows Explorer's first) is no one's mistake.
                match refusal {
                    Refusal::Banned => {}
                    Refusal::Anonymous => {
                        tracing::info!(ip = %creds.source_ip, "anonymous login refused")
                    }
                    _ => tracing::warn!(user = %shorten(username), ip = %creds.source_ip,
                        reason = refusal.as_str(), "login refused"),
                }
                tokio::time::sleep_until(started + FAILED_LOGIN_DELAY).await;
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

/// One connection's authenticator: [`Accounts`], and on success its session
/// slot no longer counts as waiting to log in.
#[derive(Debug)]
pub struct SessionAuth {
    pub accounts: Arc<Accounts>,
    pub slot: Arc<SessionSlot>,
}

#[async_trait]
impl Authenticator for SessionAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let principal = self.accounts.authenticate(username, creds).await?;
        self.slot.logged_in();
        Ok(principal)
    }
}
