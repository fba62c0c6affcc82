//! Archive names: `<login>_<YYYYMMDDhhmmss>.zip` (SPEC §3), the extension in
//! any case.
//!
//! The login is everything before the *last* `_` (logins may contain `_`), the
//! timestamp must be a real calendar date-time, and the batch id is the file name
//! without its extension. The timestamp orders an account's archives.
//!
//! Also the names customers' tools upload under before renaming to the final
//! name ([`is_temporary_name`]): those are never processed.

use chrono::{NaiveDate, NaiveDateTime};
use std::fmt;

use crate::intake::error::{ErrorCode, Rejection, shown};

/// A parsed, valid archive name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchName {
    /// `guest_20120207231932`
    pub id: BatchId,
    /// `guest`
    pub login: String,
    /// The timestamp in the name, as written (no zone: it only orders archives).
    pub stamp: NaiveDateTime,
}

/// The batch id: the archive's file name without `.zip`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(String);

impl BatchId {
    /// The id of a batch whose name was parsed before (a stored summary's
    /// `batch`).
    pub fn new(id: impl Into<String>) -> BatchId {
        BatchId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl BatchName {
    /// Parses a file name (not a path). Fails with `BAD_ARCHIVE_NAME`.
    pub fn parse(file_name: &str) -> Result<BatchName, Rejection> {
        let bad = |why: &str| {
            Rejection::new(
                ErrorCode::BadArchiveName,
                format!(
                    "archive name {}: {why}; expected <login>_<YYYYMMDDhhmmss>.zip, e.g. guest_20120207231932.zip",
                    shown(file_name)
                ),
            )
        };
        let Some(id) = strip_zip(file_name) else {
            return Err(bad("does not end in .zip"));
        };
        let Some((login, stamp)) = id.rsplit_once('_') else {
            return Err(bad("has no '_' between login and timestamp"));
        };
        if login.is_empty() {
            return Err(bad("the login before '_' is empty"));
        }
        let stamp = parse_stamp(stamp).ok_or_else(|| {
            bad(&format!(
                "{} is not a real date-time in YYYYMMDDhhmmss form",
                shown(stamp)
            ))
        })?;
        Ok(BatchName {
            id: BatchId(id.to_owned()),
            login: login.to_owned(),
            stamp,
        })
    }
}

/// The name without its `.zip` extension (any case).
fn strip_zip(name: &str) -> Option<&str> {
    let at = name.len().checked_sub(4)?;
    let (stem, ext) = (name.get(..at)?, name.get(at..)?);
    ext.eq_ignore_ascii_case(".zip").then_some(stem)
}

/// The batch id an archive named `file_name` gets: the name without its
/// `.zip` extension (any case), or the whole name when it has none.
pub fn batch_stem(file_name: &str) -> &str {
    strip_zip(file_name).unwrap_or(file_name)
}

/// Does `name` end in `.zip`, in any case (`.ZIP` from Windows tools)?
pub fn is_archive_name(name: &str) -> bool {
    strip_zip(name).is_some()
}

/// Is `name` one that customers' tools upload under and then rename to the
/// final name: `*.tmp`, `*.part` (ncftpput -S, many scripts), `*.filepart`
/// (WinSCP), `.in.*` (lftp's `xfer:use-temp-file`), `tmp.*` (ncftpput -T)?
/// Such a file is kept as it is and never processed.
pub fn is_temporary_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".tmp", ".part", ".filepart"]
        .iter()
        .any(|suffix| lower.ends_with(suffix))
        || lower.starts_with(".in.")
        || lower.starts_with("tmp.")
}

/// Is `name` an archive to process once it is in an account's folder: a
/// `*.zip` name, neither hidden (an upload in progress) nor temporary?
pub fn is_archive_to_process(name: &str) -> bool {
    is_archive_name(name) && !name.starts_with('.') && !is_temporary_name(name)
}

fn parse_stamp(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |from: usize, to: usize| s[from..to].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(n(0, 4)? as i32, n(4, 6)?, n(6, 8)?)?.and_hms_opt(
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_of_the_source_document() {
        let name = BatchName::parse("guest_20120207231932.zip").unwrap();
        assert_eq!(name.id.as_str(), "guest_20120207231932");
        assert_eq!(name.login, "guest");
        assert_eq!(name.stamp.to_string(), "2012-02-07 23:19:32");
    }

    #[test]
    fn the_extension_may_be_upper_case() {
        let name = BatchName::parse("guest_20120207231932.ZIP").unwrap();
        assert_eq!(name.id.as_str(), "guest_20120207231932");
        assert!(is_archive_name("a.Zip") && !is_archive_name("zip") && !is_archive_name("é.zi"));
    }

    #[test]
    fn temporary_names() {
        for name in [
            "guest_20120207231932.zip.tmp",
            "guest_20120207231932.zip.part",
            "guest_20120207231932.zip.filepart",
            ".in.guest_20120207231932.zip",
            "tmp.guest_20120207231932.zip",
            "TMP.x.ZIP",
        ] {
            assert!(is_temporary_name(name), "{name}");
        }
        for name in [
            "guest_20120207231932.zip",
            "tmpl_20120207231932.zip",
            ".x.zip",
        ] {
            assert!(!is_temporary_name(name), "{name}");
        }
        assert!(is_archive_to_process("guest_20120207231932.ZIP"));
        for name in [
            "tmp.guest_20120207231932.zip",
            ".in.guest_20120207231932.zip",
            ".guest_20120207231932.zip.uploading",
            ".x.zip",
            "guest_20120207231932.zip.part",
        ] {
            assert!(!is_archive_to_process(name), "{name}");
        }
    }

    #[test]
    fn login_is_everything_before_the_last_underscore() {
        let name = BatchName::parse("my_shop_20260101000000.zip").unwrap();
        assert_eq!(name.login, "my_shop");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "guest_20120207231932.zip.tmp",
            "guest20120207231932.zip",
            "_20120207231932.zip",
            "guest_2012020723193.zip",
            "guest_201202072319321.zip",
            "guest_20120230000000.zip",
            "guest_20121301000000.zip",
            "guest_20120207240000.zip",
            "guest_20120207236000.zip",
            "guest_2012020723193a.zip",
            "guest_+0120207231932.zip",
            "guest_20120207231932",
        ] {
            let err = BatchName::parse(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadArchiveName, "{bad}");
            assert!(err.message.contains(bad), "{}", err.message);
        }
    }

    #[test]
    fn leap_day_is_a_real_date() {
        assert!(BatchName::parse("guest_20240229120000.zip").is_ok());
        assert!(BatchName::parse("guest_20230229120000.zip").is_err());
    }
}
