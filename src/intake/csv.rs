//! CSV records (SPEC §3.1): `;`-separated, RFC 4180 quoting, CRLF or LF.
//!
//! Built on `csv-core`'s allocation-free state machine so that this module owns the
//! buffers: a record (which may span lines inside quotes, or never end when a quote
//! is left open) can grow only to `max_record_bytes`, then reading stops with
//! `LIMIT_EXCEEDED`. Each record knows the line it starts on (header = line 1).
//! Empty lines are skipped.

use std::io::{self, BufRead};

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use crate::intake::error::{ErrorCode, Rejection};

pub struct Records<R> {
    input: R,
    reader: Reader,
    /// Unescaped field bytes of the current record, and each field's end offset.
    fields: Vec<u8>,
    ends: Vec<usize>,
    /// Line of the next unread input byte (1-based).
    line: u64,
    /// Line the current record started on.
    record_line: u64,
    max_record_bytes: usize,
    file: String,
    done: bool,
}

/// One record, borrowed from the reader until the next call.
pub struct Record<'a> {
    fields: &'a [u8],
    ends: &'a [usize],
    /// Line this record starts on.
    pub line: u64,
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i`, or `None` past the end. Input was validated UTF-8 and the CSV
    /// machine splits only at ASCII bytes, so every field is valid UTF-8.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(std::str::from_utf8(&self.fields[start..end]).expect("fields are UTF-8"))
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("in range"))
    }

    /// A record whose fields are all empty or blank (`;;;` lines from spreadsheets).
    pub fn is_blank(&self) -> bool {
        self.iter().all(|f| f.trim().is_empty())
    }
}

impl<R: BufRead> Records<R> {
    pub fn new(input: R, max_record_bytes: usize, file: &str) -> Self {
        Records {
            input,
            reader: ReaderBuilder::new().delimiter(b';').build(),
            fields: vec![0; 1024],
            ends: vec![0; 32],
            line: 1,
            record_line: 1,
            max_record_bytes,
            file: file.to_owned(),
            done: false,
        }
    }

    /// The next record, `Ok(None)` at the end of the file.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        if self.done || !self.skip_empty_lines()? {
            self.done = true;
            return Ok(None);
        }
        self.record_line = self.line;
        let (mut nout, mut nend) = (0, 0);
        loop {
            let input = self.input.fill_buf()?;
            let (result, nin, o, e) =
                self.reader
                    .read_record(input, &mut self.fields[nout..], &mut self.ends[nend..]);
            self.line += input[..nin].iter().filter(|&&b| b == b'\n').count() as u64;
            self.input.consume(nin);
            // csv-core's ends count from the record's start, across calls.
            nout += o;
            nend += e;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    self.grow_fields(nout)?;
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= self.max_record_bytes {
                        return Err(self.too_long());
                    }
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                ReadRecordResult::Record => {
                    return Ok(Some(Record {
                        fields: &self.fields[..nout],
                        ends: &self.ends[..nend],
                        line: self.record_line,
                    }));
                }
                ReadRecordResult::End => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    fn grow_fields(&mut self, used: usize) -> io::Result<()> {
        if used >= self.max_record_bytes {
            return Err(self.too_long());
        }
        let len = (self.fields.len() * 2).min(self.max_record_bytes + 1);
        self.fields.resize(len.max(used + 1), 0);
        Ok(())
    }

    fn too_long(&self) -> io::Error {
        io::Error::other(Rejection::new(
            ErrorCode::LimitExceeded,
            format!(
                "{} line {}: the record starting here is longer than {} bytes (is a quote left open?)",
                self.file, self.record_line, self.max_record_bytes
            ),
        ))
    }

    /// Skips blank lines before a record; `false` at the end of the input.
    fn skip_empty_lines(&mut self) -> io::Result<bool> {
        loop {
            let input = self.input.fill_buf()?;
            if input.is_empty() {
                return Ok(false);
            }
            let skip = input
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            self.line += input[..skip].iter().filter(|&&b| b == b'\n').count() as u64;
            let more = skip < input.len();
            self.input.consume(skip);
            if more {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::error::rejection_from_io;

    fn records(input: &str, max: usize) -> Result<Vec<(u64, Vec<String>)>, Rejection> {
        // A tiny buffer exercises records split across reads.
        let reader = io::BufReader::with_capacity(3, input.as_bytes());
        let mut r = Records::new(reader, max, "f.csv");
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().map_err(|e| rejection_from_io(e, "f"))? {
            out.push((rec.line, rec.iter().map(str::to_owned).collect()));
        }
        Ok(out)
    }

    fn v(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn semicolons_quotes_and_line_ends() {
        let got = records("a;b\r\n\"x;y\";\"say \"\"hi\"\"\"\n1;2", 100).unwrap();
        assert_eq!(
            got,
            vec![
                (1, v(&["a", "b"])),
                (2, v(&["x;y", "say \"hi\""])),
                (3, v(&["1", "2"]))
            ]
        );
    }

    #[test]
    fn quoted_newlines_keep_line_numbers_right() {
        let got = records("h\n\"multi\nline\";x\nnext\n", 100).unwrap();
        assert_eq!(got[1], (2, v(&["multi\nline", "x"])));
        assert_eq!(got[2], (4, v(&["next"])));
    }

    #[test]
    fn empty_lines_are_skipped_but_counted() {
        let got = records("h\n\n\r\nrow\n\n", 100).unwrap();
        assert_eq!(got, vec![(1, v(&["h"])), (4, v(&["row"]))]);
    }

    #[test]
    fn commas_are_not_delimiters() {
        let got = records("a,b;c\n", 100).unwrap();
        assert_eq!(got, vec![(1, v(&["a,b", "c"]))]);
    }

    #[test]
    fn an_open_quote_stops_at_the_limit() {
        let input = format!("h\n\"{}", "x\n".repeat(1000));
        let e = records(&input, 64).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn many_empty_fields_are_bounded_too() {
        let e = records(&";".repeat(500), 64).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
    }

    #[test]
    fn blank_records() {
        let input = ";;\n ; \nx;\n";
        let reader = io::BufReader::new(input.as_bytes());
        let mut r = Records::new(reader, 100, "f");
        let mut blank = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            blank.push(rec.is_blank());
        }
        assert_eq!(blank, vec![true, true, false]);
    }
}
