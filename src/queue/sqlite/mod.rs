//! The SQLite back-end of the queue (WAL), the embedded default.
//!
//! Invariants:
//! - One transaction per archive holds the batch record and all its messages, so a
//!   crash leaves either the whole batch or nothing.
//! - `batches.batch` and `messages.id` (`seq << 32 | line`) are primary keys
//!   (and `message_id` is `<batch>:<line>`): the same archive can never be
//!   queued twice, even by two racing processes.
//! - Only archives processed without an archive-level error get a batch record
//!   (they may still have every row rejected). An archive rejected as a whole
//!   queued nothing, so uploading it again under the same name is allowed.
//! - Times are stored as UTC RFC 3339 text (`2026-11-23T07:00:00Z`), which sorts
//!   and compares correctly as text; see `docs/queue.md` for consumers.
//!
//! [`schema`] holds the tables and migrations, [`insert`] the storing of a
//! batch's rows while the archive is read.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

mod insert;
mod schema;

use crate::intake::batch::BatchId;
use crate::intake::format::Format;
use crate::intake::message::schedule::rfc3339;
use crate::intake::{RowSink, Summary};
use crate::queue::rowfile::spool_pipelined;
use crate::queue::{Queue, QueueError, QueuedMessage, StagedBatch, Stats, failed};
use crate::writeback::Writeback;

use insert::insert_while_read;
pub use insert::{InsertRate, Pipeline};
use schema::configured;
pub use schema::{SCHEMA_VERSION, create_schema};

/// Lines of one batch fit below this (`id = seq << 32 | line`).
const MAX_LINE: i64 = (1 << 32) - 1;

pub struct SqliteQueue {
    conn: Connection,
    pipeline: Pipeline,
    /// How fast this process inserts (shared by its connections).
    rate: std::sync::Arc<InsertRate>,
    /// Where staged rows are spooled: the database's own folder, on disk (not
    /// a tmpfs /tmp, which would be memory).
    spool_dir: std::path::PathBuf,
    /// The database file and its WAL, written back early while a batch is
    /// stored, committed and checkpointed ([`Writeback`]).
    files: [std::path::PathBuf; 2],
}

fn files(db: &Path) -> [std::path::PathBuf; 2] {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_owned(), wal.into()]
}

fn spool_dir(db: &Path) -> std::path::PathBuf {
    match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => ".".into(),
    }
}

impl SqliteQueue {
    /// Opens (creating when needed) the queue database and its schema, with
    /// the default pipeline (tests, benchmarks; `serve` and `ingest` go through
    /// [`crate::queue::Backend`]).
    pub fn open(path: &Path) -> Result<SqliteQueue, QueueError> {
        create_schema(path)?;
        SqliteQueue::connect(path, Pipeline::Auto, Default::default())
    }

    /// A connection to a queue whose schema exists ([`create_schema`]).
    pub fn connect(
        path: &Path,
        pipeline: Pipeline,
        rate: std::sync::Arc<InsertRate>,
    ) -> Result<SqliteQueue, QueueError> {
        let conn = configured(path)?;
        Ok(SqliteQueue {
            conn,
            pipeline,
            rate,
            spool_dir: spool_dir(path),
            files: files(path),
        })
    }

    /// When staged rows start entering the database.
    pub fn with_pipeline(mut self, pipeline: Pipeline) -> SqliteQueue {
        self.pipeline = pipeline;
        self
    }

    /// Opens an existing queue read-only (for `check` and `queue` commands);
    /// `None` when the file does not exist.
    pub fn open_read_only(path: &Path) -> Result<Option<SqliteQueue>, QueueError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| failed("open", e))?;
        Ok(Some(SqliteQueue {
            conn,
            pipeline: Pipeline::Auto,
            rate: Default::default(),
            spool_dir: spool_dir(path),
            files: files(path),
        }))
    }
}

impl Queue for SqliteQueue {
    fn has_batch(&self, batch: &BatchId) -> Result<bool, QueueError> {
        self.conn
            .query_row(
                "SELECT 1 FROM batches WHERE batch = ?1",
                [batch.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| failed("batch lookup", e))
    }

    /// Runs `process` with a sink that spools accepted rows to an unnamed file
    /// next to the database, while another thread inserts them from there into
    /// an open transaction, which [`StagedBatch::commit`] commits with the batch
    /// record (only when the summary has no archive-level error), so the
    /// caller can make its own files durable in between.
    ///
    /// SQLite has one writer, and the write lock is held from the first insert
    /// to the commit. The inserts start while the archive is still being read
    /// only when reading outpaces inserting (see [`Pipeline`]): then the lock
    /// is held about as long as inserting takes anyway, and reading costs no
    /// extra time. An archive that reads slower (a slow disk, a busy machine,
    /// numbers needing the full parser) is spooled whole first, so it does not
    /// hold the other accounts' commits back while it is being read.
    fn stage<'q>(
        &'q mut self,
        account: &str,
        process: &mut dyn FnMut(&mut dyn RowSink) -> Summary,
    ) -> Result<Box<dyn StagedBatch + 'q>, QueueError> {
        let (pipeline, rate) = (self.pipeline, self.rate.clone());
        // The WAL is written back as it grows, until the commit's fsync.
        let writeback = Writeback::start(self.files.to_vec());
        let conn = &mut self.conn;
        // The connection goes to the inserting thread and comes back with the
        // transaction open (or not).
        let (summary, (conn, inserted)) = spool_pipelined(&self.spool_dir, process, move |tail| {
            let inserted = insert_while_read(conn, tail, pipeline, &rate, account);
            (conn, inserted)
        })?;
        let seq = inserted.map_err(|e| duplicate_or_failed(&summary, "messages", e))?;
        Ok(Box::new(Staged {
            tx: OpenTx {
                conn,
                open: seq.is_some(),
                seq: seq.unwrap_or_default(),
            },
            account: account.to_owned(),
            summary,
            _writeback: writeback,
        }))
    }

    /// The stored summary of a batch that is committed but whose results were
    /// not published yet (a crash between the two), if there is one.
    fn unfinished(&self, batch: &BatchId) -> Result<Option<Summary>, QueueError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT summary FROM batches WHERE batch = ?1 AND finished_at IS NULL",
                [batch.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| failed("batch lookup", e))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| failed("stored summary", e)))
            .transpose()
    }

    /// Records that a batch's results are published and its archive put away.
    fn mark_finished(&self, batch: &BatchId, at: DateTime<Utc>) -> Result<(), QueueError> {
        self.conn
            .execute(
                "UPDATE batches SET finished_at = ?2 WHERE batch = ?1",
                params![batch.as_str(), rfc3339(at)],
            )
            .map(|_| ())
            .map_err(|e| failed("finish", e))
    }

    fn tidy(&self) {
        // The database file is written back while the checkpoint copies.
        let _writeback = Writeback::start(self.files.to_vec());
        // PASSIVE: copy what no reader still needs, wait for no one.
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "queue: WAL checkpoint failed");
        }
    }

    /// Counts of messages by status and of batches.
    fn depth(&self) -> Result<i64, QueueError> {
        // Answered from the partial messages_due index (queued rows only).
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE status = 'queued'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| failed("depth", e))
    }

    fn stats(&self) -> Result<Stats, QueueError> {
        let q = |sql: &str| -> Result<i64, QueueError> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| failed("stats", e))
        };
        let mut by_status = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT status, COUNT(*) FROM messages GROUP BY status ORDER BY status")
            .map_err(|e| failed("stats", e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| failed("stats", e))?;
        for row in rows {
            by_status.push(row.map_err(|e| failed("stats", e))?);
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
                .map_err(|e| failed("stats", e))?,
        })
    }

    /// Calls `each` for every message (of one batch), in commit and line order.
    fn list(
        &self,
        batch: Option<&str>,
        each: &mut dyn FnMut(&QueuedMessage) -> std::io::Result<()>,
    ) -> Result<(), QueueError> {
        // A batch's messages are one range of `id`.
        let sql = "SELECT message_id, line, phone, sender, text, encoding, segments, send_at,
                   expires_at, timezone, status FROM messages
                   WHERE id BETWEEN ?1 AND ?2 ORDER BY id";
        let (low, high) = match batch {
            None => (i64::MIN, i64::MAX),
            Some(batch) => {
                let seq: Option<i64> = self
                    .conn
                    .query_row("SELECT seq FROM batches WHERE batch = ?1", [batch], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(|e| failed("list", e))?;
                match seq {
                    Some(seq) => (seq << 32, seq << 32 | MAX_LINE),
                    None => return Ok(()),
                }
            }
        };
        let mut stmt = self.conn.prepare(sql).map_err(|e| failed("list", e))?;
        let mut rows = stmt.query([low, high]).map_err(|e| failed("list", e))?;
        while let Some(r) = rows.next().map_err(|e| failed("list", e))? {
            let get = |e| failed("list", e);
            let m = QueuedMessage {
                message_id: r.get(0).map_err(get)?,
                line: r.get(1).map_err(get)?,
                phone: r.get(2).map_err(get)?,
                code: (),
                message: (),
                sender: r.get(3).map_err(get)?,
                text: r.get(4).map_err(get)?,
                encoding: r.get(5).map_err(get)?,
                segments: r.get(6).map_err(get)?,
                send_at: r.get(7).map_err(get)?,
                expires_at: r.get(8).map_err(get)?,
                timezone: r.get(9).map_err(get)?,
                status: r.get(10).map_err(get)?,
            };
            each(&m).map_err(|e| failed("output", e))?;
        }
        Ok(())
    }
}

/// A transaction begun with `BEGIN IMMEDIATE` by the inserting thread (which
/// cannot hand a `rusqlite::Transaction` back); rolled back unless committed.
struct OpenTx<'q> {
    conn: &'q mut Connection,
    open: bool,
    /// The batch's commit-order number, taken when the transaction began.
    seq: i64,
}

impl OpenTx<'_> {
    fn end(&mut self, how: &str) -> rusqlite::Result<()> {
        if std::mem::take(&mut self.open) {
            self.conn.execute_batch(how)?;
        }
        Ok(())
    }
}

impl Drop for OpenTx<'_> {
    fn drop(&mut self) {
        let _ = self.end("ROLLBACK");
    }
}

/// A processed archive whose accepted rows wait in an open transaction.
struct Staged<'q> {
    tx: OpenTx<'q>,
    account: String,
    summary: Summary,
    /// Until the commit (or the rollback).
    _writeback: Writeback,
}

impl StagedBatch for Staged<'_> {
    fn summary(&self) -> &Summary {
        &self.summary
    }

    fn commit(self: Box<Self>) -> Result<Summary, QueueError> {
        let Staged {
            mut tx,
            account,
            summary,
            _writeback,
        } = *self;
        if summary.error.is_some() || !tx.open {
            // Rejected as a whole: nothing is queued (dropping `tx` rolls back).
            return Ok(summary);
        }
        let summary_json = serde_json::to_string(&summary).map_err(|e| failed("json", e))?;
        let format = summary.format.map_or("", Format::as_str);
        tx.conn
            .execute(
                "INSERT INTO batches (batch, account, status, format, rows, accepted, rejected,
                 received_at, processed_at, summary, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    summary.batch,
                    account,
                    summary.status.as_str(),
                    format,
                    summary.rows as i64,
                    summary.accepted as i64,
                    summary.rejected as i64,
                    rfc3339(summary.received_at),
                    rfc3339(summary.processed_at),
                    summary_json,
                    tx.seq,
                ],
            )
            .map_err(|e| duplicate_or_failed(&summary, "batch record", e))?;
        // Dropping `tx` on any error above rolls everything back.
        tx.end("COMMIT").map_err(|e| failed("commit", e))?;
        Ok(summary)
    }
}

/// A unique-key violation means another process committed the batch first.
fn duplicate_or_failed(summary: &Summary, what: &str, e: rusqlite::Error) -> QueueError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return QueueError::Duplicate {
            batch: summary.batch.clone(),
        };
    }
    failed(what, e)
}

#[cfg(test)]
mod tests {
    use super::insert::next_seq;
    use super::schema::WAL_KEPT_BYTES;
    use super::*;
    use crate::intake::Status;
    use crate::intake::error::{ErrorCode, Rejection};
    use crate::intake::message::segments::SmsEncoding;
    use crate::intake::message::{Message, RowOutcome};
    use crate::intake::phone::Msisdn;
    use crate::intake::sender::Sender;

    const BATCH: &str = "g_20261123070000";

    fn message(line: u64) -> RowOutcome {
        message_with(line, "hi")
    }

    fn message_with(line: u64, text: &str) -> RowOutcome {
        RowOutcome::Accepted(Message {
            batch: BATCH.into(),
            line,
            phone: Msisdn::parse("79031234567").unwrap(),
            sender: Sender::parse("TESTSMS").unwrap(),
            text: text.into(),
            encoding: SmsEncoding::Gsm7,
            segments: 1,
            send_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now(),
            timezone: chrono_tz::Europe::Moscow,
        })
    }

    fn emit(sink: &mut dyn RowSink, rows: u64) {
        for line in 2..rows + 2 {
            sink.row(&message(line)).unwrap();
        }
    }

    fn summary(rows: u64, error: Option<Rejection>) -> Summary {
        Summary {
            batch: BATCH.into(),
            status: Status::Accepted,
            format: Some(Format::Plain),
            rows,
            accepted: rows,
            rejected: 0,
            error,
            received_at: chrono::Utc::now(),
            processed_at: chrono::Utc::now(),
        }
    }

    fn count(queue: &SqliteQueue) -> i64 {
        queue
            .conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap()
    }

    /// Whether another connection can write right now (no waiting).
    fn can_write(path: &Path) -> bool {
        let other = Connection::open(path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let free = other.execute_batch("BEGIN IMMEDIATE").is_ok();
        let _ = other.execute_batch("ROLLBACK");
        free
    }

    /// Pipelined, the write lock is held (and rows go in) while the archive is
    /// still read; spooled — and in `auto` until reading has proved fast on
    /// enough rows — others can write meanwhile. Every way, the batch ends up
    /// queued whole.
    #[test]
    fn the_write_lock_is_held_while_reading_only_when_pipelined() {
        for (pipeline, held) in [
            (Pipeline::Always, true),
            (Pipeline::Never, false),
            (Pipeline::Auto, false),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("queue.db");
            let mut queue = SqliteQueue::open(&path).unwrap().with_pipeline(pipeline);
            let mut locked = None;
            let staged = queue
                .stage("g", &mut |sink| {
                    emit(sink, 5_000);
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    locked = Some(!can_write(&path));
                    sink.row(&message(9_999_999)).unwrap();
                    summary(5_001, None)
                })
                .unwrap();
            staged.commit().unwrap();
            assert_eq!(locked, Some(held), "{pipeline:?}");
            assert_eq!(count(&queue), 5_001, "{pipeline:?}");
            assert!(can_write(&path), "{pipeline:?}: the transaction is over");
        }
    }

    /// A commit leaves its pages in the WAL, even past SQLite's automatic
    /// checkpoint size (1,000 pages); `tidy` (run once the results are out)
    /// copies them into the database file; the next commit cuts the WAL file
    /// back to `WAL_KEPT_BYTES`.
    #[test]
    fn the_checkpoint_waits_for_tidy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let mut queue = SqliteQueue::open(&path).unwrap();
        queue
            .stage("g", &mut |sink| {
                // About 70 MB of rows: more than 1,000 64-KiB pages.
                let text = "x".repeat(10_000);
                for line in 2..7_002 {
                    sink.row(&message_with(line, &text)).unwrap();
                }
                summary(7_000, None)
            })
            .unwrap()
            .commit()
            .unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let committed = size();
        queue.tidy();
        assert!(
            size() > committed + (64 << 20),
            "{committed} bytes before the checkpoint, {} after",
            size()
        );
        assert_eq!(count(&queue), 7_000);

        // The WAL file does not stay at that batch's size: the next commit
        // after the checkpoint cuts it back.
        let wal = || {
            std::fs::metadata(dir.path().join("queue.db-wal"))
                .unwrap()
                .len()
        };
        assert!(wal() > 64 << 20, "{} bytes of WAL", wal());
        queue
            .stage("g", &mut |sink| {
                let RowOutcome::Accepted(mut m) = message(2) else {
                    unreachable!()
                };
                m.batch = "g_20261123080000".into();
                sink.row(&RowOutcome::Accepted(m)).unwrap();
                Summary {
                    batch: "g_20261123080000".into(),
                    ..summary(1, None)
                }
            })
            .unwrap()
            .commit()
            .unwrap();
        assert!(wal() <= WAL_KEPT_BYTES as u64, "{} bytes of WAL", wal());
    }

    /// What is queued is what was staged, value for value, in every pipeline
    /// mode: rows whose shared values change at different rates (rebound or
    /// kept bound) and texts of very different sizes, one bigger than the
    /// spool reader's buffer (which then moves).
    #[test]
    fn every_value_is_stored_as_staged() {
        use chrono::TimeZone;
        let zones = [
            chrono_tz::Europe::Moscow,
            chrono_tz::Asia::Omsk,
            chrono_tz::Asia::Vladivostok,
        ];
        let messages: Vec<Message> = (2..6002u64)
            .map(|line| {
                let at = chrono::Utc
                    .timestamp_opt(1_900_000_000 + (line / 3 % 5 * 3600) as i64, 0)
                    .unwrap();
                let text = match line % 1000 {
                    0 => "ж".repeat(600_000 + line as usize),
                    n => "x".repeat(n as usize % 300 + 1) + &line.to_string(),
                };
                Message {
                    batch: BATCH.into(),
                    line,
                    phone: Msisdn::parse(&format!("7903{line:07}")).unwrap(),
                    sender: Sender::parse(["TESTSMS", "OTHER", "THIRD"][(line / 7 % 3) as usize])
                        .unwrap(),
                    text,
                    encoding: [SmsEncoding::Gsm7, SmsEncoding::Ucs2][(line / 11 % 2) as usize],
                    segments: (line % 9) as u32 + 1,
                    send_at: at,
                    expires_at: at + chrono::Duration::hours((line % 2 + 1) as i64),
                    timezone: zones[(line / 2 % 3) as usize],
                }
            })
            .collect();
        for pipeline in [Pipeline::Always, Pipeline::Never] {
            let dir = tempfile::tempdir().unwrap();
            let mut queue = SqliteQueue::open(&dir.path().join("queue.db")).unwrap();
            queue.pipeline = pipeline;
            queue
                .stage("g", &mut |sink| {
                    for m in &messages {
                        sink.row(&RowOutcome::Accepted(m.clone())).unwrap();
                    }
                    summary(messages.len() as u64, None)
                })
                .unwrap()
                .commit()
                .unwrap();
            let mut stored = Vec::new();
            queue
                .list(Some(BATCH), &mut |q| {
                    stored.push(q.clone());
                    Ok(())
                })
                .unwrap();
            assert_eq!(stored.len(), messages.len(), "{pipeline:?}");
            for (m, q) in messages.iter().zip(&stored) {
                let want = (
                    m.message_id().to_string(),
                    m.line as i64,
                    m.phone.digits(),
                    m.sender.as_str(),
                    m.text.as_str(),
                    m.encoding.as_str(),
                    m.segments,
                    rfc3339(m.send_at),
                    rfc3339(m.expires_at),
                    m.timezone.name(),
                );
                let got = (
                    q.message_id.clone(),
                    q.line,
                    q.phone.as_str(),
                    q.sender.as_str(),
                    q.text.as_str(),
                    q.encoding.as_str(),
                    q.segments,
                    q.send_at.clone(),
                    q.expires_at.clone(),
                    q.timezone.as_str(),
                );
                assert!(
                    want == got,
                    "{pipeline:?} line {}: {want:?} != {got:?}",
                    m.line
                );
            }
            let account: String = queue
                .conn
                .query_row("SELECT DISTINCT account FROM messages", [], |r| r.get(0))
                .unwrap();
            assert_eq!(account, "g");
        }
    }

    /// A panic while the archive is read (a bug) unwinds instead of leaving
    /// the inserting thread waiting for rows, and nothing is queued.
    #[test]
    fn a_panic_while_reading_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let mut queue = SqliteQueue::open(&path)
            .unwrap()
            .with_pipeline(Pipeline::Always);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = queue.stage("g", &mut |sink| {
                emit(sink, 20_000);
                panic!("a bug while reading");
            });
        }));
        assert!(unwound.is_err());
        assert_eq!(count(&queue), 0);
        assert!(can_write(&path), "no transaction left open");
    }

    /// Rows inserted while reading are rolled back when the archive turns out
    /// bad at its end, and the connection is free for the next archive.
    #[test]
    fn a_late_archive_error_undoes_the_inserted_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let mut queue = SqliteQueue::open(&path)
            .unwrap()
            .with_pipeline(Pipeline::Always);
        let mut inserting = false;
        let staged = queue
            .stage("g", &mut |sink| {
                emit(sink, 20_000);
                std::thread::sleep(std::time::Duration::from_millis(200));
                inserting = !can_write(&path);
                summary(0, Some(Rejection::new(ErrorCode::NotAZip, "CRC")))
            })
            .unwrap();
        assert!(staged.summary().error.is_some());
        staged.commit().unwrap();
        assert!(inserting, "rows were going in before the error");
        assert_eq!(count(&queue), 0);
        assert!(!queue.has_batch(&BatchId::new(BATCH)).unwrap());
        queue
            .stage("g", &mut |sink| {
                emit(sink, 3);
                summary(3, None)
            })
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(count(&queue), 3);
    }

    /// A batch committed by someone else while this one was read: the first
    /// inserted row collides, reading stops, `DUPLICATE_BATCH`, nothing added.
    #[test]
    fn a_batch_committed_meanwhile_is_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let mut first = SqliteQueue::open(&path).unwrap();
        first
            .stage("g", &mut |sink| {
                emit(sink, 10);
                summary(10, None)
            })
            .unwrap()
            .commit()
            .unwrap();
        let mut second = SqliteQueue::open(&path)
            .unwrap()
            .with_pipeline(Pipeline::Always);
        let mut rows_taken = 0;
        let result = second.stage("g", &mut |sink| {
            for line in 2..200_000 {
                if sink.row(&message(line)).is_err() {
                    break;
                }
                rows_taken += 1;
            }
            summary(rows_taken, None)
        });
        let Err(e) = result else {
            panic!("staged a duplicate");
        };
        assert!(matches!(e, QueueError::Duplicate { .. }), "{e}");
        assert!(rows_taken < 199_998, "reading stopped early");
        assert_eq!(count(&first), 10);
    }

    /// Version 1 (message_id as the key) and version 2 ((batch, line) as the
    /// key) databases are migrated in place, their rows kept under integer
    /// ids in commit order, and opening them again changes nothing.
    #[test]
    fn versions_1_and_2_are_migrated_to_3() {
        let v1 = "CREATE TABLE messages (message_id TEXT PRIMARY KEY,
               batch TEXT NOT NULL REFERENCES batches(batch), account TEXT NOT NULL,
               line INTEGER NOT NULL, phone TEXT NOT NULL, sender TEXT NOT NULL,
               text TEXT NOT NULL, encoding TEXT NOT NULL, segments INTEGER NOT NULL,
               send_at TEXT NOT NULL, expires_at TEXT NOT NULL, timezone TEXT NOT NULL,
               status TEXT NOT NULL DEFAULT 'queued');
             CREATE INDEX messages_due ON messages (status, send_at);
             CREATE INDEX messages_batch ON messages (batch, line);";
        let v2 = "CREATE TABLE messages (message_id TEXT NOT NULL,
               batch TEXT NOT NULL REFERENCES batches(batch), account TEXT NOT NULL,
               line INTEGER NOT NULL, phone TEXT NOT NULL, sender TEXT NOT NULL,
               text TEXT NOT NULL, encoding TEXT NOT NULL, segments INTEGER NOT NULL,
               send_at TEXT NOT NULL, expires_at TEXT NOT NULL, timezone TEXT NOT NULL,
               status TEXT NOT NULL DEFAULT 'queued', PRIMARY KEY (batch, line)) WITHOUT ROWID;
             CREATE INDEX messages_due ON messages (send_at) WHERE status = 'queued';";
        for (version, messages) in [(1, v1), (2, v2)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("queue.db");
            {
                let conn = Connection::open(&path).unwrap();
                conn.execute_batch(&format!(
                    "CREATE TABLE batches (batch TEXT PRIMARY KEY, account TEXT NOT NULL,
                       status TEXT NOT NULL, format TEXT NOT NULL, rows INTEGER NOT NULL,
                       accepted INTEGER NOT NULL, rejected INTEGER NOT NULL,
                       received_at TEXT NOT NULL, processed_at TEXT NOT NULL,
                       summary TEXT NOT NULL, finished_at TEXT);
                     {messages}
                     INSERT INTO batches VALUES ('a_20261123070000', 'a', 'accepted', 'plain',
                       1, 1, 0, 't', 't', '{{}}', 't');
                     INSERT INTO batches VALUES ('{BATCH}', 'g', 'accepted', 'plain',
                       1, 1, 0, 't', 't', '{{}}', 't');
                     INSERT INTO messages VALUES ('{BATCH}:2', '{BATCH}', 'g',
                       2, '79031234567', 'S', 'hi', 'gsm7', 1, '2026-11-23T07:00:00Z',
                       '2026-11-24T07:00:00Z', 'Europe/Moscow', 'sent');
                     PRAGMA user_version = {version};"
                ))
                .unwrap();
            }
            for _ in 0..2 {
                let queue = SqliteQueue::open(&path).unwrap();
                let now: i64 = queue
                    .conn
                    .pragma_query_value(None, "user_version", |r| r.get(0))
                    .unwrap();
                assert_eq!(now, SCHEMA_VERSION);
                let row: (i64, String, i64, String) = queue
                    .conn
                    .query_row(
                        "SELECT id, message_id, line, status FROM messages WHERE batch = ?1",
                        [BATCH],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .unwrap();
                assert_eq!(row, ((2 << 32) | 2, format!("{BATCH}:2"), 2, "sent".into()));
                let duplicate = queue.conn.execute(
                    "INSERT INTO messages (id, batch, account, line, phone, sender, text,
                     encoding, segments, send_at, expires_at, timezone)
                     VALUES (?1, ?2, 'g', 2, '7', 'S', 't', 'gsm7', 1, 'a', 'b', 'z')",
                    params![(2i64 << 32) | 2, BATCH],
                );
                assert!(duplicate.is_err(), "id is the key");
                let old: Option<()> = queue
                    .conn
                    .query_row(
                        "SELECT 1 FROM sqlite_master WHERE name = 'messages_old'",
                        [],
                        |_| Ok(()),
                    )
                    .optional()
                    .unwrap();
                assert!(old.is_none(), "version {version}: the old table is gone");
                // The next batch continues the commit order.
                assert_eq!(next_seq(&queue.conn).unwrap(), 3);
            }
        }
    }
}
