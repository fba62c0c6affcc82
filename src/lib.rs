//! smsdrop turns zip archives dropped on an FTP/FTPS server into validated,
//! scheduled SMS in a durable queue.
//!
//! # Layout
//!
//! The pipeline is the architecture; each stage is one module:
//!
//! ```text
//!  FTP/FTPS ─▶ landing ─▶ poller ─▶ archive ─▶ text ─▶ csv ─▶ format ─▶ message ─▶ queue
//!  (front,     (.part +   (oldest   (zip,      (decode (records (template (phone,    + results
//!   serve)      rename)    first)    limits)    lines)  bounded) /plain)   schedule…)
//! ```
//!
//! - [`serve`]: the FTP server, the poll loop and the HTTP listener in one
//!   process; session caps, SIGHUP reload, systemd notification.
//! - [`front`]: the FTP/FTPS front: session caps, logins and the login
//!   guard, atomic landing with names, sizes and per-account storage.
//! - [`http`], [`metrics`]: `/metrics` (Prometheus) and `/healthz`.
//! - [`poller`]: customers' folders → work → processed, one archive at a time
//!   per account, resuming after a crash.
//! - [`config`]: the TOML configuration, validated in one step.
//! - [`batch`]: archive names `<login>_<YYYYMMDDhhmmss>.zip`.
//! - [`archive`]: opens a zip, enforces `[limits]`, rejects hostile entries, finds
//!   the layout, streams entries.
//! - [`text`]: account encoding → UTF-8, `BAD_ENCODING` with the line.
//! - [`csv`]: `;` CSV records with line numbers and bounded size.
//! - [`format`]: the template and template-less formats.
//! - [`message`]: per-row phone, sender, substitution, schedule, segments.
//! - [`zone`]: subscriber time zones for `localtime=1`.
//! - [`process`]: one archive end to end, rows to a [`process::RowSink`].
//! - [`queue`]: the queue interface, the row spool, and the SQLite and
//!   PostgreSQL back-ends, one transaction per archive.
//! - [`results`]: results JSON and CSV for the customer, written atomically.
//! - [`ingest`]: one archive into the queue and results (used by the poller and
//!   `smsdrop ingest`).
//! - [`check`]: the `smsdrop check` dry run and its output formats.
//! - [`error`]: the customer-visible error codes.

pub mod check;
pub mod config;
pub mod front;
pub mod ingest;
pub mod intake;
pub mod metrics;
pub mod ops;
pub mod password;
pub mod poller;
pub mod queue;
pub mod reports;
pub mod serve;
pub mod writeback;
