//! The FTP/FTPS front: what customers talk to (SPEC §2), layered as unFTP
//! layers its own around libunftp:
//!
//! - [`limits`]: caps on connections, in all, per address, and not logged in
//!   yet; the accept loop here answers 421 beyond them, and closes a waiting
//!   connection whose place a newcomer took.
//! - [`auth`]: who may log in ([`auth::Accounts`]), with the login guard
//!   ([`guard`]) and replies that tell nothing by their content or timing.
//! - [`landing`]: the storage back-end, a decorator over the file-system one:
//!   atomic landing of uploads (temporary names and `RNTO` too), names,
//!   sizes, one upload of a name at a time, and the account's storage
//!   ([`quota`]); what listings and file status show ([`listing`]).
//!
//! Each admitted connection gets its own libunftp server, built from the live
//! configuration (so the TLS certificate is re-read for every new session: a
//! renewed certificate needs no restart), and must log in within
//! `login_timeout_secs` or is closed, however it stalls. What libunftp itself
//! enforces (line length, TLS handshake and data-connection deadlines, active
//! and passive data-connection addresses, TLS required per login) is patched
//! into the vendored copy; see `vendor/libunftp/SMSDROP-CHANGES.md`.
//!
//! Shutdown stops accepting, lets uploads in progress finish for up to
//! [`UPLOAD_GRACE`] and closes the sessions.

pub mod auth;
pub mod guard;
pub mod landing;
pub mod limits;
pub mod listing;
pub mod quota;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use libunftp::ServerBuilder;
use libunftp::options::{ActivePassiveMode, FtpsRequiredFor, TlsFlags};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Live;
use crate::metrics;
use auth::{Accounts, FtpUser, SessionAuth};
use landing::Landing;
use limits::{Cap, SessionLimits, SessionSlot};

/// How long shutdown waits for uploads in progress.
pub const UPLOAD_GRACE: Duration = Duration::from_secs(10);

/// A client's value as it may be logged: at most 64 characters, so that a
/// long `USER` cannot flood the log.
pub(crate) fn shorten(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    match value.char_indices().nth(MAX_CHARS) {
        None => value.to_owned(),
        Some((at, _)) => format!("{}…({} bytes)", &value[..at], value.len()),
    }
}

/// What every FTP session is built from.
#[derive(Clone)]
pub struct Front {
    live: Arc<Live>,
    accounts: Arc<Accounts>,
    /// Absolute spool folder.
    spool: PathBuf,
    storage: Arc<landing::Shared>,
    limits: Arc<SessionLimits>,
}

impl Front {
    /// `landed` is poked whenever an upload has landed.
    pub fn new(live: Arc<Live>, spool: PathBuf, landed: Arc<Notify>) -> Front {
        let config = live.get();
        let ftp = &config.ftp;
        let storage = landing::Shared::new(
            config.limits.max_archive_bytes,
            Duration::from_secs(ftp.idle_timeout_secs),
            landed,
            ftp.sync_uploads,
            quota::Quota::new(live.clone()),
        );
        let limits = SessionLimits::new(
            ftp.max_sessions,
            ftp.max_sessions_per_ip,
            ftp.max_unauthenticated_per_ip,
        );
        Front {
            accounts: Arc::new(Accounts::new(live.clone(), spool.clone())),
            live,
            spool,
            storage,
            limits,
        }
    }

    /// The session caps, for `/healthz`.
    pub fn limits(&self) -> Arc<SessionLimits> {
        self.limits.clone()
    }

    /// A libunftp server for one connection, from the live configuration.
    /// Blocking: it reads the TLS certificate and key.
    fn server(&self, slot: Arc<SessionSlot>) -> anyhow::Result<libunftp::Server<Landing, FtpUser>> {
        let config = self.live.get();
        let storage = {
            let (spool, shared) = (self.spool.clone(), self.storage.clone());
            move || Landing::new(&spool, shared.clone()).expect("spool folder exists")
        };
        let auth = Arc::new(SessionAuth {
            accounts: self.accounts.clone(),
            slot,
        });
        let tls_required = {
            let accounts = self.accounts.clone();
            FtpsRequiredFor(Arc::new(move |login: &str| accounts.tls_required(login)))
        };
        let [lo, hi] = config.ftp.passive_ports;
        let mut builder =
            ServerBuilder::with_user_detail_provider(Box::new(storage), self.accounts.clone())
                // Set explicitly: the default would be the anonymous authenticator.
                .authenticator(auth)
                .greeting("smsdrop ready")
                .passive_ports(lo..=hi)
                .active_passive_mode(ActivePassiveMode::ActiveAndPassive)
                .idle_session_timeout(config.ftp.idle_timeout_secs)
                .ftps_required_for(tls_required)
                .site_command("CHMOD", Chmod)
                .metrics();
        let host = config.ftp.passive_host.trim();
        if !host.is_empty() {
            builder = builder.passive_host(match host.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => libunftp::options::PassiveHost::Ip(ip),
                Err(_) => libunftp::options::PassiveHost::Dns(host.to_owned()),
            });
        }
        if let Some(tls) = &config.ftp.tls {
            builder = builder
                .ftps(tls.cert.clone(), tls.key.clone())
                .ftps_tls_flags(
                    TlsFlags::V1_2
                        | TlsFlags::V1_3
                        | TlsFlags::RESUMPTION_SESS_ID
                        | TlsFlags::RESUMPTION_TICKETS,
                );
        }
        builder.build().context("cannot configure the FTP server")
    }

    /// Uploads in progress.
    pub fn uploads(&self) -> usize {
        self.storage.uploads.load(Ordering::Acquire)
    }

    /// Accepts control connections until shutdown: admitted ones get a
    /// libunftp session, the rest a 421 reply.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            while sessions.try_join_next().is_some() {}
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, most likely: back off instead of spinning.
                        tracing::warn!(error = %e, "ftp: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let slot = match self.limits.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(cap) => {
                    metrics::SESSIONS_REFUSED
                        .with_label_values(&[cap.as_str()])
                        .inc();
                    tracing::info!(ip = %peer.ip(), cap = cap.as_str(), "connection refused: too many sessions");
                    tokio::spawn(refuse(stream, cap));
                    continue;
                }
            };
            let front = self.clone();
            sessions.spawn(async move { front.session(stream, peer, slot).await });
        }
        drop(listener);
        // Uploads in progress may finish (and land); then every session is closed.
        let deadline = tokio::time::Instant::now() + UPLOAD_GRACE;
        while self.uploads() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sessions.shutdown().await;
        Ok(())
    }

    /// One connection, from its greeting to its end (or its login deadline).
    async fn session(self, stream: TcpStream, peer: std::net::SocketAddr, slot: Arc<SessionSlot>) {
        let login_timeout = Duration::from_secs(self.live.get().ftp.login_timeout_secs);
        let for_server = slot.clone();
        let server = match tokio::task::spawn_blocking(move || self.server(for_server)).await {
            Ok(Ok(server)) => server,
            Ok(Err(e)) => {
                return tracing::error!(error = %format!("{e:#}"), "ftp session not started");
            }
            Err(e) => return tracing::error!(error = %e, "ftp session not started"),
        };
        // Dropping the service ends the session: libunftp's control loop
        // listens for it before it reads the client's next command.
        let service = server.service(stream);
        let deadline = async {
            tokio::time::sleep(login_timeout).await;
            if slot.is_logged_in() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            ended = service => if let Err(e) = ended {
                tracing::debug!(ip = %peer.ip(), error = %e, "ftp session ended with an error");
            },
            () = deadline => {
                metrics::LOGIN_TIMEOUTS.inc();
                tracing::info!(ip = %peer.ip(), timeout_secs = login_timeout.as_secs(),
                    "connection closed: not logged in in time");
            }
            () = slot.displaced() => {
                tracing::info!(ip = %peer.ip(),
                    "connection closed: not logged in, its place given to a newcomer");
            }
        }
    }
}

/// `SITE CHMOD`, which `lftp mirror -R` and others send after an upload:
/// permissions in a home are smsdrop's, so it is accepted and changes
/// nothing (refused, it made lftp exit 1 although every archive went through).
#[derive(Debug)]
struct Chmod;

#[async_trait::async_trait]
impl libunftp::options::SiteCommandHandler<Landing, FtpUser> for Chmod {
    async fn handle(
        &self,
        _context: &libunftp::options::SiteCommandContext<Landing, FtpUser>,
    ) -> libunftp::options::Reply {
        libunftp::options::Reply::new(
            libunftp::options::ReplyCode::CommandOkay,
            "SITE CHMOD accepted; permissions are not changed",
        )
    }
}

async fn refuse(mut stream: TcpStream, cap: Cap) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(cap.reply()).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_values_are_shortened() {
        assert_eq!(shorten("guest"), "guest");
        let long = "é".repeat(5000);
        let short = shorten(&long);
        assert!(short.starts_with(&"é".repeat(64)));
        assert!(short.ends_with("…(10000 bytes)"), "{short}");
    }
}
