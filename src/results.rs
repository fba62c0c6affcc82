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

use crate::error::{ErrorCode, Rejection};
use crate::message::RowOutcome;
use crate::message::schedule::rfc3339;
use crate::process::{RowSink, Summary};

const CSV_HEADER: &str =
    "line;phone;status;code;error;message_id;send_at;expires_at;timezone;segments";

fn internal(path: &Path, e: io::Error) -> Rejection {
    Rejection::new(
        ErrorCode::InternalError,
        format!("cannot write results file {}: {e}", path.display()),
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
        result.map_err(|e| internal(&self.part, e))
    }

    fn field(&mut self, value: &str) {
        if value.contains([';', '"', '\r', '\n']) {
            self.line.push('"');
            self.line.push_str(&value.replace('"', "\"\""));
            self.line.push('"');
        } else {
            self.line.push_str(value);
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
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        let fields: [String; 10] = match outcome {
            RowOutcome::Accepted(m) => [
                m.line.to_string(),
                m.phone.digits().to_owned(),
                "accepted".into(),
                String::new(),
                String::new(),
                m.message_id.clone(),
                rfc3339(m.send_at),
                rfc3339(m.expires_at),
                m.timezone.name().to_owned(),
                m.segments.to_string(),
            ],
            RowOutcome::Rejected { line, phone, error } => [
                line.to_string(),
                phone.clone(),
                "rejected".into(),
                error.code.as_str().into(),
                error.message.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ],
        };
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.line.push(';');
            }
            self.field(f);
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
