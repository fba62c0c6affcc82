//! What intake knows of the account an archive belongs to, and the limits it
//! holds archives to: plain values, built by the configuration
//! (`config::AccountConfig::profile`, `config::Limits::intake`), so that the
//! stages below never see the configuration itself.

use chrono_tz::Tz;
use encoding_rs::Encoding;

use crate::intake::sender::Sender;

/// An account as intake sees it (SPEC §2).
#[derive(Debug, Clone)]
pub struct Account {
    pub login: String,
    /// Approved senders, compared case-sensitively.
    pub senders: Vec<Sender>,
    /// Sender of the template-less format.
    pub default_sender: Sender,
    /// The zone senddates are written in.
    pub timezone: Tz,
    /// Encoding of the account's CSV files and results CSV.
    pub encoding: &'static Encoding,
    pub default_validity_minutes: u32,
}

impl Account {
    /// Is `sender` one of this account's approved senders (case-sensitive)?
    pub fn allows_sender(&self, sender: &Sender) -> bool {
        self.senders.contains(sender)
    }
}

/// The limits an archive is held to (SPEC §6 `LIMIT_EXCEEDED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Size of the zip file itself.
    pub max_archive_bytes: u64,
    /// Sum of the uncompressed sizes of the entries read.
    pub max_uncompressed_bytes: u64,
    /// Uncompressed / compressed size of one entry.
    pub max_compression_ratio: u64,
    /// Entries in the central directory (folders included).
    pub max_entries: usize,
    /// One line of a CSV file, in bytes after decoding to UTF-8, without its line end.
    pub max_line_bytes: usize,
}
