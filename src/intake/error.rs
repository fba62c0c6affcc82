//! The error codes customers see (SPEC §6), in one place.
//!
//! Every stage reports a failure as a [`Rejection`]: a stable [`ErrorCode`] plus a
//! human message that names the file, line and value at fault. Whether a rejection
//! ends the whole archive or only one row is decided by where it is raised (the
//! format parsers return row rejections as data, archive rejections as `Err`).

use serde::Serialize;
use std::fmt;

/// Stable codes of SPEC §6. The serialized form (`SCREAMING_SNAKE_CASE`) is the
/// contract: results files, `check --format jsonl` and the queue use it verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // Archive-level.
    BadArchiveName,
    LoginMismatch,
    DuplicateBatch,
    NotAZip,
    EncryptedArchive,
    LimitExceeded,
    UnsafeEntryName,
    UnknownLayout,
    BadEncoding,
    MissingColumn,
    BadTemplate,
    InvalidSender,
    SenderNotAllowed,
    InvalidValidity,
    /// Archive-level when in template.csv, row-level when in contacts.csv.
    InvalidSenddate,
    InvalidLocaltime,
    InternalError,
    // Row-level only.
    InvalidPhone,
    EmptyText,
    Expired,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::BadArchiveName,
        ErrorCode::LoginMismatch,
        ErrorCode::DuplicateBatch,
        ErrorCode::NotAZip,
        ErrorCode::EncryptedArchive,
        ErrorCode::LimitExceeded,
        ErrorCode::UnsafeEntryName,
        ErrorCode::UnknownLayout,
        ErrorCode::BadEncoding,
        ErrorCode::MissingColumn,
        ErrorCode::BadTemplate,
        ErrorCode::InvalidSender,
        ErrorCode::SenderNotAllowed,
        ErrorCode::InvalidValidity,
        ErrorCode::InvalidSenddate,
        ErrorCode::InvalidLocaltime,
        ErrorCode::InternalError,
        ErrorCode::InvalidPhone,
        ErrorCode::EmptyText,
        ErrorCode::Expired,
    ];

    /// The code as written in results and logs, e.g. `NOT_A_ZIP`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadArchiveName => "BAD_ARCHIVE_NAME",
            ErrorCode::LoginMismatch => "LOGIN_MISMATCH",
            ErrorCode::DuplicateBatch => "DUPLICATE_BATCH",
            ErrorCode::NotAZip => "NOT_A_ZIP",
            ErrorCode::EncryptedArchive => "ENCRYPTED_ARCHIVE",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::UnsafeEntryName => "UNSAFE_ENTRY_NAME",
            ErrorCode::UnknownLayout => "UNKNOWN_LAYOUT",
            ErrorCode::BadEncoding => "BAD_ENCODING",
            ErrorCode::MissingColumn => "MISSING_COLUMN",
            ErrorCode::BadTemplate => "BAD_TEMPLATE",
            ErrorCode::InvalidSender => "INVALID_SENDER",
            ErrorCode::SenderNotAllowed => "SENDER_NOT_ALLOWED",
            ErrorCode::InvalidValidity => "INVALID_VALIDITY",
            ErrorCode::InvalidSenddate => "INVALID_SENDDATE",
            ErrorCode::InvalidLocaltime => "INVALID_LOCALTIME",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::InvalidPhone => "INVALID_PHONE",
            ErrorCode::EmptyText => "EMPTY_TEXT",
            ErrorCode::Expired => "EXPIRED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A failure with its stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }

    /// An `INTERNAL_ERROR`: `what` failed because of `cause` (not the
    /// archive's fault: a full disk, a permission).
    pub fn internal(what: impl fmt::Display, cause: impl fmt::Display) -> Self {
        Rejection::new(ErrorCode::InternalError, format!("{what}: {cause}"))
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

/// Quotes a customer-supplied value for an error message: shows control characters
/// escaped and cuts very long values so one bad cell cannot flood a results file.
pub fn shown(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = String::with_capacity(value.len().min(MAX_CHARS) + 2);
    out.push('"');
    for (n, c) in value.chars().enumerate() {
        if n == MAX_CHARS {
            out.push('…');
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || c == '\u{feff}' => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Turns an I/O error from an entry or decoder back into the rejection it carries,
/// or an `INTERNAL_ERROR` naming `what` when it carries none.
pub fn rejection_from_io(e: std::io::Error, what: &str) -> Rejection {
    let carried = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Rejection>())
        .cloned();
    carried.unwrap_or_else(|| {
        Rejection::new(
            ErrorCode::InternalError,
            format!("cannot read {}: {e}", shown(what)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_codes_match_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(shown("a\"b"), "\"a\\\"b\"");
        assert_eq!(shown("\u{0}"), "\"\\u{0}\"");
        let long = "x".repeat(100);
        assert!(shown(&long).ends_with("…\""));
        assert_eq!(shown(&long).chars().count(), 64 + 3);
    }
}
