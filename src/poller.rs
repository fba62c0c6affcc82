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

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::intake::batch::BatchName;
use crate::config::{AccountConfig, Config};
use crate::intake::error::{ErrorCode, Rejection};
use crate::ingest::ingest;
use crate::intake::Report;
use crate::queue::Queue;
use crate::intake::zone::ZoneResolver;

fn internal(what: &Path, e: io::Error) -> Rejection {
    Rejection::new(ErrorCode::InternalError, format!("{}: {e}", what.display()))
}

/// Where an account's archive waits while it is processed.
pub fn work_dir(config: &Config, account: &AccountConfig) -> PathBuf {
    config.spool.work(&account.login)
}

/// Where processed archives are kept.
pub fn processed_dir(config: &Config, account: &AccountConfig) -> PathBuf {
    config.spool.processed(&account.login)
}

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
        if !crate::intake::batch::is_archive_name(&name)
            || name.starts_with('.')
            || crate::intake::batch::is_temporary_name(&name)
        {
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
    let dir = processed_dir(config, account);
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
    move_file(work, &to).map_err(|e| internal(&to, e))?;
    File::options()
        .write(true)
        .open(&to)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .map_err(|e| internal(&to, e))
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
    let work = work_dir(config, account);
    let mut reports = Vec::new();
    // Left over from a process that died: finish it before anything newer.
    for path in pending(&work).map_err(|e| internal(&work, e))? {
        let name = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        let finished = match BatchName::parse(&name) {
            Ok(batch) if batch.login == account.login => {
                queue.has_batch(batch.id.as_str())?
                    && queue.unfinished(batch.id.as_str())?.is_none()
            }
            _ => false,
        };
        if !finished {
            reports.push(ingest(config, zones, queue, &path, account, Utc::now())?);
        }
        put_away(config, account, &path)?;
    }
    let home = config.spool.dir.join(&account.login);
    for path in pending(&home).map_err(|e| internal(&home, e))? {
        let to = work.join(path.file_name().expect("a file"));
        match move_file(&path, &to) {
            Ok(()) => {}
            // Deleted by the customer meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(internal(&path, e)),
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
        removed += remove_older(&processed_dir(config, account), processed)?;
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
