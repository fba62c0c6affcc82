//! `smsdrop serve`: the FTP server and the poller in one process.
//!
//! The poller runs every `poller.interval_secs` and at once when an upload lands
//! (the storage back-end pokes a [`Notify`]). Each poll processes the accounts
//! with waiting archives, at most `poller.workers` at a time, each account
//! strictly one archive after another (see [`crate::poller`]); the blocking work
//! (zip, CSV, SQLite) runs on the blocking pool. Shutdown (SIGTERM/SIGINT, or the
//! token) stops the listener, lets the running archives finish — an archive is
//! either committed whole or not at all — and returns.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use libunftp::ServerBuilder;
use libunftp::options::{ActivePassiveMode, Shutdown};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ftp::{Accounts, Landing};
use crate::poller;
use crate::zone::NumberZones;

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

/// Runs until `shutdown` is cancelled.
pub async fn run(
    config: Arc<Config>,
    zones: Arc<NumberZones>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spool = prepare_folders(&config)?;
    // Open once up front so a broken queue is a startup error.
    crate::queue::open(&config)?;
    let landed = Arc::new(Notify::new());
    let accounts = Arc::new(Accounts::new(config.clone(), spool.clone()));
    let storage = {
        let (spool, landed) = (spool.clone(), landed.clone());
        let max = config.limits.max_archive_bytes;
        let stall = Duration::from_secs(config.ftp.idle_timeout_secs);
        move || Landing::new(&spool, max, stall, landed.clone()).expect("spool folder exists")
    };
    let [lo, hi] = config.ftp.passive_ports;
    let stop = shutdown.clone();
    let mut builder = ServerBuilder::with_user_detail_provider(Box::new(storage), accounts.clone())
        // Set explicitly: the default would be the anonymous authenticator.
        .authenticator(accounts)
        .greeting("smsdrop ready")
        .passive_ports(lo..=hi)
        .active_passive_mode(ActivePassiveMode::ActiveAndPassive)
        .idle_session_timeout(config.ftp.idle_timeout_secs)
        .shutdown_indicator(async move {
            stop.cancelled().await;
            Shutdown::new().grace_period(Duration::from_secs(5))
        });
    if let Some(tls) = &config.ftp.tls {
        builder = builder.ftps(tls.cert.clone(), tls.key.clone());
    }
    let server = builder.build().context("cannot configure the FTP server")?;
    let listen = config.ftp.listen.clone();
    let ftp = tokio::spawn(async move { server.listen(listen).await });
    tracing::info!(listen = %config.ftp.listen, passive_ports = ?config.ftp.passive_ports,
        tls = config.ftp.tls.is_some(), "FTP server started");

    let poll = tokio::spawn(poll_loop(config.clone(), zones, landed, shutdown.clone()));
    let ftp_result = ftp.await.context("FTP server task")?;
    shutdown.cancel();
    poll.await.context("poller task")??;
    ftp_result.context("FTP server")?;
    Ok(())
}

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Polls on every tick (interval, upload landed, an account finished): every
/// account that is not already being processed gets a task, at most `workers`
/// of them running, so one account's huge archive holds no other account back.
async fn poll_loop(
    config: Arc<Config>,
    zones: Arc<NumberZones>,
    landed: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs(config.poller.interval_secs);
    let workers = Arc::new(Semaphore::new(config.poller.workers));
    let busy: Vec<Arc<AtomicBool>> = config
        .accounts
        .iter()
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let finished = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_prune = None;
    loop {
        while tasks.try_join_next().is_some() {}
        for (index, flag) in busy.iter().enumerate() {
            if flag.swap(true, Ordering::AcqRel) {
                continue; // still working on this account
            }
            let (config, zones, workers) = (config.clone(), zones.clone(), workers.clone());
            let (flag, finished) = (flag.clone(), finished.clone());
            tasks.spawn(async move {
                // Closed at shutdown: start nothing new.
                let Ok(permit) = workers.acquire_owned().await else {
                    flag.store(false, Ordering::Release);
                    return;
                };
                let work = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let account = &config.accounts[index];
                    let result = crate::queue::open(&config).and_then(|mut queue| {
                        poller::poll_account(&config, &*zones, &mut *queue, account)
                    });
                    match result {
                        Ok(reports) => !reports.is_empty(),
                        Err(e) => {
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
            if let Err(e) = poller::prune(&config, chrono::Utc::now()) {
                tracing::warn!(error = %e, "cannot prune processed archives");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = landed.notified() => {}
            _ = finished.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
    // Let running archives reach their commit (or roll back); start no new ones.
    workers.close();
    while tasks.join_next().await.is_some() {}
    Ok(())
}
