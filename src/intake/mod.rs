//! Intake: one archive → row outcomes (SPEC §3–§6), with no queue and no file
//! written. Each stage is one module, in the order an archive meets them:
//!
//! ```text
//!  batch ─▶ archive ─▶ text ─▶ csv ─▶ format ─▶ message ─▶ row outcomes
//!  (name)   (zip,      (decode (records (template (phone, sender,
//!            limits)    lines)  bounded) /plain)   schedule, zone…)
//! ```
//!
//! - [`batch`]: archive names `<login>_<YYYYMMDDhhmmss>.zip`, temporary names.
//! - [`archive`]: opens a zip, enforces the limits, rejects hostile entries,
//!   finds the layout, streams entries.
//! - [`text`]: the account's encoding → UTF-8, `BAD_ENCODING` with the line.
//! - [`csv`]: `;` CSV records with line numbers, bounded in size.
//! - [`format`]: the template and template-less formats.
//! - [`phone`], [`sender`]: the phone number and the sender of a message.
//! - [`message`]: per row: substitution, schedule, segments, the outcome.
//! - [`zone`]: subscriber time zones for `localtime=1`.
//! - [`error`]: the error codes customers see.
//! - [`account`]: what intake knows of an account, and its limits.
//! - [`row`]: the [`RowSink`] rows go to, the [`Context`] and [`Tally`] of
//!   the parsers.
//! - [`process`]: one archive end to end, rows to a [`RowSink`].
//!
//! Nothing here imports a stage above it (the queue, the results, the
//! server): they call [`process`] and receive rows through a [`RowSink`].

pub mod account;
pub mod archive;
pub mod batch;
pub mod csv;
pub mod error;
pub mod format;
pub mod message;
pub mod phone;
pub mod process;
pub mod row;
pub mod sender;
pub mod text;
pub mod zone;

pub use process::*;
pub use row::{Context, RowSink, Tally, Tee};
