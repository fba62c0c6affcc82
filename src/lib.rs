//! smsdrop turns zip archives dropped on an FTP/FTPS server into validated,
//! scheduled SMS in a durable queue.
//!
//! # Layout
//!
//! The pipeline is the architecture; the folders show it, and imports run
//! one way, from the top of this list to the bottom (docs/architecture.md):
//!
//! ```text
//!  front ──▶ landing ──▶ poller ──▶ ingest ──▶ intake ──▶ queue ──▶ reports
//!  (FTP/FTPS,  (.uploading  (oldest    (one       (archive →  (one      (results
//!   logins,     + rename)    first,     archive    row         transaction  JSON/CSV)
//!   caps)                    resume)    end to end) outcomes)   per archive)
//! ```
//!
//! - [`serve`]: wires it together: `serve::run(listeners, config, …)`; SIGHUP
//!   reload.
//! - [`ops`]: what operators talk to: `/metrics` and `/healthz` (which asks
//!   the front whether a session can open), systemd.
//! - [`front`]: what customers talk to: session caps, logins and the login
//!   guard, the storage back-end (atomic landing, temporary names, quotas,
//!   listings). SFTP will be a sibling of its FTP wiring.
//! - [`poller`]: customers' folders → work → processed, one archive at a time
//!   per account, resuming after a crash; the poll scheduler.
//! - [`check`]: the `smsdrop check` dry run and its output formats.
//! - [`ingest`]: one archive end to end: intake → queue → results.
//! - [`config`]: the TOML configuration, validated in one step; the running
//!   configuration and its reload.
//! - [`queue`]: the [`queue::Queue`] trait, typed errors, the back-end built
//!   once ([`queue::Backend`]), SQLite and PostgreSQL, the row file. The SMPP
//!   dispatcher (SPEC §12) will take due messages from here.
//! - [`reports`]: what goes back to the customer: results (SPEC §7); delivery
//!   reports (SPEC §13) next.
//! - [`intake`]: one archive → row outcomes, no queue and no file written:
//!   names, zip, text, CSV, formats, phone, sender, messages, zones, customer
//!   error codes.
//! - Leaves, used by several stages and importing none: [`metrics`]
//!   (Prometheus counters), [`password`] (argon2id), [`writeback`] (asking the
//!   kernel to write back early).

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
