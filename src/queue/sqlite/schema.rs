//! The SQLite queue's schema and its migrations, and the connection settings
//! every use of the queue wants ([`configured`]). The schema is written once,
//! at start-up ([`create_schema`]); see `docs/queue.md` for consumers.

use std::path::Path;

use rusqlite::Connection;

use crate::queue::{QueueError, failed};

/// Version of the schema below (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;

const BATCHES: &str = "
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
    finished_at  TEXT,              -- results published, archive put away
    seq          INTEGER            -- commit order; messages.id = seq << 32 | line
);";

const MESSAGES: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY, -- batches.seq << 32 | line
    batch       TEXT NOT NULL,
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
    status      TEXT NOT NULL DEFAULT 'queued',
    message_id  TEXT GENERATED ALWAYS AS (batch || ':' || line) VIRTUAL
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_seq ON batches (seq);
CREATE INDEX IF NOT EXISTS messages_due ON messages (send_at) WHERE status = 'queued';
";

/// Versions 1 and 2 keyed messages by text (`message_id`, then `(batch,
/// line)`), which made every insert a string-compared B-tree search, and
/// stored `message_id` in each row. Version 3 keys them by an integer that
/// grows with every insert (SQLite's cheapest: an append), and computes
/// `message_id`: a quarter fewer bytes per row, a quarter less time. Both
/// older versions have the same columns, so one copy migrates either.
const MIGRATE_TO_3: &str = "
ALTER TABLE batches ADD COLUMN seq INTEGER;
UPDATE batches SET seq = rowid;
ALTER TABLE messages RENAME TO messages_old;
DROP INDEX IF EXISTS messages_due;
DROP INDEX IF EXISTS messages_batch;
";
const MIGRATE_TO_3_COPY: &str = "
INSERT INTO messages (id, batch, account, line, phone, sender, text, encoding, segments,
    send_at, expires_at, timezone, status)
SELECT (b.seq << 32) | m.line, m.batch, m.account, m.line, m.phone, m.sender, m.text,
    m.encoding, m.segments, m.send_at, m.expires_at, m.timezone, m.status
FROM messages_old m JOIN batches b ON b.batch = m.batch ORDER BY 1;
DROP TABLE messages_old;
";

/// What is kept of the WAL file after a big batch is checkpointed (reused
/// in place by the next batches, which is a little cheaper than growing it).
pub(super) const WAL_KEPT_BYTES: i64 = 16 << 20;

/// A connection with the settings every use of the queue wants.
pub(super) fn configured(path: &Path) -> Result<Connection, QueueError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| failed(&dir.display().to_string(), e))?;
    }
    let conn = Connection::open(path).map_err(|e| failed("open", e))?;
    // Before the first table exists (ignored afterwards): SQLite's biggest
    // pages. A 1M-row archive is stored, committed and checkpointed ~20%
    // faster than with 16 KiB (a quarter of the pages, WAL frames and
    // B-tree splits for the same bytes); a consumer updating rows one at a
    // time writes 64 KiB per touched page, so claim in bulk (docs/queue.md).
    conn.pragma_update(None, "page_size", 65536)
        .map_err(|e| failed("page_size", e))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| failed("WAL", e))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| failed("synchronous", e))?;
    // Another archive may hold the write lock for as long as it takes to read
    // (seconds per million rows): wait for it rather than fail the archive.
    conn.busy_timeout(std::time::Duration::from_secs(300))
        .map_err(|e| failed("busy_timeout", e))?;
    // 8 MiB of page cache, not the default 2: the fastest for big archives,
    // which spill dirty pages to the WAL before their commit whatever the
    // size; more only costs memory (docs/performance.md).
    conn.pragma_update(None, "cache_size", -8192)
        .map_err(|e| failed("cache_size", e))?;
    // No checkpoint inside a commit: `tidy` runs it once the archive's
    // results are out (a 1M-row batch's checkpoint takes 0.2–0.3 s).
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| failed("wal_autocheckpoint", e))?;
    // SQLite reuses its WAL file at the size of the biggest transaction so
    // far (1.4 GB after a 5M-row archive, for good): the first commit after
    // a complete checkpoint cuts it back to this.
    conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)
        .map_err(|e| failed("journal_size_limit", e))?;
    Ok(conn)
}

/// Creates or migrates the schema (once, at start-up: a write transaction).
pub fn create_schema(path: &Path) -> Result<(), QueueError> {
    let mut conn = configured(path)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| failed("user_version", e))?;
    if version > SCHEMA_VERSION {
        return Err(failed(
            "schema",
            format!("database schema {version} is newer than this smsdrop ({SCHEMA_VERSION})"),
        ));
    }
    if version < SCHEMA_VERSION {
        // One transaction: a crash mid-migration leaves version 1 intact.
        let tx = conn.transaction().map_err(|e| failed("schema", e))?;
        let migrate = |sql| {
            tx.execute_batch(sql)
                .map_err(|e| failed(&format!("migration {version}→3"), e))
        };
        if version > 0 {
            migrate(MIGRATE_TO_3)?;
        }
        tx.execute_batch(BATCHES)
            .and_then(|()| tx.execute_batch(MESSAGES))
            .map_err(|e| failed("schema", e))?;
        if version > 0 {
            migrate(MIGRATE_TO_3_COPY)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| failed("user_version", e))?;
        tx.commit().map_err(|e| failed("schema", e))?;
    }
    Ok(())
}
