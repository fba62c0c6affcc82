//! Template-less format (SPEC §3.2): one .csv/.txt file, line 1 a header, then one
//! message per line with the phone (`TELRN_LONG`) and the text (`TEXT`).
//!
//! Columns are found by header name (case-insensitive); a header that does not name
//! them means position: `TELRN_LONG` is the first column, `TEXT` the last. An
//! unquoted `;` inside the text splits it into extra fields; since the text column is
//! known, those extra fields are joined back with `;`, and columns after the text
//! shift by the same count.

use crate::intake::archive::{Archive, EntryRef};
use crate::intake::csv::Record;
use crate::intake::error::rejection_from_io;
use crate::intake::error::{ErrorCode, Rejection};
use crate::intake::format::{Header, open_csv};
use crate::intake::message::{Builder, RowInput};
use crate::intake::row::{Context, RowSink, Tally};

/// Column positions of the phone and the text, as the header gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub phone: usize,
    pub text: usize,
    /// Fields in the header.
    pub width: usize,
}

impl Columns {
    pub fn from_header(header: &Header) -> Result<Columns, Rejection> {
        let width = header.names.len();
        let named_phone = header.find("telrn_long")?;
        let named_text = header.find("text")?;
        let text = named_text.unwrap_or(width.saturating_sub(1));
        let phone = named_phone.unwrap_or(if text == 0 { 1 } else { 0 });
        if width < 2 || phone == text {
            return Err(Rejection::new(
                ErrorCode::MissingColumn,
                header
                    .missing(if named_phone.is_none() {
                        "TELRN_LONG"
                    } else {
                        "TEXT"
                    })
                    .message
                    + "; the header needs a phone and a text column",
            ));
        }
        Ok(Columns { phone, text, width })
    }

    /// The phone and text of a record, undoing splits inside the text.
    pub fn split<'r>(&self, record: &Record<'r>, joined: &mut String) -> &'r str {
        let extra = record.len().saturating_sub(self.width);
        let shift = |i: usize| if i > self.text { i + extra } else { i };
        joined.clear();
        for i in self.text..=self.text + extra {
            if i > self.text {
                joined.push(';');
            }
            joined.push_str(record.get(i).unwrap_or(""));
        }
        record.get(shift(self.phone)).unwrap_or("")
    }
}

/// Streams the data file through the builder into `sink`.
pub fn read(
    archive: &mut Archive,
    entry: &EntryRef,
    ctx: &Context<'_>,
    sink: &mut dyn RowSink,
    tally: &mut Tally,
) -> Result<(), Rejection> {
    let file = &entry.name;
    let io = |e| rejection_from_io(e, file);
    let (header, mut records) = open_csv(archive, entry, ctx, "TELRN_LONG")?;
    let columns = Columns::from_header(&header)?;
    let builder = Builder {
        batch: ctx.batch.as_str().into(),
        account: ctx.account,
        zones: ctx.zones,
        now: ctx.now,
        sender: ctx.account.default_sender.clone(),
        validity_minutes: ctx.account.default_validity_minutes,
        default_senddate: None,
        localtime: false,
        file: file.clone(),
    };
    let mut text = String::new();
    while let Some(record) = records.next_record().map_err(io)? {
        if record.is_blank() {
            continue;
        }
        let phone = columns.split(&record, &mut text);
        let row = RowInput {
            line: record.line,
            phone,
            senddate: None,
            text: &text,
        };
        let (outcome, fallback) = builder.build(&row);
        tally.count(&outcome, fallback);
        sink.row(&outcome)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::csv::Records;
    use std::io::BufReader;

    fn columns(header: &str) -> Result<Columns, Rejection> {
        let mut r = Records::new(BufReader::new(header.as_bytes()), 1000, "d.csv");
        let rec = r.next_record().unwrap().unwrap();
        Columns::from_header(&Header::new(&rec, "d.csv"))
    }

    fn split(header: &str, row: &str) -> (String, String) {
        let cols = columns(header).unwrap();
        let mut r = Records::new(BufReader::new(row.as_bytes()), 1000, "d.csv");
        let rec = r.next_record().unwrap().unwrap();
        let mut text = String::new();
        let phone = cols.split(&rec, &mut text).to_owned();
        (phone, text)
    }

    #[test]
    fn by_name_or_by_position() {
        assert_eq!(
            columns("TELRN_LONG;TEXT").unwrap(),
            Columns {
                phone: 0,
                text: 1,
                width: 2
            }
        );
        assert_eq!(
            columns("text;id;telrn_long").unwrap(),
            Columns {
                phone: 2,
                text: 0,
                width: 3
            }
        );
        assert_eq!(
            columns("number;message").unwrap(),
            Columns {
                phone: 0,
                text: 1,
                width: 2
            }
        );
        assert_eq!(
            columns("a;b;c").unwrap(),
            Columns {
                phone: 0,
                text: 2,
                width: 3
            }
        );
        assert!(columns("TELRN_LONG").is_err());
        assert!(columns("TEXT;TEXT").is_err());
    }

    #[test]
    fn unquoted_semicolons_in_the_text_are_joined_back() {
        assert_eq!(
            split("TELRN_LONG;TEXT", "79031234567;Hi; see you;at 5"),
            ("79031234567".into(), "Hi; see you;at 5".into())
        );
        assert_eq!(
            split("TELRN_LONG;TEXT", "79031234567;\"quoted;kept\""),
            ("79031234567".into(), "quoted;kept".into())
        );
        // Text not last: later columns shift by the extra fields.
        assert_eq!(
            split("TEXT;TELRN_LONG", "a;b;79031234567"),
            ("79031234567".into(), "a;b".into())
        );
        // Missing text field: empty text.
        assert_eq!(
            split("TELRN_LONG;TEXT", "79031234567"),
            ("79031234567".into(), "".into())
        );
    }
}
