//! The queue (SPEC §8): accepted messages and batch records, behind [`Queue`] so
//! that the SQLite back-end ([`sqlite`]) and a PostgreSQL one share the pipeline.
//!
//! Invariants every back-end keeps:
//! - One transaction per archive holds the batch record and all its messages, so a
//!   crash leaves either the whole batch or nothing ([`Queue::stage`] +
//!   [`StagedBatch::commit`]).
//! - Batch ids and message ids (`<batch>:<line>`) are unique: the same archive can
//!   never be queued twice, even by two racing processes (`DUPLICATE_BATCH`).
//! - Only archives processed without an archive-level error get a batch record; an
//!   archive rejected as a whole queued nothing and may be uploaded again.
//! - A batch is *finished* once its results are published; a committed but
//!   unfinished batch is what a crash between the two leaves, and is completed
//!   by the next run instead of being processed again.

pub mod postgres;
pub mod spool;
pub mod sqlite;

use std::io;

use crate::config::{Config, QueueBackend};
use crate::intake::error::Rejection;
use crate::intake::{RowSink, Summary};

pub use sqlite::{Pipeline, SqliteQueue};

/// An `INTERNAL_ERROR` naming the queue operation that failed.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Rejection {
    Rejection::new(
        crate::intake::error::ErrorCode::InternalError,
        format!("queue: {what}: {e}"),
    )
}

/// A queue back-end.
pub trait Queue: Send {
    /// Takes the right to process `account`'s archives until this queue is
    /// dropped; `false` when another process (node) has it now. One node's
    /// SQLite file needs no lock.
    fn lock_account(&mut self, _account: &str) -> Result<bool, Rejection> {
        Ok(true)
    }

    /// Was this batch id already committed?
    fn has_batch(&self, batch: &str) -> Result<bool, Rejection>;

    /// The stored summary of a committed batch whose results were not published.
    fn unfinished(&self, batch: &str) -> Result<Option<Summary>, Rejection>;

    /// Records that a batch's results are published.
    fn mark_finished(&self, batch: &str, at: &str) -> Result<(), Rejection>;

    /// Runs `process` with a sink that inserts accepted rows into an open
    /// transaction, which [`StagedBatch::commit`] commits with the batch record
    /// (only when the summary has no archive-level error), so the caller can make
    /// its own files durable in between.
    fn stage<'q>(
        &'q mut self,
        account: &str,
        process: &mut dyn FnMut(&mut dyn RowSink) -> Summary,
    ) -> Result<Box<dyn StagedBatch + 'q>, Rejection>;

    /// Work that can wait until an archive's results are published (SQLite:
    /// the WAL checkpoint, which copies a big batch's pages a second time).
    /// Failures are logged, not returned: nothing depends on it.
    fn tidy(&self) {}

    /// Counts of batches and of messages by status.
    fn stats(&self) -> Result<Stats, Rejection>;

    /// Messages with status `queued` (the `/metrics` queue depth; also proves
    /// the queue answers for `/healthz`).
    fn depth(&self) -> Result<i64, Rejection>;

    /// Calls `each` for every message (of one batch), in commit and line order.
    fn list(
        &self,
        batch: Option<&str>,
        each: &mut dyn FnMut(&QueuedMessage) -> io::Result<()>,
    ) -> Result<(), Rejection>;
}

/// A processed archive whose messages wait in an open transaction.
pub trait StagedBatch {
    fn summary(&self) -> &Summary;

    /// Commits (nothing when the archive was rejected as a whole) and returns the
    /// summary; `DUPLICATE_BATCH` when another process committed the batch first.
    fn commit(self: Box<Self>) -> Result<Summary, Rejection>;
}

/// Opens the configured back-end for writing.
pub fn open(config: &Config) -> Result<Box<dyn Queue>, Rejection> {
    match config.queue.backend {
        QueueBackend::Sqlite => Ok(Box::new(
            SqliteQueue::open(&config.queue.path)?.with_pipeline(config.queue.pipeline),
        )),
        QueueBackend::Postgres => Ok(Box::new(postgres::PostgresQueue::open(
            &config.queue.url,
            &config.queue.tls_ca,
            config.spool.state_dir.clone(),
        )?)),
    }
}

/// Opens the configured back-end for reading; `None` when it does not exist yet.
pub fn open_read_only(config: &Config) -> Result<Option<Box<dyn Queue>>, Rejection> {
    match config.queue.backend {
        QueueBackend::Sqlite => {
            Ok(SqliteQueue::open_read_only(&config.queue.path)?
                .map(|q| Box::new(q) as Box<dyn Queue>))
        }
        QueueBackend::Postgres => open(config).map(Some),
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Stats {
    pub batches: i64,
    pub messages: i64,
    pub by_status: Vec<(String, i64)>,
    pub next_send_at: Option<String>,
}

/// A message as stored, with the fields of `check --format jsonl` plus status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueuedMessage {
    pub message_id: String,
    pub line: i64,
    pub phone: String,
    pub sender: String,
    pub text: String,
    pub encoding: String,
    pub segments: u32,
    pub send_at: String,
    pub expires_at: String,
    pub timezone: String,
    pub status: String,
}
