//! Message builder: one data row → a queued message or a row rejection (SPEC §4, §5).
//!
//! Checks run in a fixed order, and the first failure is the row's code:
//! phone (`INVALID_PHONE`) → senddate (`INVALID_SENDDATE`) → text (`EMPTY_TEXT`) →
//! schedule (`EXPIRED`). A bad row is data, not an error: it becomes a
//! [`RowOutcome::Rejected`] and the archive goes on.

pub mod schedule;
pub mod segments;
pub mod substitute;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use std::sync::Arc;

use crate::intake::account::Account;
use crate::intake::error::{ErrorCode, Rejection, shown};
use crate::intake::phone::Msisdn;
use crate::intake::sender::Sender;
use crate::intake::zone::{Fallback, ZoneResolver};
use schedule::{Schedule, local_to_utc, parse_senddate, rfc3339};
use segments::SmsEncoding;

/// An accepted message, ready for the queue (SPEC §8).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// With `line`, the message id `<batch>:<line>` ([`Message::message_id`]):
    /// stable, so a re-run can never queue a row twice. Shared by the rows of
    /// an archive rather than formatted for each.
    pub batch: Arc<str>,
    pub line: u64,
    pub phone: Msisdn,
    pub sender: Sender,
    pub text: String,
    pub encoding: SmsEncoding,
    pub segments: u32,
    pub send_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The zone the senddate was read in (the account's when there was none).
    pub timezone: Tz,
}

impl Message {
    pub fn message_id(&self) -> MessageId<'_> {
        MessageId {
            batch: &self.batch,
            line: self.line,
        }
    }
}

/// `<batch>:<line>`, written where it is shown rather than kept per row.
pub struct MessageId<'a> {
    batch: &'a str,
    line: u64,
}

impl std::fmt::Display for MessageId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.batch, self.line)
    }
}

/// As its text (`check --format jsonl`), written without a `String` per row.
impl serde::Serialize for MessageId<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What became of one data row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    Accepted(Message),
    Rejected {
        line: u64,
        /// The phone as written (normalised when it was valid).
        phone: String,
        error: Rejection,
    },
}

impl RowOutcome {
    pub fn line(&self) -> u64 {
        match self {
            RowOutcome::Accepted(m) => m.line,
            RowOutcome::Rejected { line, .. } => *line,
        }
    }
}

/// One data row as the format parsers read it.
pub struct RowInput<'a> {
    pub line: u64,
    pub phone: &'a str,
    /// The contact's own senddate cell, when the column exists.
    pub senddate: Option<&'a str>,
    /// The message text after substitution.
    pub text: &'a str,
}

/// Settings shared by every row of one archive.
pub struct Builder<'a> {
    pub batch: Arc<str>,
    pub account: &'a Account,
    pub zones: &'a dyn ZoneResolver,
    pub now: DateTime<Utc>,
    pub sender: Sender,
    pub validity_minutes: u32,
    /// template.csv's senddate, for contacts without their own.
    pub default_senddate: Option<NaiveDateTime>,
    /// Read senddates in the subscriber's zone.
    pub localtime: bool,
    /// The data file's name in the archive, for messages.
    pub file: String,
}

impl Builder<'_> {
    /// Builds one row; also says when the subscriber zone fell back to the account's.
    pub fn build(&self, row: &RowInput<'_>) -> (RowOutcome, Option<Fallback>) {
        let reject = |phone: &str, code: ErrorCode, message: String| RowOutcome::Rejected {
            line: row.line,
            phone: phone.to_owned(),
            error: Rejection::new(code, format!("{} line {}: {message}", self.file, row.line)),
        };
        let raw_phone = row.phone.trim();
        let phone = match Msisdn::parse(raw_phone) {
            Ok(p) => p,
            Err(why) => {
                let message = format!("invalid phone {} ({why})", shown(raw_phone));
                return (reject(raw_phone, ErrorCode::InvalidPhone, message), None);
            }
        };
        let senddate = match row.senddate.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => match parse_senddate(s) {
                Some(t) => Some(t),
                None => {
                    let message = format!(
                        "invalid senddate {}; use YYYYMMDDThh:mm:ss, YYYY-MM-DDThh:mm:ss or YYYY-MM-DD hh:mm:ss",
                        shown(s)
                    );
                    return (
                        reject(phone.digits(), ErrorCode::InvalidSenddate, message),
                        None,
                    );
                }
            },
            None => self.default_senddate,
        };
        if row.text.trim().is_empty() {
            let message = format!("the message text is empty for phone {}", phone.digits());
            return (reject(phone.digits(), ErrorCode::EmptyText, message), None);
        }
        let (timezone, fallback) = match senddate {
            Some(_) if self.localtime => {
                let answer = self.zones.subscriber_zone(&phone, self.account.timezone);
                (answer.tz, answer.fallback)
            }
            _ => (self.account.timezone, None),
        };
        let requested = senddate.map(|local| local_to_utc(local, timezone));
        let schedule = match Schedule::compute(requested, self.now, self.validity_minutes) {
            Ok(s) => s,
            Err(expires_at) => {
                let message = format!(
                    "send date {} ({timezone}) + validity {} min expired at {}, before processing time {}",
                    senddate.map(|t| t.to_string()).unwrap_or_default(),
                    self.validity_minutes,
                    rfc3339(expires_at),
                    rfc3339(self.now)
                );
                return (
                    reject(phone.digits(), ErrorCode::Expired, message),
                    fallback,
                );
            }
        };
        let (encoding, segments) = segments::count(row.text);
        let message = Message {
            batch: self.batch.clone(),
            line: row.line,
            phone,
            sender: self.sender.clone(),
            text: row.text.to_owned(),
            encoding,
            segments,
            send_at: schedule.send_at,
            expires_at: schedule.expires_at,
            timezone,
        };
        (RowOutcome::Accepted(message), fallback)
    }
}
