//! Format parsers: CSV records → row inputs for the message builder (SPEC §3.1, §3.2).
//!
//! [`template`] reads template.csv once (whole-archive errors) and then streams
//! contacts.csv; [`plain`] streams the single file of the template-less format.
//! Both hand every data row to the [`crate::intake::message::Builder`] and pass its outcome
//! to the caller's [`crate::intake::row::RowSink`] as soon as it is known.

pub mod plain;
pub mod template;

use serde::Serialize;

use crate::intake::archive::{Archive, EntryRef, LimitedEntry};
use crate::intake::csv::{Record, Records};
use crate::intake::error::rejection_from_io;
use crate::intake::error::{ErrorCode, Rejection};
use crate::intake::row::Context;
use crate::intake::text::DecodedText;

/// The records of a CSV entry after its header.
pub type CsvRecords<'a> = Records<DecodedText<LimitedEntry<'a>>>;

/// Opens a CSV entry in the account's encoding and reads its header;
/// `first_column` names the column an empty file is missing.
pub fn open_csv<'a>(
    archive: &'a mut Archive,
    entry: &EntryRef,
    ctx: &Context<'_>,
    first_column: &str,
) -> Result<(Header, CsvRecords<'a>), Rejection> {
    let file = &entry.name;
    let text = DecodedText::new(
        archive.entry(entry)?,
        ctx.account.encoding,
        ctx.limits.max_line_bytes,
        file,
    );
    let mut records = Records::new(text, ctx.limits.max_line_bytes, file);
    let header = match records
        .next_record()
        .map_err(|e| rejection_from_io(e, file))?
    {
        Some(record) => Header::new(&record, file),
        None => return Err(no_header(file, first_column)),
    };
    Ok((header, records))
}

/// The format of an archive, as reported in results (`"template"` / `"plain"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Template,
    Plain,
}

impl Format {
    /// As written in results and the queue: `template` or `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Template => "template",
            Format::Plain => "plain",
        }
    }
}

/// A header row: names trimmed, lower-cased, a stray BOM removed.
pub struct Header {
    pub names: Vec<String>,
    file: String,
}

impl Header {
    pub fn new(record: &Record<'_>, file: &str) -> Header {
        let names = record
            .iter()
            .map(|n| n.trim_start_matches('\u{feff}').trim().to_lowercase())
            .collect();
        Header {
            names,
            file: file.to_owned(),
        }
    }

    /// Index of column `name` (lower-case). Two columns of that name are ambiguous
    /// and rejected, since either could be the one the customer meant.
    pub fn find(&self, name: &str) -> Result<Option<usize>, Rejection> {
        let mut found = self.names.iter().enumerate().filter(|(_, n)| *n == name);
        let first = found.next().map(|(i, _)| i);
        if let Some((second, _)) = found.next() {
            return Err(Rejection::new(
                ErrorCode::MissingColumn,
                format!(
                    "{} line 1: column \"{name}\" appears twice (columns {} and {}); keep one",
                    self.file,
                    first.expect("first exists") + 1,
                    second + 1
                ),
            ));
        }
        Ok(first)
    }

    /// Index of a required column.
    pub fn require(&self, name: &str) -> Result<usize, Rejection> {
        self.find(name)?.ok_or_else(|| self.missing(name))
    }

    pub fn missing(&self, name: &str) -> Rejection {
        Rejection::new(
            ErrorCode::MissingColumn,
            format!(
                "{} line 1: required column \"{name}\" is missing (header: {})",
                self.file,
                self.describe()
            ),
        )
    }

    fn describe(&self) -> String {
        if self.names.is_empty() {
            return "empty".into();
        }
        let mut s = self.names.join(";");
        if s.len() > 120 {
            let mut cut = 120;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        format!("\"{s}\"")
    }
}

/// The rejection for a file that has no header line at all.
pub fn no_header(file: &str, column: &str) -> Rejection {
    Rejection::new(
        ErrorCode::MissingColumn,
        format!("{file}: the file is empty; expected a header line with column \"{column}\""),
    )
}
