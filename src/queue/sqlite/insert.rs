//! Storing a batch's rows: the inserting thread takes the write lock when
//! the [`Pipeline`] says so and inserts the rows of the spool's [`Tail`] as
//! they come, through one prepared statement whose text values are bound
//! without a copy ([`StaticInsert`]).

use rusqlite::{Connection, OptionalExtension};

use crate::queue::rowfile::{Progress, Tail, changed};

use super::MAX_LINE;

const INSERT_MESSAGE: &str = "INSERT INTO messages (id, batch, account, line, phone,
    sender, text, encoding, segments, send_at, expires_at, timezone)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Begins a transaction when `pipeline` says so and inserts the rows of `tail`
/// as they come; the batch's `seq` with the transaction left open, `None`
/// (and no transaction) when the rows turned void.
pub(super) fn insert_while_read(
    conn: &mut Connection,
    tail: &mut Tail,
    pipeline: Pipeline,
    rate: &InsertRate,
    account: &str,
) -> rusqlite::Result<Option<i64>> {
    let p = tail.wait_until(|p| pipeline.start_now(p, rate));
    if p.void {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    // IMMEDIATE: take the write lock now (waiting for another archive's
    // commit) rather than fail halfway on a lock upgrade.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let inserted = next_seq(conn).and_then(|seq| {
        insert_rows(conn, tail, account, seq)?;
        Ok(seq)
    });
    match inserted {
        Ok(seq) if !tail.void() => {
            rate.learn(tail.rows(), started.elapsed());
            Ok(Some(seq))
        }
        Ok(_) => conn.execute_batch("ROLLBACK").map(|()| None),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The commit-order number of the batch being written (under the write lock,
/// so no other writer can take the same).
pub(super) fn next_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM batches", [], |r| {
        r.get(0)
    })
}

/// Inserts the rows of `tail` as they come.
fn insert_rows(
    conn: &Connection,
    tail: &mut Tail,
    account: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    let io = |e: std::io::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let mut insert = StaticInsert::prepare(conn, INSERT_MESSAGE)?;
    // Bindings stay between executions: the account is bound once, the values
    // that rows share again only when they change.
    // SAFETY: `account` outlives the statement.
    unsafe { insert.bind_text(3, account.as_bytes())? };
    let mut first = true;
    while let Some(row) = tail.next_row().map_err(io)? {
        if std::mem::take(&mut first) {
            // Committed by another process since this one looked: stop now
            // rather than read the whole archive for a duplicate.
            let seen = conn
                .query_row(
                    "SELECT 1 FROM batches WHERE batch = ?1",
                    [ToSqlOutput::Borrowed(ValueRef::Text(row.batch))],
                    |_| Ok(()),
                )
                .optional()?;
            if seen.is_some() {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
                    Some("batch already committed".into()),
                ));
            }
        }
        if !(0..=MAX_LINE).contains(&row.line) {
            return Err(rusqlite::Error::IntegralValueOutOfRange(4, row.line));
        }
        insert.bind_int(1, seq << 32 | row.line)?;
        insert.bind_int(4, row.line)?;
        insert.bind_int(9, row.segments)?;
        // SAFETY: the row's values stay where they are, unchanged, until the
        // tail is asked for the next row, after `execute`; a value bound for an
        // earlier row and not bound again is the tail's copy of it, which it
        // changes only when the value changes — and then it is bound again.
        unsafe {
            insert.bind_text(5, row.phone)?;
            insert.bind_text(7, row.text)?;
            for (bit, index, value) in [
                (changed::BATCH, 2, row.batch),
                (changed::SENDER, 6, row.sender),
                (changed::ENCODING, 8, row.encoding),
                (changed::SEND_AT, 10, row.send_at),
                (changed::EXPIRES_AT, 11, row.expires_at),
                (changed::TIMEZONE, 12, row.timezone),
            ] {
                if row.changed & bit != 0 {
                    insert.bind_text(index, value)?;
                }
            }
        }
        insert.execute()?;
    }
    Ok(())
}

/// A prepared statement whose text values are bound without a copy. rusqlite
/// binds text as `SQLITE_TRANSIENT`, so SQLite copies every value of every
/// row (an allocation and a free each); bound `SQLITE_STATIC`, SQLite reads
/// the caller's bytes when the statement runs.
struct StaticInsert<'c> {
    conn: &'c Connection,
    stmt: *mut rusqlite::ffi::sqlite3_stmt,
}

impl<'c> StaticInsert<'c> {
    fn prepare(conn: &'c Connection, sql: &str) -> rusqlite::Result<StaticInsert<'c>> {
        use rusqlite::ffi;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: a live connection handle, a pointer and length of valid
        // UTF-8, an out-pointer to our own local.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                conn.handle(),
                sql.as_ptr().cast(),
                sql.len() as std::ffi::c_int,
                ffi::SQLITE_PREPARE_PERSISTENT as std::ffi::c_uint,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        let insert = StaticInsert { conn, stmt };
        insert.check(rc)?;
        Ok(insert)
    }

    /// The connection's error for a failed call.
    fn check(&self, rc: std::ffi::c_int) -> rusqlite::Result<()> {
        use rusqlite::ffi;
        if rc == ffi::SQLITE_OK || rc == ffi::SQLITE_DONE {
            return Ok(());
        }
        // SAFETY: a live connection handle; the message is copied at once.
        let (code, message) = unsafe {
            let db = self.conn.handle();
            let message = std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(db));
            (
                ffi::sqlite3_extended_errcode(db),
                message.to_string_lossy().into_owned(),
            )
        };
        Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(code),
            Some(message),
        ))
    }

    fn bind_int(&mut self, index: std::ffi::c_int, value: i64) -> rusqlite::Result<()> {
        // SAFETY: our prepared statement.
        let rc = unsafe { rusqlite::ffi::sqlite3_bind_int64(self.stmt, index, value) };
        self.check(rc)
    }

    /// # Safety
    /// `value` must stay where it is, unchanged, until it is bound again or
    /// the statement is dropped: SQLite reads it at each [`Self::execute`].
    unsafe fn bind_text(&mut self, index: std::ffi::c_int, value: &[u8]) -> rusqlite::Result<()> {
        use rusqlite::ffi;
        // SAFETY: our prepared statement; `value` as the caller promised;
        // SQLITE_STATIC: SQLite neither copies nor frees it.
        let rc = unsafe {
            ffi::sqlite3_bind_text64(
                self.stmt,
                index,
                value.as_ptr().cast(),
                value.len() as ffi::sqlite3_uint64,
                ffi::SQLITE_STATIC(),
                ffi::SQLITE_UTF8 as std::ffi::c_uchar,
            )
        };
        self.check(rc)
    }

    /// Runs the statement once (it inserts, so it returns no rows).
    fn execute(&mut self) -> rusqlite::Result<()> {
        use rusqlite::ffi;
        // SAFETY: our prepared statement, with every parameter bound.
        let rc = unsafe { ffi::sqlite3_step(self.stmt) };
        // Reset even after an error (the error is the step's, read first).
        let result = self.check(rc);
        // SAFETY: as above.
        unsafe { ffi::sqlite3_reset(self.stmt) };
        result
    }
}

impl Drop for StaticInsert<'_> {
    fn drop(&mut self) {
        // SAFETY: our prepared statement, finalized once.
        unsafe { rusqlite::ffi::sqlite3_finalize(self.stmt) };
    }
}

/// When an archive's rows start entering the database (`[queue] pipeline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pipeline {
    /// While the archive is read, once reading proves faster than inserting.
    #[default]
    Auto,
    /// At once (holds the write lock for the whole reading).
    Always,
    /// After the whole archive is read and spooled.
    Never,
}

/// Rows read (after the first few) before the reading speed is judged.
const JUDGE_AFTER_ROWS: u64 = 20_000;

/// Rows per second a back-end inserts, learnt from its commits (f64 bits);
/// until the first, a rate well below a release build's on a small machine.
#[derive(Debug, Default)]
pub struct InsertRate(std::sync::atomic::AtomicU64);

const FIRST_INSERT_RATE: f64 = 300_000.0;

impl InsertRate {
    fn get(&self) -> f64 {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => FIRST_INSERT_RATE,
            bits => f64::from_bits(bits),
        }
    }

    /// Only big archives teach the rate: a few rows cost mostly the
    /// statement's setup. Waiting for the reader counts as inserting time,
    /// which errs towards spooling first.
    fn learn(&self, rows: u64, took: std::time::Duration) {
        if rows >= JUDGE_AFTER_ROWS {
            let rate = rows as f64 / took.as_secs_f64().max(1e-3);
            self.0
                .store(rate.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Pipeline {
    fn start_now(self, p: &Progress, rate: &InsertRate) -> bool {
        match self {
            Pipeline::Always => true,
            Pipeline::Never => false,
            Pipeline::Auto => p.rows_since_first() >= JUDGE_AFTER_ROWS && p.rate() >= rate.get(),
        }
    }
}
