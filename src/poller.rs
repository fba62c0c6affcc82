//! Poller: takes archives out of the customers' folders, oldest first, one at a
//! time per account, and runs each through [`crate::ingest`] (SPEC §3).
//!
//! An archive moves `<spool>/<login>/X.zip` → `<state>/work/<login>/X.zip` before
//! it is read (so the customer can upload a new X.zip meanwhile), and then to
//! `<state>/processed/<login>/` where it is kept `keep_processed_days`. A process
//! that dies leaves at most one archive per account in `work/`; the next poll
//! resumes it first:
//! - batch committed, results not published → `ingest` publishes them;
//! - batch committed and finished → only the move is left;
//! - nothing committed → processed again from the start.
//!
//! So a batch is never queued twice and never lost. Files not ending in `.zip`,
//! hidden files (uploads in progress) and folders are left alone.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::config::Live;
use crate::config::{AccountConfig, Config};
use crate::ingest::ingest;
use crate::intake::Report;
use crate::intake::batch::BatchName;
use crate::intake::error::Rejection;
use crate::intake::zone::{NumberZones, ZoneResolver};
use crate::metrics;
use crate::queue::{Backend, Queue};

/// Archives waiting in `dir`, in processing order: by the timestamp in the name
/// (invalid names first, they are rejected at once), then upload completion
/// time, then name.
pub fn pending(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<(Option<NaiveDateTime>, SystemTime, String, PathBuf)> = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !crate::intake::batch::is_archive_to_process(&name) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let stamp = BatchName::parse(&name).ok().map(|n| n.stamp);
        found.push((stamp, meta.modified()?, name, entry.path()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, _, _, path)| path).collect())
}

/// Moves a file, across file systems too (copy, sync, then remove), keeping its
/// modification time (the upload completion time).
fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    match fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let modified = fs::metadata(from)?.modified()?;
            fs::copy(from, to)?;
            let file = File::options().write(true).open(to)?;
            file.set_modified(modified)?;
            file.sync_all()?;
            fs::remove_file(from)?;
        }
        Err(e) => return Err(e),
    }
    if let Some(dir) = to.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Puts a finished archive away under a name not used yet, dated now for pruning.
fn put_away(config: &Config, account: &AccountConfig, work: &Path) -> Result<(), Rejection> {
    let dir = config.spool.processed(&account.login);
    let name = work
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned();
    let mut to = dir.join(&name);
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    move_file(work, &to).map_err(|e| Rejection::internal(to.display(), e))?;
    File::options()
        .write(true)
        .open(&to)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .map_err(|e| Rejection::internal(to.display(), e))
}

/// Processes everything waiting for one account, oldest first; stops at the
/// first archive that cannot be processed for an internal reason (it stays in
/// `work/` and is retried by the next poll).
pub fn poll_account(
    config: &Config,
    zones: &dyn ZoneResolver,
    queue: &mut dyn Queue,
    account: &AccountConfig,
) -> Result<Vec<Report>, Rejection> {
    let work = config.spool.work(&account.login);
    let mut reports = Vec::new();
    // Left over from a process that died: finish it before anything newer.
    for path in pending(&work).map_err(|e| Rejection::internal(work.display(), e))? {
        let name = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        let finished = match BatchName::parse(&name) {
            Ok(batch) if batch.login == account.login => {
                queue.has_batch(&batch.id)? && queue.unfinished(&batch.id)?.is_none()
            }
            _ => false,
        };
        if !finished {
            reports.push(ingest(config, zones, queue, &path, account, Utc::now())?);
        }
        put_away(config, account, &path)?;
    }
    let home = config.spool.home(&account.login);
    for path in pending(&home).map_err(|e| Rejection::internal(home.display(), e))? {
        let to = work.join(path.file_name().expect("a file"));
        match move_file(&path, &to) {
            Ok(()) => {}
            // Deleted by the customer meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Rejection::internal(path.display(), e)),
        }
        reports.push(ingest(config, zones, queue, &to, account, Utc::now())?);
        put_away(config, account, &to)?;
    }
    Ok(reports)
}

/// Removes processed archives older than `keep_processed_days` and results
/// files older than `keep_results_days`; the number removed.
pub fn prune(config: &Config, now: DateTime<Utc>) -> io::Result<usize> {
    let cutoff =
        |days: u32| -> SystemTime { (now - chrono::Duration::days(i64::from(days))).into() };
    let processed = cutoff(config.spool.keep_processed_days);
    let results = cutoff(config.spool.keep_results_days);
    let mut removed = 0;
    for account in &config.accounts {
        removed += remove_older(&config.spool.processed(&account.login), processed)?;
        removed += remove_older(&config.spool.results(&account.login), results)?;
    }
    Ok(removed)
}

/// Removes the files of `dir` last modified before `cutoff`.
fn remove_older(dir: &Path, cutoff: SystemTime) -> io::Result<usize> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        // Gone meanwhile (a customer's DELE): nothing to prune.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() && meta.modified()? < cutoff {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Does `account` have an archive waiting, in its folder or left in `work/`?
fn waiting(config: &Config, account: &AccountConfig) -> bool {
    let any = |dir: &Path| pending(dir).map_or(true, |found| !found.is_empty());
    any(&config.spool.work(&account.login)) || any(&config.spool.home(&account.login))
}

const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Polls on every tick (interval, upload landed, an account finished): every
/// account that is not already being processed gets a task, at most `workers`
/// of them running, so one account's huge archive holds no other account back.
pub async fn run(
    live: Arc<Live>,
    queue: Arc<Backend>,
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
            let queue = queue.clone();
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
                    // Nothing waiting: no connection to the queue, and nothing
                    // to report if the queue is down.
                    if !waiting(&config, account) {
                        return false;
                    }
                    let result = queue
                        .writer()
                        .map_err(Rejection::from)
                        .and_then(|mut queue| {
                            // Several nodes on one spool: one of them at a time.
                            if !queue.lock_account(&account.login)? {
                                return Ok(Vec::new());
                            }
                            poll_account(&config, &*zones, &mut *queue, account)
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
            let pruned = tokio::task::spawn_blocking(move || prune(&config, chrono::Utc::now()));
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
