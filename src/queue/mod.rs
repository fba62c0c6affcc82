//! The queue (SPEC §8): accepted messages and batch records, behind [`Queue`] so
//! that the SQLite back-end ([`sqlite`]) and the PostgreSQL one ([`postgres`])
//! share the pipeline.
//!
//! Invariants every back-end keeps:
//! - One transaction per archive holds the batch record and all its messages, so a
//!   crash leaves either the whole batch or nothing ([`Queue::stage`] +
//!   [`StagedBatch::commit`]).
//! - Batch ids and message ids (`<batch>:<line>`) are unique: the same archive can
//!   never be queued twice, even by two racing processes ([`QueueError::Duplicate`]).
//! - Only archives processed without an archive-level error get a batch record; an
//!   archive rejected as a whole queued nothing and may be uploaded again.
//! - A batch is *finished* once its results are published; a committed but
//!   unfinished batch is what a crash between the two leaves, and is completed
//!   by the next run instead of being processed again.
//!
//! The [`Backend`] is built once at start-up (the schema created or migrated,
//! PostgreSQL's connection pool made) and hands out connections
//! ([`Backend::writer`], [`Backend::reader`]). Errors are [`QueueError`]s; what
//! a customer is told of them is decided in one place, `From<QueueError> for
//! Rejection`. Staged rows wait in a [`rowfile`] while they are read.

pub mod postgres;
pub mod rowfile;
pub mod sqlite;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::intake::batch::BatchId;
use crate::intake::error::{ErrorCode, Rejection};
use crate::intake::{RowSink, Summary};

pub use sqlite::{Pipeline, SqliteQueue};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The batch was committed before, by this process or another node.
    #[error("batch {batch} was already processed")]
    Duplicate { batch: String },
    /// The back-end failed at `what`; the cause is the source.
    #[error("queue: {what}")]
    Failed {
        what: String,
        #[source]
        source: BoxError,
    },
}

/// A [`QueueError::Failed`] naming the operation that failed.
pub(crate) fn failed(what: &str, e: impl Into<BoxError>) -> QueueError {
    QueueError::Failed {
        what: what.to_owned(),
        source: e.into(),
    }
}

/// What a customer is told of a queue error: the one place where they meet.
impl From<QueueError> for Rejection {
    fn from(e: QueueError) -> Rejection {
        match e {
            QueueError::Duplicate { batch } => Rejection::new(
                ErrorCode::DuplicateBatch,
                format!("batch {batch} was already processed"),
            ),
            QueueError::Failed { what, source } => {
                Rejection::new(ErrorCode::InternalError, format!("queue: {what}: {source}"))
            }
        }
    }
}

/// Which back-end holds the queue (`[queue] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The `[queue]` section of the configuration (SPEC §11).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub backend: Kind,
    /// SQLite database file.
    pub path: PathBuf,
    /// PostgreSQL connection string.
    pub url: String,
    /// PEM file of CA certificates to trust for the PostgreSQL server, besides
    /// the system's (a private CA or a self-signed server certificate).
    pub tls_ca: PathBuf,
    /// When an archive's rows start entering the SQLite queue.
    pub pipeline: Pipeline,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backend: Kind::Sqlite,
            path: "var/state/queue.db".into(),
            url: String::new(),
            tls_ca: PathBuf::new(),
            pipeline: Default::default(),
        }
    }
}

/// A queue back-end.
pub trait Queue: Send {
    /// Takes the right to process `account`'s archives until this queue is
    /// dropped; `false` when another process (node) has it now. One node's
    /// SQLite file needs no lock.
    fn lock_account(&mut self, _account: &str) -> Result<bool, QueueError> {
        Ok(true)
    }

    /// Was this batch id already committed?
    fn has_batch(&self, batch: &BatchId) -> Result<bool, QueueError>;

    /// The stored summary of a committed batch whose results were not published.
    fn unfinished(&self, batch: &BatchId) -> Result<Option<Summary>, QueueError>;

    /// Records that a batch's results are published.
    fn mark_finished(&self, batch: &BatchId, at: DateTime<Utc>) -> Result<(), QueueError>;

    /// Runs `process` with a sink that inserts accepted rows into an open
    /// transaction, which [`StagedBatch::commit`] commits with the batch record
    /// (only when the summary has no archive-level error), so the caller can make
    /// its own files durable in between.
    fn stage<'q>(
        &'q mut self,
        account: &str,
        process: &mut dyn FnMut(&mut dyn RowSink) -> Summary,
    ) -> Result<Box<dyn StagedBatch + 'q>, QueueError>;

    /// Work that can wait until an archive's results are published (SQLite:
    /// the WAL checkpoint, which copies a big batch's pages a second time).
    /// Failures are logged, not returned: nothing depends on it.
    fn tidy(&self) {}

    /// Counts of batches and of messages by status.
    fn stats(&self) -> Result<Stats, QueueError>;

    /// Messages with status `queued` (the `/metrics` queue depth).
    fn depth(&self) -> Result<i64, QueueError>;

    /// Calls `each` for every message (of one batch), in commit and line order.
    fn list(
        &self,
        batch: Option<&str>,
        each: &mut dyn FnMut(&QueuedMessage) -> io::Result<()>,
    ) -> Result<(), QueueError>;
}

/// A processed archive whose messages wait in an open transaction.
pub trait StagedBatch {
    fn summary(&self) -> &Summary;

    /// Commits (nothing when the archive was rejected as a whole) and returns the
    /// summary; [`QueueError::Duplicate`] when another process committed the
    /// batch first.
    fn commit(self: Box<Self>) -> Result<Summary, QueueError>;
}

/// The configured back-end, built once: see the module documentation.
pub struct Backend {
    kind: Opened,
    /// Where staged rows are spooled.
    state_dir: PathBuf,
}

enum Opened {
    Sqlite {
        path: PathBuf,
        pipeline: Pipeline,
        /// How fast this process inserts, learnt from its commits.
        rate: Arc<sqlite::InsertRate>,
    },
    Postgres(postgres::Pool),
    /// Dropped (see `Drop`).
    Closed,
}

impl Backend {
    /// Opens the back-end: creates or migrates the schema, makes PostgreSQL's
    /// pool. Blocking.
    pub fn open(settings: &Settings, state_dir: &Path) -> Result<Backend, QueueError> {
        let kind = match settings.backend {
            Kind::Sqlite => {
                sqlite::create_schema(&settings.path)?;
                Opened::Sqlite {
                    path: settings.path.clone(),
                    pipeline: settings.pipeline,
                    rate: Arc::default(),
                }
            }
            Kind::Postgres => Opened::Postgres(postgres::pool(&settings.url, &settings.tls_ca)?),
        };
        Ok(Backend {
            kind,
            state_dir: state_dir.to_owned(),
        })
    }

    /// A connection that writes. Blocking.
    pub fn writer(&self) -> Result<Box<dyn Queue>, QueueError> {
        Ok(match &self.kind {
            Opened::Sqlite {
                path,
                pipeline,
                rate,
            } => Box::new(SqliteQueue::connect(path, *pipeline, rate.clone())?),
            Opened::Postgres(pool) => Box::new(postgres::PostgresQueue::connect(
                pool,
                self.state_dir.clone(),
            )?),
            Opened::Closed => return Err(failed("connect", "the queue is closed")),
        })
    }

    /// A connection that only reads. Blocking.
    pub fn reader(&self) -> Result<Box<dyn Queue>, QueueError> {
        match &self.kind {
            Opened::Sqlite { path, .. } => Ok(Box::new(
                SqliteQueue::open_read_only(path)?
                    .ok_or_else(|| failed("open", "the queue database is gone"))?,
            )),
            Opened::Postgres(_) | Opened::Closed => self.writer(),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Closing a PostgreSQL connection blocks (the client runs a small
        // runtime of its own), which must not happen on an async worker,
        // where the last holder (a finished task) may drop the back-end.
        if let Opened::Postgres(pool) = &self.kind
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let pool = pool.clone();
            self.kind = Opened::Closed;
            std::thread::spawn(move || drop(pool));
        }
    }
}

/// Opens the configured back-end for reading, without creating it (`check`,
/// `queue` commands); `None` when it does not exist yet. Blocking.
pub fn open_read_only(
    settings: &Settings,
    state_dir: &Path,
) -> Result<Option<Box<dyn Queue>>, QueueError> {
    match settings.backend {
        Kind::Sqlite => {
            Ok(SqliteQueue::open_read_only(&settings.path)?.map(|q| Box::new(q) as Box<dyn Queue>))
        }
        Kind::Postgres => Backend::open(settings, state_dir)?.writer().map(Some),
    }
}

fn null<S: serde::Serializer>(_: &(), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_none()
}

#[derive(Debug, serde::Serialize)]
pub struct Stats {
    pub batches: i64,
    pub messages: i64,
    pub by_status: Vec<(String, i64)>,
    pub next_send_at: Option<String>,
}

/// A message as stored, with the fields of `check --format jsonl` (SPEC §9;
/// `status` is the queue's).
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueuedMessage {
    pub message_id: String,
    pub line: i64,
    pub phone: String,
    /// `check`'s error code and message: none, the message was accepted.
    #[serde(serialize_with = "null")]
    pub code: (),
    #[serde(serialize_with = "null")]
    pub message: (),
    pub sender: String,
    pub text: String,
    pub encoding: String,
    pub segments: u32,
    pub send_at: String,
    pub expires_at: String,
    pub timezone: String,
    pub status: String,
}
