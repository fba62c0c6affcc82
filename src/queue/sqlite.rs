//! The SQLite back-end of the queue (WAL), the embedded default.
//!
//! Invariants:
//! - One transaction per archive holds the batch record and all its messages, so a
//!   crash leaves either the whole batch or nothing.
//! - `batches.batch` and `messages.message_id` (`<batch>:<line>`) are primary keys:
//!   the same archive can never be queued twice, even by two racing processes.
//! - Only archives processed without an archive-level error get a batch record
//!   (they may still have every row rejected). An archive rejected as a whole
//!   queued nothing, so uploading it again under the same name is allowed.
//! - Times are stored as UTC RFC 3339 text (`2026-11-23T07:00:00Z`), which sorts
//!   and compares correctly as text; see `docs/queue.md` for consumers.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::error::{ErrorCode, Rejection};
use crate::format::Format;
use crate::message::RowOutcome;
use crate::message::schedule::rfc3339;
use crate::process::{RowSink, Summary};
use crate::queue::{Queue, QueuedMessage, StagedBatch, Stats};

/// Version of the schema below (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (
    batch        TEXT PRIMARY KEY,
    account      TEXT NOT NULL,
    status       TEXT NOT NULL,     -- accepted | partially_accepted | rejected
    format       TEXT NOT NULL,     -- template | plain
    rows         INTEGER NOT NULL,
    accepted     INTEGER NOT NULL,
    rejected     INTEGER NOT NULL,
    received_at  TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    summary      TEXT NOT NULL,     -- the results JSON of SPEC §7
    finished_at  TEXT               -- results published, archive put away
);
CREATE TABLE IF NOT EXISTS messages (
    message_id  TEXT PRIMARY KEY,   -- <batch>:<line>
    batch       TEXT NOT NULL REFERENCES batches(batch),
    account     TEXT NOT NULL,
    line        INTEGER NOT NULL,
    phone       TEXT NOT NULL,      -- E.164 digits, no '+'
    sender      TEXT NOT NULL,
    text        TEXT NOT NULL,
    encoding    TEXT NOT NULL,      -- gsm7 | ucs2
    segments    INTEGER NOT NULL,
    send_at     TEXT NOT NULL,      -- UTC, RFC 3339
    expires_at  TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'queued'
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (status, send_at);
CREATE INDEX IF NOT EXISTS messages_batch ON messages (batch, line);
";

/// Accepted rows of the archive being processed wait in a connection-private
/// temporary table (spilled to a temporary file, not memory, when large) and are
/// copied into `messages` in the commit: SQLite has one writer, and this way the
/// write lock is held for the copy only, not while an archive is read — so one
/// account's huge archive does not stall the others' commits.
const STAGING: &str = "
PRAGMA temp_store = FILE;
CREATE TEMP TABLE IF NOT EXISTS staged (
    message_id TEXT, batch TEXT, account TEXT, line INTEGER, phone TEXT, sender TEXT,
    text TEXT, encoding TEXT, segments INTEGER, send_at TEXT, expires_at TEXT, timezone TEXT
);
";

fn internal(what: &str, e: impl std::fmt::Display) -> Rejection {
    Rejection::new(ErrorCode::InternalError, format!("queue: {what}: {e}"))
}

pub struct SqliteQueue {
    conn: Connection,
}

impl SqliteQueue {
    /// Opens (creating when needed) the queue database and its schema.
    pub fn open(path: &Path) -> Result<SqliteQueue, Rejection> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| internal(&dir.display().to_string(), e))?;
        }
        let conn = Connection::open(path).map_err(|e| internal("open", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| internal("WAL", e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| internal("synchronous", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| internal("busy_timeout", e))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| internal("user_version", e))?;
        if version > SCHEMA_VERSION {
            return Err(internal(
                "schema",
                format!("database schema {version} is newer than this smsdrop ({SCHEMA_VERSION})"),
            ));
        }
        conn.execute_batch(STAGING)
            .map_err(|e| internal("staging table", e))?;
        // The poller opens the queue on every poll: write the schema (a write
        // transaction) only when the database does not have it yet.
        if version < SCHEMA_VERSION {
            conn.execute_batch(SCHEMA)
                .map_err(|e| internal("schema", e))?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(|e| internal("user_version", e))?;
        }
        Ok(SqliteQueue { conn })
    }

    /// Opens an existing queue read-only (for `check` and `queue` commands);
    /// `None` when the file does not exist.
    pub fn open_read_only(path: &Path) -> Result<Option<SqliteQueue>, Rejection> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| internal("open", e))?;
        Ok(Some(SqliteQueue { conn }))
    }
}

impl Queue for SqliteQueue {
    fn has_batch(&self, batch: &str) -> Result<bool, Rejection> {
        self.conn
            .query_row(
                "SELECT 1 FROM batches WHERE batch = ?1",
                [batch],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| internal("batch lookup", e))
    }

    /// Runs `process` with a sink that inserts accepted rows into an open
    /// transaction. The transaction is committed, with the batch record, by
    /// [`StagedBatch::commit`] — only when the summary has no archive-level error —
    /// so the caller can make its own files durable in between.
    fn stage<'q>(
        &'q mut self,
        account: &str,
        process: &mut dyn FnMut(&mut dyn RowSink) -> Summary,
    ) -> Result<Box<dyn StagedBatch + 'q>, Rejection> {
        let tx = self.conn.transaction().map_err(|e| internal("begin", e))?;
        // Messages are inserted before their batch record; check the reference
        // at commit.
        tx.pragma_update(None, "defer_foreign_keys", true)
            .map_err(|e| internal("defer_foreign_keys", e))?;
        tx.execute("DELETE FROM temp.staged", [])
            .map_err(|e| internal("staging", e))?;
        let summary = {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO temp.staged (message_id, batch, account, line, phone, sender,
                     text, encoding, segments, send_at, expires_at, timezone)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(|e| internal("prepare", e))?;
            let mut sink = InsertSink {
                insert: &mut insert,
                account,
            };
            process(&mut sink)
        };
        // An archive-level error: dropping the transaction rolls it back.
        let tx = summary.error.is_none().then_some(tx);
        Ok(Box::new(Staged {
            tx,
            account: account.to_owned(),
            summary,
        }))
    }

    /// The stored summary of a batch that is committed but whose results were
    /// not published yet (a crash between the two), if there is one.
    fn unfinished(&self, batch: &str) -> Result<Option<Summary>, Rejection> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT summary FROM batches WHERE batch = ?1 AND finished_at IS NULL",
                [batch],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| internal("batch lookup", e))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| internal("stored summary", e)))
            .transpose()
    }

    /// Records that a batch's results are published and its archive put away.
    fn mark_finished(&self, batch: &str, at: &str) -> Result<(), Rejection> {
        self.conn
            .execute(
                "UPDATE batches SET finished_at = ?2 WHERE batch = ?1",
                params![batch, at],
            )
            .map(|_| ())
            .map_err(|e| internal("finish", e))
    }

    /// Counts of messages by status and of batches.
    fn depth(&self) -> Result<i64, Rejection> {
        // Answered from the messages_due index.
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE status = 'queued'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| internal("depth", e))
    }

    fn stats(&self) -> Result<Stats, Rejection> {
        let q = |sql: &str| -> Result<i64, Rejection> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| internal("stats", e))
        };
        let mut by_status = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT status, COUNT(*) FROM messages GROUP BY status ORDER BY status")
            .map_err(|e| internal("stats", e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| internal("stats", e))?;
        for row in rows {
            by_status.push(row.map_err(|e| internal("stats", e))?);
        }
        Ok(Stats {
            batches: q("SELECT COUNT(*) FROM batches")?,
            messages: q("SELECT COUNT(*) FROM messages")?,
            by_status,
            next_send_at: self
                .conn
                .query_row(
                    "SELECT MIN(send_at) FROM messages WHERE status = 'queued'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| internal("stats", e))?,
        })
    }

    /// Calls `each` for every message (of one batch), in batch and line order.
    fn list(
        &self,
        batch: Option<&str>,
        each: &mut dyn FnMut(&QueuedMessage) -> std::io::Result<()>,
    ) -> Result<(), Rejection> {
        let sql = "SELECT message_id, line, phone, sender, text, encoding, segments, send_at,
                   expires_at, timezone, status FROM messages
                   WHERE ?1 IS NULL OR batch = ?1 ORDER BY batch, line";
        let mut stmt = self.conn.prepare(sql).map_err(|e| internal("list", e))?;
        let mut rows = stmt.query([batch]).map_err(|e| internal("list", e))?;
        while let Some(r) = rows.next().map_err(|e| internal("list", e))? {
            let get = |e| internal("list", e);
            let m = QueuedMessage {
                message_id: r.get(0).map_err(get)?,
                line: r.get(1).map_err(get)?,
                phone: r.get(2).map_err(get)?,
                sender: r.get(3).map_err(get)?,
                text: r.get(4).map_err(get)?,
                encoding: r.get(5).map_err(get)?,
                segments: r.get(6).map_err(get)?,
                send_at: r.get(7).map_err(get)?,
                expires_at: r.get(8).map_err(get)?,
                timezone: r.get(9).map_err(get)?,
                status: r.get(10).map_err(get)?,
            };
            each(&m).map_err(|e| internal("output", e))?;
        }
        Ok(())
    }
}

/// A processed archive whose messages wait in an open transaction.
struct Staged<'q> {
    tx: Option<rusqlite::Transaction<'q>>,
    account: String,
    pub summary: Summary,
}

impl StagedBatch for Staged<'_> {
    fn summary(&self) -> &Summary {
        &self.summary
    }

    fn commit(self: Box<Self>) -> Result<Summary, Rejection> {
        let Some(tx) = self.tx else {
            return Ok(self.summary);
        };
        let summary = self.summary;
        let summary_json = serde_json::to_string(&summary).map_err(|e| internal("json", e))?;
        let format = summary.format.map_or("", Format::as_str);
        tx.execute(
            "INSERT INTO messages (message_id, batch, account, line, phone, sender, text,
             encoding, segments, send_at, expires_at, timezone, status)
             SELECT message_id, batch, account, line, phone, sender, text, encoding, segments,
                    send_at, expires_at, timezone, 'queued' FROM temp.staged",
            [],
        )
        .map_err(|e| duplicate_or_internal(&summary, "messages", e))?;
        tx.execute("DELETE FROM temp.staged", [])
            .map_err(|e| internal("staging", e))?;
        tx.execute(
            "INSERT INTO batches (batch, account, status, format, rows, accepted, rejected,
             received_at, processed_at, summary) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                summary.batch,
                self.account,
                summary.status.as_str(),
                format,
                summary.rows as i64,
                summary.accepted as i64,
                summary.rejected as i64,
                rfc3339(summary.received_at),
                rfc3339(summary.processed_at),
                summary_json,
            ],
        )
        .map_err(|e| duplicate_or_internal(&summary, "batch record", e))?;
        tx.commit().map_err(|e| internal("commit", e))?;
        Ok(summary)
    }
}

/// A unique-key violation means another process committed the batch first.
fn duplicate_or_internal(summary: &Summary, what: &str, e: rusqlite::Error) -> Rejection {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return Rejection::new(
            ErrorCode::DuplicateBatch,
            format!("batch {} was already processed", summary.batch),
        );
    }
    internal(what, e)
}

struct InsertSink<'s, 'c> {
    insert: &'s mut rusqlite::CachedStatement<'c>,
    account: &'s str,
}

impl RowSink for InsertSink<'_, '_> {
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        let RowOutcome::Accepted(m) = outcome else {
            return Ok(());
        };
        let batch = m
            .message_id
            .rsplit_once(':')
            .map(|(b, _)| b)
            .unwrap_or(&m.message_id);
        self.insert
            .execute(params![
                m.message_id,
                batch,
                self.account,
                m.line as i64,
                m.phone.digits(),
                m.sender.as_str(),
                m.text,
                m.encoding.as_str(),
                m.segments,
                rfc3339(m.send_at),
                rfc3339(m.expires_at),
                m.timezone.name(),
            ])
            .map(|_| ())
            .map_err(|e| internal("insert", e))
    }
}
