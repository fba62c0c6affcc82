//! `smsdrop check`: what an archive would do, without queueing or writing anything.
//!
//! `jsonl` prints one object per data row, then `{"summary": …}` (the results JSON
//! of SPEC §7). Rows are spooled to an anonymous temporary file while the archive is
//! read and printed only when it was not rejected as a whole, so the output never
//! shows rows of an archive that would queue nothing. `text` is for people: a short
//! summary and the rejected rows with their reasons.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;

use crate::config::{AccountConfig, Config};
use crate::intake::error::{ErrorCode, Rejection};
use crate::intake::message::schedule::rfc3339;
use crate::intake::message::{MessageId, RowOutcome};
use crate::intake::zone::{Fallback, ZoneResolver};
use crate::intake::{Job, Report, RowSink, Status, Summary, process};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Jsonl,
}

/// A problem with the command itself (exit code 2), not with the archive.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("cannot read archive {path}")]
    Archive { path: String, source: io::Error },
    #[error(
        "no account {0:?} in the configuration; pass --account LOGIN to check against another account"
    )]
    UnknownAccount(String),
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

/// One data row as `check --format jsonl` (and later `queue list`) prints it.
#[derive(Serialize)]
pub struct RowJson<'a> {
    pub line: u64,
    pub phone: &'a str,
    pub status: &'static str,
    pub code: Option<ErrorCode>,
    pub message: Option<&'a str>,
    pub message_id: Option<MessageId<'a>>,
    pub sender: Option<&'a str>,
    pub text: Option<&'a str>,
    pub encoding: Option<&'static str>,
    pub segments: Option<u32>,
    pub send_at: Option<String>,
    pub expires_at: Option<String>,
    pub timezone: Option<&'a str>,
}

impl<'a> RowJson<'a> {
    pub fn from_outcome(outcome: &'a RowOutcome) -> RowJson<'a> {
        match outcome {
            RowOutcome::Accepted(m) => RowJson {
                line: m.line,
                phone: m.phone.digits(),
                status: "accepted",
                code: None,
                message: None,
                message_id: Some(m.message_id()),
                sender: Some(m.sender.as_str()),
                text: Some(&m.text),
                encoding: Some(m.encoding.as_str()),
                segments: Some(m.segments),
                send_at: Some(rfc3339(m.send_at)),
                expires_at: Some(rfc3339(m.expires_at)),
                timezone: Some(m.timezone.name()),
            },
            RowOutcome::Rejected { line, phone, error } => RowJson {
                line: *line,
                phone,
                status: "rejected",
                code: Some(error.code),
                message: Some(&error.message),
                message_id: None,
                sender: None,
                text: None,
                encoding: None,
                segments: None,
                send_at: None,
                expires_at: None,
                timezone: None,
            },
        }
    }
}

/// Spools jsonl rows to a temporary file.
struct JsonlSpool(BufWriter<File>);

impl RowSink for JsonlSpool {
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        serde_json::to_writer(&mut self.0, &RowJson::from_outcome(outcome))
            .map_err(io::Error::from)
            .and_then(|()| self.0.write_all(b"\n"))
            .map_err(|e| spool_error(&e))
    }
}

fn spool_error(e: &io::Error) -> Rejection {
    Rejection::new(
        ErrorCode::InternalError,
        format!("cannot write the temporary row file: {e}"),
    )
}

/// Keeps the first rejected rows for the text report.
struct RejectedRows {
    shown: Vec<(u64, String, Rejection)>,
}

const TEXT_REJECTED_SHOWN: usize = 50;

impl RowSink for RejectedRows {
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        if let RowOutcome::Rejected { line, phone, error } = outcome
            && self.shown.len() < TEXT_REJECTED_SHOWN
        {
            self.shown.push((*line, phone.clone(), error.clone()));
        }
        Ok(())
    }
}

pub struct CheckRequest<'a> {
    pub archive: &'a Path,
    pub account: Option<&'a str>,
    pub now: Option<DateTime<Utc>>,
    pub format: OutputFormat,
}

/// Runs the check and writes its output; returns the archive's status.
pub fn run(
    config: &Config,
    zones: &dyn ZoneResolver,
    request: &CheckRequest<'_>,
    out: &mut dyn Write,
) -> Result<Status, UsageError> {
    let path = request.archive;
    let usage = |source| UsageError::Archive {
        path: path.display().to_string(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(usage)?;
    if !metadata.is_file() {
        return Err(usage(io::Error::other("not a regular file")));
    }
    let now = request.now.unwrap_or_else(Utc::now).trunc_subsecs(0);
    let arrival = crate::intake::arrival(path, now);
    let (file_name, received_at) = (&arrival.file_name, arrival.received_at);

    let account = resolve_account(config, file_name, request.account)?;
    // A dry run still reports DUPLICATE_BATCH when the queue already has the batch.
    let queue = crate::queue::open_read_only(&config.queue, &config.spool.state_dir)
        .ok()
        .flatten();
    let seen = |id: &crate::intake::batch::BatchId| match &queue {
        Some(q) => q.has_batch(id).map_err(Into::into),
        None => Ok(false),
    };
    let report_with = |sink: &mut dyn RowSink| match account {
        Some(account) => process(
            &Job::new(
                path,
                &arrival,
                account,
                config.limits.intake(),
                zones,
                now,
                Some(&seen),
            ),
            sink,
        ),
        None => name_only_report(file_name, received_at, now),
    };

    match request.format {
        OutputFormat::Jsonl => {
            let mut spool = JsonlSpool(BufWriter::new(tempfile::tempfile()?));
            let report = report_with(&mut spool);
            if report.summary.error.is_none() {
                let mut file = spool.0.into_inner().map_err(|e| e.into_error())?;
                file.rewind()?;
                io::copy(&mut file, out)?;
            }
            serde_json::to_writer(
                &mut *out,
                &SummaryLine {
                    summary: &report.summary,
                },
            )
            .map_err(io::Error::from)?;
            out.write_all(b"\n")?;
            Ok(report.summary.status)
        }
        OutputFormat::Text => {
            let mut rejected = RejectedRows { shown: Vec::new() };
            let report = report_with(&mut rejected);
            write_text(out, &report, account, &rejected.shown)?;
            Ok(report.summary.status)
        }
    }
}

/// The account an archive is for: `--account`, else the login in its name.
/// `Ok(None)` when the name is not valid (the archive is then `BAD_ARCHIVE_NAME`).
pub fn resolve_account<'c>(
    config: &'c Config,
    file_name: &str,
    explicit: Option<&str>,
) -> Result<Option<&'c AccountConfig>, UsageError> {
    let login = match explicit {
        Some(login) => login.to_owned(),
        None => match crate::intake::batch::BatchName::parse(file_name) {
            Ok(name) => name.login,
            Err(_) => return Ok(None),
        },
    };
    config
        .account(&login)
        .map(Some)
        .ok_or(UsageError::UnknownAccount(login))
}

/// The report for an archive whose name is not valid and no `--account` was given.
pub fn name_only_report(file_name: &str, received_at: DateTime<Utc>, now: DateTime<Utc>) -> Report {
    let error =
        crate::intake::batch::BatchName::parse(file_name).expect_err("called for bad names");
    Report {
        summary: Summary {
            batch: crate::intake::batch::batch_stem(file_name).to_owned(),
            status: Status::Rejected,
            format: None,
            rows: 0,
            accepted: 0,
            rejected: 0,
            error: Some(error),
            received_at,
            processed_at: now,
        },
        fallbacks: BTreeMap::new(),
    }
}

#[derive(Serialize)]
struct SummaryLine<'a> {
    summary: &'a Summary,
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Accepted => "accepted",
        Status::PartiallyAccepted => "partially accepted",
        Status::Rejected => "rejected",
    }
}

fn write_text(
    out: &mut dyn Write,
    report: &Report,
    account: Option<&AccountConfig>,
    rejected: &[(u64, String, Rejection)],
) -> io::Result<()> {
    let s = &report.summary;
    writeln!(out, "batch:    {}", s.batch)?;
    if let Some(account) = account {
        writeln!(
            out,
            "account:  {} (zone {}, encoding {})",
            account.login,
            account.timezone,
            account.encoding.name()
        )?;
    }
    if let Some(format) = s.format {
        let name = match format {
            crate::intake::format::Format::Template => "template (contacts.csv + template.csv)",
            crate::intake::format::Format::Plain => "template-less (one .csv/.txt file)",
        };
        writeln!(out, "format:   {name}")?;
    }
    match &s.error {
        Some(error) => {
            writeln!(out, "status:   REJECTED, nothing would be queued")?;
            writeln!(out, "error:    {} — {}", error.code, error.message)?;
        }
        None => {
            writeln!(
                out,
                "status:   {} — {} rows: {} accepted, {} rejected",
                status_word(s.status),
                s.rows,
                s.accepted,
                s.rejected
            )?;
            if s.rows == 0 {
                writeln!(out, "          the file has no data rows after its header")?;
            }
        }
    }
    let fell_back: u64 = report.fallbacks.values().sum();
    if fell_back > 0 {
        let zone = account.map(|a| a.timezone.name()).unwrap_or("-");
        writeln!(
            out,
            "zones:    {fell_back} localtime=1 rows used the account zone {zone}:"
        )?;
        for (why, n) in &report.fallbacks {
            writeln!(out, "          {n} — {}", Fallback::describe(*why))?;
        }
    }
    if s.error.is_none() && !rejected.is_empty() {
        writeln!(out, "rejected rows:")?;
        for (line, phone, error) in rejected {
            writeln!(
                out,
                "  line {line:<6} {phone:<16} {:<16} {}",
                error.code, error.message
            )?;
        }
        let more = s.rejected.saturating_sub(rejected.len() as u64);
        if more > 0 {
            writeln!(out, "  … and {more} more (use --format jsonl for all rows)")?;
        }
    }
    Ok(())
}
