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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Live};
use crate::front::Front;
use crate::metrics;
use crate::poller;
use crate::intake::zone::NumberZones;

/// Creates the spool, the account homes and the state folder; returns the
/// absolute spool path.
fn prepare_folders(config: &Config) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&config.spool.state_dir)
        .with_context(|| format!("cannot create {}", config.spool.state_dir.display()))?;
    for account in &config.accounts {
        let home = config.spool.dir.join(&account.login);
        std::fs::create_dir_all(home.join("results"))
            .with_context(|| format!("cannot create {}", home.display()))?;
    }
    config
        .spool
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", config.spool.dir.display()))
}

/// Tells systemd (when it started us with `Type=notify`); a no-op otherwise.
fn notify_systemd(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Runs until `shutdown` is cancelled. `config_path` is what SIGHUP re-reads
/// (`None`: the embedded configuration, which cannot change).
pub async fn run(
    config: Arc<Config>,
    config_path: Option<PathBuf>,
    zones: Arc<NumberZones>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spool = prepare_folders(&config)?;
    // Open once up front so a broken queue is a startup error (blocking I/O:
    // the PostgreSQL client even runs its own small runtime).
    {
        let config = config.clone();
        tokio::task::spawn_blocking(move || crate::queue::open(&config).map(drop))
            .await
            .context("queue check")??;
    }
    metrics::register_all();
    let live = Arc::new(Live::new(config.clone()));
    let ftp_listener = TcpListener::bind(&config.ftp.listen)
        .await
        .with_context(|| format!("ftp.listen: cannot listen on {}", config.ftp.listen))?;
    let http_listener = TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {}", config.http.listen))?;
    let ftp_addr = ftp_listener.local_addr()?;
    tracing::info!(listen = %ftp_addr, passive_ports = ?config.ftp.passive_ports,
        tls = config.ftp.tls.is_some(), "FTP server started");
    tracing::info!(listen = %http_listener.local_addr()?, "HTTP listener started (/metrics, /healthz)");

    let landed = Arc::new(Notify::new());
    let front = Front::new(live.clone(), spool.clone(), landed.clone());
    let probe = Arc::new(crate::ops::http::Probe::new(
        ftp_addr,
        front.limits(),
        live.clone(),
    ));
    let http = tokio::spawn(crate::ops::http::run(http_listener, probe, shutdown.clone()));
    let poll = tokio::spawn(poll_loop(live.clone(), zones, landed, shutdown.clone()));
    let reload = tokio::spawn(reload_on_hangup(
        live.clone(),
        config_path,
        shutdown.clone(),
    ));
    notify_systemd(&[NotifyState::Ready]);

    let ftp = front.run(ftp_listener, shutdown.clone()).await;
    shutdown.cancel();
    notify_systemd(&[NotifyState::Stopping]);
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
        notify_systemd(&reloading);
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
        notify_systemd(&[NotifyState::Ready]);
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

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Polls on every tick (interval, upload landed, an account finished): every
/// account that is not already being processed gets a task, at most `workers`
/// of them running, so one account's huge archive holds no other account back.
async fn poll_loop(
    live: Arc<Live>,
    zones: Arc<NumberZones>,
    landed: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let workers = Arc::new(Semaphore::new(live.get().poller.workers));
    // By login, so that accounts added by a reload get theirs.
    let mut busy: HashMap<String, Arc<AtomicBool>> = HashMap::new();
    let finished = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_prune = None;
    loop {
        while tasks.try_join_next().is_some() {}
        let config = live.get();
        for account in &config.accounts {
            let flag = busy.entry(account.login.clone()).or_default();
            if flag.swap(true, Ordering::AcqRel) {
                continue; // still working on this account
            }
            let (config, zones, workers) = (config.clone(), zones.clone(), workers.clone());
            let (flag, finished) = (flag.clone(), finished.clone());
            let login = account.login.clone();
            tasks.spawn(async move {
                // Closed at shutdown: start nothing new.
                let Ok(permit) = workers.acquire_owned().await else {
                    flag.store(false, Ordering::Release);
                    return;
                };
                let work = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let account = config.account(&login).expect("account of this snapshot");
                    let result = crate::queue::open(&config).and_then(|mut queue| {
                        // Several nodes on one spool: one of them at a time.
                        if !queue.lock_account(&account.login)? {
                            return Ok(Vec::new());
                        }
                        poller::poll_account(&config, &*zones, &mut *queue, account)
                    });
                    match result {
                        Ok(reports) => !reports.is_empty(),
                        Err(e) => {
                            metrics::ARCHIVE_ERRORS.inc();
                            tracing::error!(account = %account.login, error = %e,
                                "archive left for the next poll");
                            false
                        }
                    }
                });
                let processed = work.await.unwrap_or(false);
                flag.store(false, Ordering::Release);
                if processed {
                    // Uploads that landed meanwhile are picked up at once.
                    finished.notify_one();
                }
            });
        }
        // Pruning walks every processed/ folder: hourly is plenty for a
        // retention counted in days, and it stays off the per-upload path.
        if last_prune.is_none_or(|t: std::time::Instant| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(std::time::Instant::now());
            let config = config.clone();
            // A walk of folders: off the executor.
            let pruned =
                tokio::task::spawn_blocking(move || poller::prune(&config, chrono::Utc::now()));
            if let Ok(Err(e)) = pruned.await {
                tracing::warn!(error = %e, "cannot prune processed archives");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = landed.notified() => {}
            _ = finished.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(config.poller.interval_secs)) => {}
        }
    }
    // Let running archives reach their commit (or roll back); start no new ones.
    workers.close();
    while tasks.join_next().await.is_some() {}
    Ok(())
}
