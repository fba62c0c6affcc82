//! `smsdrop ingest`: one archive processed as the poller will — duplicate check,
//! queue transaction, results in the account's `results/` folder — without FTP.
//!
//! Order of effects, so that a crash at any point loses nothing and queues
//! nothing twice: the results CSV is streamed to a hidden part file; the queue
//! transaction (messages + batch record) commits; then the results JSON and CSV
//! are published by rename. A crash before the commit leaves no batch (a re-run
//! processes the archive again); a crash after it leaves the batch, and a re-run
//! answers `DUPLICATE_BATCH` without touching the first result. The archive file
//! itself is left where it is: moving it out of the customer's folder is the
//! poller's job.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound, Utc};

use crate::batch::BatchName;
use crate::config::{AccountConfig, Config};
use crate::error::Rejection;
use crate::process::{Job, Report, Tee, process};
use crate::queue::SqliteQueue;
use crate::results::{ResultsCsv, write_summary};
use crate::zone::ZoneResolver;

/// The account's results folder: `<spool>/<login>/results/`.
pub fn results_dir(config: &Config, account: &AccountConfig) -> PathBuf {
    config.spool.dir.join(&account.login).join("results")
}

/// Processes `path` for `account`; `Err` only when results or the queue cannot
/// be written (the batch is then not committed, or its results not published).
pub fn ingest(
    config: &Config,
    zones: &dyn ZoneResolver,
    queue: &mut SqliteQueue,
    path: &Path,
    account: &AccountConfig,
    now: DateTime<Utc>,
) -> Result<Report, Rejection> {
    let now = now.trunc_subsecs(0);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let received_at = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or(now)
        .trunc_subsecs(0)
        .min(now);
    let duplicate = match BatchName::parse(&file_name) {
        Ok(name) => queue.has_batch(name.id.as_str())?,
        Err(_) => false,
    };
    let seen = move |_: &crate::batch::BatchId| Ok(duplicate);
    let dir = results_dir(config, account);
    let stem = file_name.strip_suffix(".zip").unwrap_or(&file_name);
    let mut csv = ResultsCsv::create(&dir, stem, account.encoding)?;
    let mut fallbacks = Default::default();
    let summary = queue.ingest(&account.login, |sink| {
        let mut tee = Tee(sink, &mut csv);
        let report = process(
            &Job {
                path,
                file_name: &file_name,
                account,
                limits: &config.limits,
                zones,
                now,
                received_at,
                seen: Some(&seen),
            },
            &mut tee,
        );
        fallbacks = report.fallbacks;
        report.summary
    });
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            csv.abandon();
            return Err(e);
        }
    };
    if summary.error.is_none() {
        csv.publish(&dir.join(format!("{}.csv", summary.batch)))?;
    } else {
        csv.abandon();
    }
    write_summary(&dir, &summary)?;
    Ok(Report { summary, fallbacks })
}
