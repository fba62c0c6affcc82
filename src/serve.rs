//! `smsdrop serve`: the FTP server, the poller and the HTTP listener in one
//! process.
//!
//! - FTP: [`crate::front`] (session caps, logins, landing).
//! - The poller runs every `poller.interval_secs` and at once when an upload
//!   lands (the storage back-end pokes a [`Notify`]). Each poll processes the
//!   accounts with waiting archives, at most `poller.workers` at a time, each
//!   account strictly one archive after another (see [`crate::poller`]); the
//!   blocking work (zip, CSV, SQLite) runs on the blocking pool.
//! - `/metrics` and `/healthz` ([`crate::ops::http`]).
//! - systemd: `READY=1` once every listener is bound and the queue opened;
//!   SIGHUP re-reads the accounts (`RELOADING=1` … `READY=1`) without touching
//!   open sessions; `STOPPING=1` at shutdown.
//!
//! Shutdown (SIGTERM/SIGINT, or the token) stops accepting, lets uploads in
//! progress finish for up to [`crate::front::UPLOAD_GRACE`], closes the sessions, lets the
//! running archives finish — an archive is either committed whole or not at
//! all — and returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Live};
use crate::front::Front;
use crate::intake::zone::NumberZones;
use crate::metrics;
use crate::ops::systemd;
use crate::poller;
use crate::queue::Backend;

/// Creates the spool, the account homes and the state folder; returns the
/// absolute spool path.
fn prepare_folders(config: &Config) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&config.spool.state_dir)
        .with_context(|| format!("cannot create {}", config.spool.state_dir.display()))?;
    for account in &config.accounts {
        let results = config.spool.results(&account.login);
        std::fs::create_dir_all(&results)
            .with_context(|| format!("cannot create {}", results.display()))?;
    }
    config
        .spool
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", config.spool.dir.display()))
}

/// The listening sockets `serve` runs on: bound by the caller (a test binds
/// `127.0.0.1:0`), passed by systemd's socket activation, or bound from the
/// configuration.
pub struct Listeners {
    pub ftp: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    /// The sockets systemd passed (`LISTEN_FDS`), else `ftp.listen` and
    /// `http.listen` bound now.
    pub async fn open(config: &Config) -> anyhow::Result<Listeners> {
        if let Some([ftp, http]) = systemd::inherited_listeners().context("socket activation")? {
            return Ok(Listeners {
                ftp: TcpListener::from_std(ftp)?,
                http: TcpListener::from_std(http)?,
            });
        }
        let ftp = TcpListener::bind(&config.ftp.listen)
            .await
            .with_context(|| format!("ftp.listen: cannot listen on {}", config.ftp.listen))?;
        let http = TcpListener::bind(&config.http.listen)
            .await
            .with_context(|| format!("http.listen: cannot listen on {}", config.http.listen))?;
        Ok(Listeners { ftp, http })
    }
}

/// Runs on `listeners` until `shutdown` is cancelled. `config_path` is what
/// SIGHUP re-reads (`None`: the embedded configuration, which cannot change).
pub async fn run(
    listeners: Listeners,
    config: Arc<Config>,
    config_path: Option<PathBuf>,
    zones: Arc<NumberZones>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spool = prepare_folders(&config)?;
    // Built once, up front, so a broken queue is a startup error (blocking
    // I/O: the PostgreSQL client even runs its own small runtime).
    let queue = {
        let config = config.clone();
        let opened = tokio::task::spawn_blocking(move || {
            Backend::open(&config.queue, &config.spool.state_dir)
        });
        Arc::new(opened.await.context("queue check")??)
    };
    metrics::register_all();
    let live = Arc::new(Live::new(config.clone()));
    let Listeners {
        ftp: ftp_listener,
        http: http_listener,
    } = listeners;
    let ftp_addr = ftp_listener.local_addr()?;
    tracing::info!(listen = %ftp_addr, passive_ports = ?config.ftp.passive_ports,
        tls = config.ftp.tls.is_some(), "FTP server started");
    tracing::info!(listen = %http_listener.local_addr()?, "HTTP listener started (/metrics, /healthz)");

    let landed = Arc::new(Notify::new());
    let front = Front::new(live.clone(), spool.clone(), landed.clone());
    let probe = Arc::new(crate::ops::http::Probe::new(
        ftp_addr,
        front.limits(),
        queue.clone(),
    ));
    let http = tokio::spawn(crate::ops::http::run(
        http_listener,
        probe,
        shutdown.clone(),
    ));
    let poll = tokio::spawn(poller::run(
        live.clone(),
        queue,
        zones,
        landed,
        shutdown.clone(),
    ));
    let reload = tokio::spawn(reload_on_hangup(
        live.clone(),
        config_path,
        shutdown.clone(),
    ));
    systemd::notify(&[NotifyState::Ready]);

    let ftp = front.run(ftp_listener, shutdown.clone()).await;
    shutdown.cancel();
    systemd::notify(&[NotifyState::Stopping]);
    let _ = http.await;
    let _ = reload.await;
    poll.await.context("poller task")??;
    tracing::info!("stopped");
    ftp
}

/// SIGHUP: re-read the configuration file and apply its accounts.
async fn reload_on_hangup(
    live: Arc<Live>,
    path: Option<PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = hangup.recv() => {}
        }
        let mut reloading = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            reloading.push(now);
        }
        systemd::notify(&reloading);
        match &path {
            None => {
                tracing::warn!("SIGHUP: running on the embedded configuration, nothing to reload")
            }
            Some(path) => {
                let (live, path) = (live.clone(), path.clone());
                match tokio::task::spawn_blocking(move || reload(&live, &path)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"),
                        "SIGHUP: configuration not reloaded; the previous one stays in force"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload task failed"),
                }
            }
        }
        systemd::notify(&[NotifyState::Ready]);
    }
}

/// Applies the accounts of the file at `path` (blocking).
fn reload(live: &Live, path: &Path) -> anyhow::Result<()> {
    let newer = Config::load(path)?;
    let (merged, restart_needed) = live.get().with_accounts_of(&newer);
    prepare_folders(&merged)?;
    let logins: Vec<&str> = merged.accounts.iter().map(|a| a.login.as_str()).collect();
    tracing::info!(accounts = ?logins, "SIGHUP: accounts reloaded");
    if restart_needed {
        tracing::warn!("SIGHUP: only [[accounts]] are reloaded; the other changes need a restart");
    }
    live.set(Arc::new(merged));
    Ok(())
}
