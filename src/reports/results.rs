//! Results written back to the customer (SPEC §7): `results/<batch>.json` and
//! `results/<batch>.csv`, each written under a hidden temporary name, flushed to
//! disk and renamed, so a customer never downloads a torn file.
//!
//! The CSV is streamed row by row while the archive is read (it can have millions
//! of rows) and is in the account's encoding; the JSON is UTF-8. A
//! `DUPLICATE_BATCH` rejection is written as `<batch>.duplicate.json` and never
//! touches the first result.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use encoding_rs::Encoding;

use crate::intake::error::{ErrorCode, Rejection};
use crate::intake::message::RowOutcome;
use crate::intake::message::schedule::TimeText;
use crate::intake::{RowSink, Summary};

const CSV_HEADER: &str =
    "line;phone;status;code;error;message_id;send_at;expires_at;timezone;segments";

fn internal(path: &Path, e: io::Error) -> Rejection {
    Rejection::internal(
        format_args!("cannot write results file {}", path.display()),
        e,
    )
}

/// `dir/.<name>.part`: hidden while it is written.
fn part_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.part"))
}

/// Flushes `file` to disk and renames `from` to `to`, then syncs the folder.
fn publish(file: File, from: &Path, to: &Path) -> io::Result<()> {
    file.sync_all()?;
    drop(file);
    rename_synced(from, to)
}

fn rename_synced(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    if let Some(dir) = to.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Publishes a sealed results CSV (see [`ResultsCsv::seal`]) as `<batch>.csv`.
/// Idempotent: when the part file is gone it was published already.
pub fn publish_csv(dir: &Path, batch: &str) -> Result<(), Rejection> {
    let part = part_path(dir, &format!("{batch}.csv"));
    let to = dir.join(format!("{batch}.csv"));
    match rename_synced(&part, &to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| internal(&to, e)),
    }
}

/// The results CSV, streamed while the archive is processed.
pub struct ResultsCsv {
    out: BufWriter<File>,
    encoding: &'static Encoding,
    part: PathBuf,
    line: String,
    // Most rows of an archive share their times: format each instant once.
    send_at: TimeText,
    expires_at: TimeText,
    /// The first write that failed: the fault is ours (a full disk), not the
    /// archive's, whatever the archive's summary then says.
    failed: Option<Rejection>,
}

impl ResultsCsv {
    pub fn create(dir: &Path, batch: &str, encoding: &'static Encoding) -> Result<Self, Rejection> {
        fs::create_dir_all(dir).map_err(|e| internal(dir, e))?;
        let part = part_path(dir, &format!("{batch}.csv"));
        let file = File::create(&part).map_err(|e| internal(&part, e))?;
        let mut csv = ResultsCsv {
            out: BufWriter::with_capacity(1 << 20, file),
            encoding,
            part,
            line: String::new(),
            send_at: TimeText::default(),
            expires_at: TimeText::default(),
            failed: None,
        };
        csv.line.push_str(CSV_HEADER);
        csv.write_line()?;
        Ok(csv)
    }

    fn write_line(&mut self) -> Result<(), Rejection> {
        self.line.push_str("\r\n");
        let (bytes, _, _) = self.encoding.encode(&self.line);
        let result = self.out.write_all(&bytes);
        self.line.clear();
        result.map_err(|e| self.fail(e))
    }

    /// Records the first failed write (see [`Self::failure`]).
    fn fail(&mut self, e: io::Error) -> Rejection {
        let rejection = internal(&self.part, e);
        self.failed.get_or_insert_with(|| rejection.clone());
        rejection
    }

    /// Appends `;` (but before the first field) and the value, quoted when
    /// it needs to be.
    fn field(line: &mut String, value: &str) {
        if !line.is_empty() {
            line.push(';');
        }
        // By bytes: these are ASCII, and a char pattern decodes UTF-8.
        if value
            .bytes()
            .any(|b| matches!(b, b';' | b'"' | b'\r' | b'\n'))
        {
            line.push('"');
            for (i, part) in value.split('"').enumerate() {
                if i > 0 {
                    line.push_str("\"\"");
                }
                line.push_str(part);
            }
            line.push('"');
        } else {
            line.push_str(value);
        }
    }

    /// Why writing the CSV failed, if it did (a row, or [`Self::sync`]).
    pub fn failure(&self) -> Option<&Rejection> {
        self.failed.as_ref()
    }

    /// Writes out what is buffered and makes it durable (before [`Self::seal`],
    /// which then finds little left to sync). A failure is kept for
    /// [`Self::failure`]: a failed fsync is not to be retried, the next one may
    /// report success for data that never reached the disk.
    pub fn sync(&mut self) {
        let result = self
            .out
            .flush()
            .and_then(|()| self.out.get_ref().sync_all());
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// Flushes the finished CSV to disk under its hidden name, so that it
    /// survives a crash after the queue commit; [`publish_csv`] then renames it.
    pub fn seal(self) -> Result<(), Rejection> {
        let part = self.part.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| internal(&part, e.into_error()))?;
        file.sync_all().map_err(|e| internal(&part, e))
    }

    /// Removes the unfinished CSV (the archive was rejected as a whole).
    pub fn abandon(self) {
        let part = self.part.clone();
        drop(self.out);
        let _ = fs::remove_file(part);
    }
}

impl RowSink for ResultsCsv {
    /// `line;phone;status;code;error;message_id;send_at;expires_at;timezone;segments`,
    /// built in one reused buffer (numbers are written as they are).
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        use std::fmt::Write as _;
        let line = &mut self.line;
        match outcome {
            RowOutcome::Accepted(m) => {
                let _ = write!(line, "{}", m.line);
                Self::field(line, m.phone.digits());
                line.push_str(";accepted;;");
                // `<batch>:<line>` needs no quoting: a batch name has no ';'.
                let _ = write!(line, ";{}", m.message_id());
                Self::field(line, self.send_at.text(m.send_at));
                Self::field(line, self.expires_at.text(m.expires_at));
                Self::field(line, m.timezone.name());
                let _ = write!(line, ";{}", m.segments);
            }
            RowOutcome::Rejected {
                line: n,
                phone,
                error,
            } => {
                let _ = write!(line, "{n}");
                Self::field(line, phone);
                line.push_str(";rejected");
                Self::field(line, error.code.as_str());
                Self::field(line, &error.message);
                line.push_str(";;;;;");
            }
        }
        self.write_line()
    }
}

/// Writes `<batch>.json` (or `<batch>.duplicate.json`) atomically; returns its path.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<PathBuf, Rejection> {
    fs::create_dir_all(dir).map_err(|e| internal(dir, e))?;
    let duplicate = summary
        .error
        .as_ref()
        .is_some_and(|e| e.code == ErrorCode::DuplicateBatch);
    let name = if duplicate {
        format!("{}.duplicate.json", summary.batch)
    } else {
        format!("{}.json", summary.batch)
    };
    let to = dir.join(&name);
    let part = part_path(dir, &name);
    let mut json = serde_json::to_vec_pretty(summary).expect("summary serializes");
    json.push(b'\n');
    let write = || -> io::Result<()> {
        let mut file = File::create(&part)?;
        file.write_all(&json)?;
        publish(file, &part, &to)
    };
    write().map_err(|e| internal(&to, e))?;
    Ok(to)
}
