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

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};

use crate::config::{AccountConfig, Config};
use crate::intake::Summary;
use crate::intake::batch::{BatchId, BatchName};
use crate::intake::error::Rejection;
use crate::intake::zone::ZoneResolver;
use crate::intake::{Job, Report, Tee, process};
use crate::queue::Queue;
use crate::reports::results::{ResultsCsv, publish_csv, write_summary};

/// Processes `path` for `account`; `Err` only when results or the queue cannot
/// be written (the batch is then not committed, or its results not published).
pub fn ingest(
    config: &Config,
    zones: &dyn ZoneResolver,
    queue: &mut dyn Queue,
    path: &Path,
    account: &AccountConfig,
    now: DateTime<Utc>,
) -> Result<Report, Rejection> {
    let now = now.trunc_subsecs(0);
    let arrival = crate::intake::arrival(path, now);
    let (file_name, bytes) = (&arrival.file_name, arrival.bytes);
    let span = tracing::info_span!("archive", account = %account.login, file = %file_name, bytes);
    let _entered = span.enter();
    let started = Instant::now();
    let report = (|| -> Result<Report, Rejection> {
        let dir = config.spool.results(&account.login);
        let name = BatchName::parse(file_name).ok();
        if let Some(name) = name.as_ref().filter(|n| n.login == account.login)
            && let Some(summary) = queue.unfinished(&name.id)?
        {
            // A previous run committed this batch and stopped before its results
            // were published: finish that run instead of answering DUPLICATE_BATCH.
            finish(queue, &dir, &summary)?;
            return Ok(Report {
                summary,
                fallbacks: Default::default(),
            });
        }
        let duplicate = match &name {
            Some(name) => queue.has_batch(&name.id)?,
            None => false,
        };
        let seen = move |_: &crate::intake::batch::BatchId| Ok(duplicate);
        let stem = crate::intake::batch::batch_stem(file_name);
        let mut csv = ResultsCsv::create(&dir, stem, account.encoding)?;
        let mut fallbacks = Default::default();
        let staged = match queue.stage(&account.login, &mut |sink| {
            let mut tee = Tee(sink, &mut csv);
            let mut report = process(
                &Job::new(
                    path,
                    &arrival,
                    account,
                    config.limits.intake(),
                    zones,
                    now,
                    Some(&seen),
                ),
                &mut tee,
            );
            fallbacks = std::mem::take(&mut report.fallbacks);
            // The CSV is whole: made durable now, while the queue's thread may
            // still be storing rows, rather than after (95 MB for 1M rows).
            if report.summary.error.is_none() {
                csv.sync();
            }
            report.summary
        }) {
            Ok(staged) => staged,
            Err(e) => {
                csv.abandon();
                return Err(e.into());
            }
        };
        // The results could not be written or synced (a full disk): that says
        // nothing about the archive, so nothing is committed, not even a
        // rejection; the archive waits for the next poll (dropping `staged`
        // rolls back).
        if let Some(e) = csv.failure().cloned() {
            csv.abandon();
            return Err(e);
        }
        if staged.summary().error.is_some() {
            csv.abandon();
            let summary = staged.commit()?;
            write_summary(&dir, &summary)?;
            return Ok(Report { summary, fallbacks });
        }
        // The CSV is on disk before the commit, so a crash after the commit can
        // still publish it (see `finish`).
        csv.seal()?;
        let commit = Instant::now();
        let summary = staged.commit()?;
        tracing::debug!(secs = commit.elapsed().as_secs_f64(), "batch committed");
        finish(queue, &dir, &summary)?;
        Ok(Report { summary, fallbacks })
    })()?;
    let s = &report.summary;
    crate::metrics::archive_processed(crate::metrics::Processed {
        status: s.status.as_str(),
        code: s.error.as_ref().map_or("", |e| e.code.as_str()),
        accepted: s.accepted,
        rejected: s.rejected,
        seconds: started.elapsed().as_secs_f64(),
    });
    match &s.error {
        None => tracing::info!(
            batch = %s.batch, status = s.status.as_str(), rows = s.rows, accepted = s.accepted,
            rejected = s.rejected, secs = started.elapsed().as_secs_f64(), "archive processed"
        ),
        Some(e) => tracing::info!(
            batch = %s.batch, code = %e.code, error = %e.message,
            secs = started.elapsed().as_secs_f64(), "archive rejected"
        ),
    }
    Ok(report)
}

/// Publishes the results of a committed batch and records that it is done.
/// Idempotent, so it also finishes a batch whose process died after its commit.
pub fn finish(queue: &dyn Queue, dir: &Path, summary: &Summary) -> Result<(), Rejection> {
    publish_csv(dir, &summary.batch)?;
    write_summary(dir, summary)?;
    queue.mark_finished(&BatchId::new(summary.batch.as_str()), Utc::now())?;
    tracing::debug!(batch = %summary.batch, "results published");
    // The results are out: now the queue may tidy up (the customer does not
    // wait for it).
    let tidy = Instant::now();
    queue.tidy();
    tracing::debug!(secs = tidy.elapsed().as_secs_f64(), "queue tidied");
    Ok(())
}
