//! The PostgreSQL back-end of the queue (SPEC §8 scale-out): the same tables as
//! SQLite, times as `timestamptz`, created or migrated at startup under an
//! advisory lock (idempotent, versioned in `smsdrop_schema`). Rows are spooled
//! while the archive is read and enter the queue from another thread at the
//! same time, with one binary `COPY` in the transaction that then inserts the
//! batch record and commits. Messages are keyed by `seq << 32 | line`, as in
//! SQLite, with the batch's `seq` taken when the copy starts.
//!
//! Connections come from the back-end's pool (r2d2), made once at start-up
//! ([`crate::queue::Backend::open`]). Several nodes share one
//! database and one spool: [`Queue::lock_account`] takes a session-level
//! advisory lock per account, so one node at a time processes an account's
//! archives (oldest first, as on one node); a node that dies releases its locks
//! with its connections, and the next node to poll resumes its work.
//!
//! TLS (rustls) follows the connection string's `sslmode`; the server's
//! certificate is verified against the system's CAs and `queue.tls_ca`.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use postgres::Client;
use r2d2_postgres::PostgresConnectionManager;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::intake::batch::BatchId;
use crate::intake::format::Format;
use crate::intake::message::schedule::rfc3339;
use crate::intake::{RowSink, Summary};
use crate::queue::rowfile::{Tail, changed, spool_pipelined};
use crate::queue::{Queue, QueueError, QueuedMessage, StagedBatch, Stats, failed};

pub type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
type Pooled = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// A pool of connections to `url`, with the schema created or migrated.
pub fn pool(url: &str, ca: &Path) -> Result<Pool, QueueError> {
    let config: postgres::Config = url.parse().map_err(|e| failed("queue.url", e))?;
    let pool = r2d2::Pool::builder()
        .max_size(16)
        .connection_timeout(std::time::Duration::from_secs(10))
        .build(PostgresConnectionManager::new(config, tls(ca)?))
        .map_err(|e| failed("connect", e))?;
    migrate(&mut *pool.get().map_err(|e| failed("connect", e))?)?;
    Ok(pool)
}

/// rustls with the system's CAs plus those in `ca` (when set).
fn tls(ca: &Path) -> Result<MakeRustlsConnect, QueueError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system stores are skipped; `tls_ca` may be all there is.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if !ca.as_os_str().is_empty() {
        let what = format!("queue.tls_ca {}", ca.display());
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| failed(&what, e))? {
            roots
                .add(cert.map_err(|e| failed(&what, e))?)
                .map_err(|e| failed(&what, e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed("tls", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Version of the schema below.
pub const SCHEMA_VERSION: i32 = 2;

/// Any key; the same on every node, so one migrates while the others wait.
const MIGRATION_LOCK: i64 = 0x736d_7364_726f_7001;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (
    batch        text PRIMARY KEY,
    seq          bigint GENERATED ALWAYS AS IDENTITY,  -- commit order
    account      text NOT NULL,
    status       text NOT NULL,
    format       text NOT NULL,
    rows         bigint NOT NULL,
    accepted     bigint NOT NULL,
    rejected     bigint NOT NULL,
    received_at  timestamptz NOT NULL,
    processed_at timestamptz NOT NULL,
    summary      text NOT NULL,
    finished_at  timestamptz
);
CREATE TABLE IF NOT EXISTS messages (
    id          bigint PRIMARY KEY,  -- batches.seq << 32 | line
    message_id  text NOT NULL,
    batch       text NOT NULL,       -- a batches row, inserted in the same transaction
    account     text NOT NULL,
    line        bigint NOT NULL,
    phone       text NOT NULL,
    sender      text NOT NULL,
    text        text NOT NULL,
    encoding    text NOT NULL,
    segments    integer NOT NULL,
    send_at     timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    timezone    text NOT NULL,
    status      text NOT NULL DEFAULT 'queued'
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (send_at) WHERE status = 'queued';
";

/// Version 1 keyed messages by `(batch, line)`, a text-and-integer B-tree
/// search at every insert; version 2 by an integer that grows with every
/// batch, as SQLite's version 3 does (`batches.seq << 32 | line`), taken
/// before the copy starts. The old key goes, the new one is filled in.
const MIGRATE_TO_2: &str = "
ALTER TABLE messages ADD COLUMN id bigint;
UPDATE messages m SET id = (b.seq << 32) | m.line FROM batches b WHERE b.batch = m.batch;
ALTER TABLE messages DROP CONSTRAINT messages_pkey;
ALTER TABLE messages ADD PRIMARY KEY (id);
";

/// RFC 3339 UTC text with whole seconds, as SQLite stores it.
const AS_TEXT: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS"Z"'"#;

pub struct PostgresQueue {
    /// `postgres::Client` wants `&mut` even to read; the trait's readers take
    /// `&self`, and a queue is used by one thread at a time.
    client: RefCell<Pooled>,
    /// Where staged rows are spooled (the state folder).
    spool_dir: PathBuf,
    /// Account locks held by this connection.
    locked: Vec<i64>,
}

impl PostgresQueue {
    /// A connection from `pool`.
    pub fn connect(pool: &Pool, spool_dir: PathBuf) -> Result<PostgresQueue, QueueError> {
        let client = pool.get().map_err(|e| failed("connect", e))?;
        Ok(PostgresQueue {
            client: RefCell::new(client),
            spool_dir,
            locked: Vec::new(),
        })
    }
}

impl Drop for PostgresQueue {
    fn drop(&mut self) {
        // Session locks outlive a transaction: give them back before the
        // connection returns to the pool.
        let client = self.client.get_mut();
        for key in self.locked.drain(..) {
            let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&key]);
        }
    }
}

/// Creates or migrates the schema, one node at a time.
fn migrate(client: &mut Client) -> Result<(), QueueError> {
    let mut tx = client.transaction().map_err(|e| failed("schema", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| failed("schema lock", e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS smsdrop_schema (version integer NOT NULL)")
        .map_err(|e| failed("schema", e))?;
    let version: Option<i32> = tx
        .query_one("SELECT max(version) FROM smsdrop_schema", &[])
        .map_err(|e| failed("schema", e))?
        .get(0);
    match version {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(failed(
                "schema",
                format!("database schema {v} is newer than this smsdrop ({SCHEMA_VERSION})"),
            ));
        }
        Some(v) if v == SCHEMA_VERSION => {}
        Some(1) => {
            tx.batch_execute(MIGRATE_TO_2)
                .map_err(|e| failed("migration 1→2", e))?;
            tx.execute("UPDATE smsdrop_schema SET version = $1", &[&SCHEMA_VERSION])
                .map_err(|e| failed("schema", e))?;
        }
        _ => {
            tx.batch_execute(SCHEMA).map_err(|e| failed("schema", e))?;
            tx.execute("DELETE FROM smsdrop_schema", &[])
                .map_err(|e| failed("schema", e))?;
            tx.execute(
                "INSERT INTO smsdrop_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .map_err(|e| failed("schema", e))?;
        }
    }
    tx.commit().map_err(|e| failed("schema", e))
}

/// The advisory-lock key of an account: FNV-1a of the login, in a namespace
/// of its own (the top byte) so it cannot meet `MIGRATION_LOCK`.
fn account_key(login: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in login.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((h & 0x00ff_ffff_ffff_ffff) | 0x5100_0000_0000_0000) as i64
}

impl Queue for PostgresQueue {
    fn lock_account(&mut self, account: &str) -> Result<bool, QueueError> {
        let key = account_key(account);
        let got: bool = self
            .client
            .get_mut()
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(|e| failed("account lock", e))?
            .get(0);
        if got {
            self.locked.push(key);
        }
        Ok(got)
    }

    fn has_batch(&self, batch: &BatchId) -> Result<bool, QueueError> {
        self.client
            .borrow_mut()
            .query_opt("SELECT 1 FROM batches WHERE batch = $1", &[&batch.as_str()])
            .map(|r| r.is_some())
            .map_err(|e| failed("batch lookup", e))
    }

    fn unfinished(&self, batch: &BatchId) -> Result<Option<Summary>, QueueError> {
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT summary FROM batches WHERE batch = $1 AND finished_at IS NULL",
                &[&batch.as_str()],
            )
            .map_err(|e| failed("batch lookup", e))?;
        row.map(|r| {
            let json: String = r.get(0);
            serde_json::from_str(&json).map_err(|e| failed("stored summary", e))
        })
        .transpose()
    }

    fn mark_finished(&self, batch: &BatchId, at: DateTime<Utc>) -> Result<(), QueueError> {
        self.client
            .borrow_mut()
            .execute(
                "UPDATE batches SET finished_at = $2::text::timestamptz WHERE batch = $1",
                &[&batch.as_str(), &rfc3339(at)],
            )
            .map(|_| ())
            .map_err(|e| failed("finish", e))
    }

    /// The rows are spooled while the archive is read and copied into the
    /// open transaction from another thread as they are spooled: PostgreSQL
    /// has no single-writer lock to keep free, so the copy starts at once.
    fn stage<'q>(
        &'q mut self,
        account: &str,
        process: &mut dyn FnMut(&mut dyn RowSink) -> Summary,
    ) -> Result<Box<dyn StagedBatch + 'q>, QueueError> {
        let client: &'q mut Client = self.client.get_mut();
        let (summary, copied) = spool_pipelined(&self.spool_dir, process, move |tail| {
            let mut tx = client.transaction()?;
            // The batch's commit-order number, taken now: the messages' key
            // is made of it (a sequence: a rolled-back batch leaves a gap).
            let seq: i64 = tx
                .query_one(
                    "SELECT nextval(pg_get_serial_sequence('batches', 'seq'))",
                    &[],
                )?
                .get(0);
            copy_rows(&mut tx, tail, account, seq)?;
            Ok::<_, CopyFailed>((!tail.void()).then_some((tx, seq)))
        })?;
        let (tx, seq) = match copied {
            Ok(Some((tx, seq))) => (Some(tx), seq),
            Ok(None) => (None, 0),
            Err(CopyFailed::Db(e)) => return Err(duplicate_or_failed(&summary, "copy", e)),
            Err(CopyFailed::Io(e)) => return Err(failed("copy", e)),
        };
        Ok(Box::new(Staged {
            tx,
            seq,
            account: account.to_owned(),
            summary,
        }))
    }

    fn stats(&self) -> Result<Stats, QueueError> {
        let mut client = self.client.borrow_mut();
        let count = |client: &mut Client, sql: &str| -> Result<i64, QueueError> {
            client
                .query_one(sql, &[])
                .map(|r| r.get(0))
                .map_err(|e| failed("stats", e))
        };
        let by_status = client
            .query(
                "SELECT status, count(*) FROM messages GROUP BY status ORDER BY status",
                &[],
            )
            .map_err(|e| failed("stats", e))?
            .into_iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        let next_send_at: Option<String> = client
            .query_one(
                &format!(
                    "SELECT to_char(min(send_at) AT TIME ZONE 'UTC', {AS_TEXT}) FROM messages \
                     WHERE status = 'queued'"
                ),
                &[],
            )
            .map_err(|e| failed("stats", e))?
            .get(0);
        Ok(Stats {
            batches: count(&mut client, "SELECT count(*) FROM batches")?,
            messages: count(&mut client, "SELECT count(*) FROM messages")?,
            by_status,
            next_send_at,
        })
    }

    fn depth(&self) -> Result<i64, QueueError> {
        self.client
            .borrow_mut()
            .query_one("SELECT count(*) FROM messages WHERE status = 'queued'", &[])
            .map(|r| r.get(0))
            .map_err(|e| failed("depth", e))
    }

    fn list(
        &self,
        batch: Option<&str>,
        each: &mut dyn FnMut(&QueuedMessage) -> std::io::Result<()>,
    ) -> Result<(), QueueError> {
        let sql = format!(
            "SELECT m.message_id, m.line, m.phone, m.sender, m.text, m.encoding, m.segments,
                    to_char(m.send_at AT TIME ZONE 'UTC', {AS_TEXT}),
                    to_char(m.expires_at AT TIME ZONE 'UTC', {AS_TEXT}), m.timezone, m.status
               FROM messages m
              WHERE $1::text IS NULL OR m.batch = $1 ORDER BY m.id"
        );
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction().map_err(|e| failed("list", e))?;
        // A portal, so that a big queue is read in pages, not all at once.
        let portal = tx
            .bind(sql.as_str(), &[&batch])
            .map_err(|e| failed("list", e))?;
        loop {
            let rows = tx
                .query_portal(&portal, 10_000)
                .map_err(|e| failed("list", e))?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let m = QueuedMessage {
                    message_id: r.get(0),
                    line: r.get(1),
                    phone: r.get(2),
                    code: (),
                    message: (),
                    sender: r.get(3),
                    text: r.get(4),
                    encoding: r.get(5),
                    segments: r.get::<_, i32>(6) as u32,
                    send_at: r.get(7),
                    expires_at: r.get(8),
                    timezone: r.get(9),
                    status: r.get(10),
                };
                each(&m).map_err(|e| failed("output", e))?;
            }
        }
        Ok(())
    }
}

/// A processed archive whose messages wait in an open transaction (none when
/// the archive was rejected as a whole).
struct Staged<'q> {
    tx: Option<postgres::Transaction<'q>>,
    /// The batch's commit-order number, which its messages' keys hold.
    seq: i64,
    account: String,
    summary: Summary,
}

impl StagedBatch for Staged<'_> {
    fn summary(&self) -> &Summary {
        &self.summary
    }

    fn commit(self: Box<Self>) -> Result<Summary, QueueError> {
        let Staged {
            tx,
            seq,
            account,
            summary,
        } = *self;
        let Some(mut tx) = tx.filter(|_| summary.error.is_none()) else {
            // Rejected as a whole: nothing is queued (dropping `tx` rolls back).
            return Ok(summary);
        };
        let summary_json = serde_json::to_string(&summary).map_err(|e| failed("json", e))?;
        let format = summary.format.map_or("", Format::as_str);
        let (received, processed) = (rfc3339(summary.received_at), rfc3339(summary.processed_at));
        tx.execute(
            "INSERT INTO batches (batch, account, status, format, rows, accepted, rejected,
             received_at, processed_at, summary, seq) OVERRIDING SYSTEM VALUE
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::timestamptz, $9::text::timestamptz,
                     $10, $11)",
            &[
                &summary.batch,
                &account,
                &summary.status.as_str(),
                &format,
                &(summary.rows as i64),
                &(summary.accepted as i64),
                &(summary.rejected as i64),
                &received,
                &processed,
                &summary_json,
                &seq,
            ],
        )
        .map_err(|e| duplicate_or_failed(&summary, "batch record", e))?;
        // Dropping `tx` on any error above rolls everything back.
        tx.commit()
            .map_err(|e| duplicate_or_failed(&summary, "commit", e))?;
        Ok(summary)
    }
}

/// What stopped the copy: the database, or reading the spool / writing the copy.
enum CopyFailed {
    Db(postgres::Error),
    Io(std::io::Error),
}

impl From<postgres::Error> for CopyFailed {
    fn from(e: postgres::Error) -> Self {
        CopyFailed::Db(e)
    }
}

impl From<std::io::Error> for CopyFailed {
    fn from(e: std::io::Error) -> Self {
        CopyFailed::Io(e)
    }
}

/// Copies the rows of `tail` into `messages` as they come, in COPY's binary
/// format: PostgreSQL then parses no text (a timestamp from text cost more
/// than storing it), and values that rows share (batch, sender, times, zone)
/// are encoded once, when they change.
fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    tail: &mut Tail,
    account: &str,
    seq: i64,
) -> Result<(), CopyFailed> {
    let mut copy = tx.copy_in(
        "COPY messages (id, message_id, batch, account, line, phone, sender, text, \
         encoding, segments, send_at, expires_at, timezone) FROM STDIN (FORMAT binary)",
    )?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut copy);
    // Header: signature, flags, no extension.
    out.write_all(b"PGCOPY\n\xff\r\n\0")?;
    out.write_all(&0i32.to_be_bytes())?;
    out.write_all(&0i32.to_be_bytes())?;
    let (mut send_at, mut expires_at) = (0i64, 0i64);
    let mut line_text = Vec::with_capacity(20);
    while let Some(row) = tail.next_row()? {
        if row.changed & changed::SEND_AT != 0 {
            send_at = pg_micros(row.send_at)?;
        }
        if row.changed & changed::EXPIRES_AT != 0 {
            expires_at = pg_micros(row.expires_at)?;
        }
        line_text.clear();
        write!(line_text, "{}", row.line)?;
        let line = line_text.as_slice();
        out.write_all(&13i16.to_be_bytes())?;
        int8(&mut out, seq << 32 | row.line)?;
        out.write_all(&((row.batch.len() + 1 + line.len()) as i32).to_be_bytes())?;
        out.write_all(row.batch)?;
        out.write_all(b":")?;
        out.write_all(line)?;
        text(&mut out, row.batch)?;
        text(&mut out, account.as_bytes())?;
        int8(&mut out, row.line)?;
        text(&mut out, row.phone)?;
        text(&mut out, row.sender)?;
        text(&mut out, row.text)?;
        text(&mut out, row.encoding)?;
        out.write_all(&4i32.to_be_bytes())?;
        out.write_all(&(row.segments as i32).to_be_bytes())?;
        int8(&mut out, send_at)?;
        int8(&mut out, expires_at)?;
        text(&mut out, row.timezone)?;
    }
    // Trailer.
    out.write_all(&(-1i16).to_be_bytes())?;
    out.flush()?;
    drop(out);
    copy.finish()?;
    Ok(())
}

/// A text field of COPY's binary format: its length, its bytes.
fn text(out: &mut impl Write, value: &[u8]) -> std::io::Result<()> {
    out.write_all(&(value.len() as i32).to_be_bytes())?;
    out.write_all(value)
}

/// An 8-byte field (`bigint`, `timestamptz`).
fn int8(out: &mut impl Write, value: i64) -> std::io::Result<()> {
    out.write_all(&8i32.to_be_bytes())?;
    out.write_all(&value.to_be_bytes())
}

/// A UTC RFC 3339 time as `timestamptz` holds it: microseconds since
/// 2000-01-01 00:00:00 UTC.
fn pg_micros(rfc3339: &[u8]) -> std::io::Result<i64> {
    const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;
    let text = std::str::from_utf8(rfc3339).map_err(std::io::Error::other)?;
    let t = chrono::DateTime::parse_from_rfc3339(text).map_err(std::io::Error::other)?;
    Ok((t.timestamp() - PG_EPOCH_UNIX_SECS) * 1_000_000 + i64::from(t.timestamp_subsec_micros()))
}

/// A unique-key violation means another node committed the batch first.
fn duplicate_or_failed(summary: &Summary, what: &str, e: postgres::Error) -> QueueError {
    if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
        return QueueError::Duplicate {
            batch: summary.batch.clone(),
        };
    }
    failed(what, e)
}
