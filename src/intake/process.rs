//! One archive, start to end: name → account → archive checks → format → rows.
//!
//! [`process`] is what `check`, `ingest` and the poller all call. Rows go to a
//! [`RowSink`] as soon as they are built, so memory does not grow with the archive;
//! the sink must treat them as provisional until `process` returns a summary
//! without an archive-level error (`check` spools them to a temporary file, the
//! queue keeps them in an open transaction). On an archive-level error every row
//! already emitted is void and the summary counts none.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::intake::account::{Account, Limits};
use crate::intake::archive::{Archive, Layout};
use crate::intake::batch::{BatchId, BatchName};
use crate::intake::error::{ErrorCode, Rejection};
use crate::intake::format::{self, Format};
use crate::intake::message::schedule::rfc3339;
use crate::intake::row::{Context, RowSink, Tally};
use crate::intake::zone::{Fallback, ZoneResolver};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Accepted,
    PartiallyAccepted,
    Rejected,
}

impl Status {
    /// As written in results: `accepted`, `partially_accepted`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::PartiallyAccepted => "partially_accepted",
            Status::Rejected => "rejected",
        }
    }
}

/// The results JSON of SPEC §7.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Summary {
    pub batch: String,
    pub status: Status,
    pub format: Option<Format>,
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub error: Option<Rejection>,
    #[serde(serialize_with = "ser_time")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_time")]
    pub processed_at: DateTime<Utc>,
}

fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// The summary plus what `check` explains beyond it.
#[derive(Debug, Clone)]
pub struct Report {
    pub summary: Summary,
    pub fallbacks: BTreeMap<Fallback, u64>,
}

/// Answers whether a batch id was already processed.
pub type SeenBatch<'a> = dyn Fn(&BatchId) -> Result<bool, Rejection> + 'a;

/// One archive to process.
pub struct Job<'a> {
    pub path: &'a Path,
    /// The archive's file name as uploaded (decides batch id and login).
    pub file_name: &'a str,
    /// The account whose folder the archive is in (or `check --account`).
    pub account: &'a Account,
    pub limits: Limits,
    pub zones: &'a dyn ZoneResolver,
    /// Processing time, whole seconds.
    pub now: DateTime<Utc>,
    /// When the upload completed.
    pub received_at: DateTime<Utc>,
    /// Whether a batch id was already processed (`DUPLICATE_BATCH`); `None`
    /// when there is no queue to ask.
    pub seen: Option<&'a SeenBatch<'a>>,
}

impl<'a> Job<'a> {
    /// The job for the archive at `path`, which arrived as `arrival`.
    pub fn new(
        path: &'a Path,
        arrival: &'a Arrival,
        account: &'a Account,
        limits: Limits,
        zones: &'a dyn ZoneResolver,
        now: DateTime<Utc>,
        seen: Option<&'a SeenBatch<'a>>,
    ) -> Job<'a> {
        Job {
            path,
            file_name: &arrival.file_name,
            account,
            limits,
            zones,
            now,
            received_at: arrival.received_at,
            seen,
        }
    }
}

/// An archive file as it arrived.
pub struct Arrival {
    pub file_name: String,
    /// When the upload completed: its modification time, whole seconds, never
    /// after `now`.
    pub received_at: DateTime<Utc>,
    pub bytes: u64,
}

/// Reads an archive's name, upload time and size (one `stat`).
pub fn arrival(path: &Path, now: DateTime<Utc>) -> Arrival {
    use chrono::SubsecRound;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = std::fs::metadata(path).ok();
    let received_at = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .map(DateTime::<Utc>::from)
        .unwrap_or(now)
        .trunc_subsecs(0)
        .min(now);
    Arrival {
        file_name,
        received_at,
        bytes: meta.map_or(0, |m| m.len()),
    }
}

/// Processes one archive; never panics on input, never returns half a batch.
pub fn process(job: &Job<'_>, sink: &mut dyn RowSink) -> Report {
    let mut format = None;
    let mut tally = Tally::default();
    let batch = crate::intake::batch::batch_stem(job.file_name).to_owned();
    let error = run(job, sink, &mut format, &mut tally).err();
    if error.is_some() {
        tally = Tally::default();
    }
    let status = match (&error, tally.accepted, tally.rejected) {
        (Some(_), _, _) | (None, 0, _) => Status::Rejected,
        (None, _, 0) => Status::Accepted,
        (None, _, _) => Status::PartiallyAccepted,
    };
    Report {
        summary: Summary {
            batch,
            status,
            format,
            rows: tally.rows,
            accepted: tally.accepted,
            rejected: tally.rejected,
            error,
            received_at: job.received_at,
            processed_at: job.now,
        },
        fallbacks: tally.fallbacks,
    }
}

fn run(
    job: &Job<'_>,
    sink: &mut dyn RowSink,
    format_out: &mut Option<Format>,
    tally: &mut Tally,
) -> Result<(), Rejection> {
    let name = BatchName::parse(job.file_name)?;
    if name.login != job.account.login {
        return Err(Rejection::new(
            ErrorCode::LoginMismatch,
            format!(
                "archive {} is named for login \"{}\" but was given to account \"{}\"",
                job.file_name, name.login, job.account.login
            ),
        ));
    }
    if let Some(seen) = job.seen
        && seen(&name.id)?
    {
        return Err(Rejection::new(
            ErrorCode::DuplicateBatch,
            format!(
                "batch {} was already processed; upload a new archive with a new timestamp in its name",
                name.id
            ),
        ));
    }
    let mut archive = Archive::open(job.path, &job.limits)?;
    let ctx = Context {
        batch: &name.id,
        account: job.account,
        limits: job.limits,
        zones: job.zones,
        now: job.now,
    };
    match archive.layout().clone() {
        Layout::Template { contacts, template } => {
            *format_out = Some(Format::Template);
            let row = format::template::read_template(&mut archive, &template, &ctx)?;
            format::template::read_contacts(&mut archive, &contacts, row, &ctx, sink, tally)
        }
        Layout::Plain { data } => {
            *format_out = Some(Format::Plain);
            format::plain::read(&mut archive, &data, &ctx, sink, tally)
        }
    }
}
