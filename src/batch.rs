//! Archive names: `<login>_<YYYYMMDDhhmmss>.zip` (SPEC §3).
//!
//! The login is everything before the *last* `_` (logins may contain `_`), the
//! timestamp must be a real calendar date-time, and the batch id is the file name
//! without `.zip`. The timestamp orders an account's archives.

use chrono::{NaiveDate, NaiveDateTime};
use std::fmt;

use crate::error::{ErrorCode, Rejection, shown};

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
        let Some(id) = file_name.strip_suffix(".zip") else {
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
    fn login_is_everything_before_the_last_underscore() {
        let name = BatchName::parse("my_shop_20260101000000.zip").unwrap();
        assert_eq!(name.login, "my_shop");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "guest_20120207231932.ZIP",
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
