//! The staged rows of an archive, spooled to an unnamed file while the
//! archive is read and inserted by a back-end at commit (see
//! [`crate::queue::Queue::stage`]): sequential writes, no lock, memory flat.

use std::io::{BufReader, BufWriter, Read, Write};

use chrono::{DateTime, Utc};

use crate::error::Rejection;
use crate::message::schedule::rfc3339;
use crate::message::{Message, RowOutcome};
use crate::process::RowSink;
use crate::queue::internal;

/// The staged rows of one archive: per accepted row, its ten varying values
/// as length-prefixed text or 8-byte integers, in the order of `INSERT_MESSAGE`.
pub struct Spool {
    out: BufWriter<std::fs::File>,
    rows: u64,
    failed: Option<std::io::Error>,
    // Most rows of an archive share their times: format each instant once.
    send_at: TimeText,
    expires_at: TimeText,
}

impl Spool {
    pub fn new(file: std::fs::File) -> Spool {
        Spool {
            out: BufWriter::with_capacity(1 << 20, file),
            rows: 0,
            failed: None,
            send_at: TimeText::default(),
            expires_at: TimeText::default(),
        }
    }

    fn put(&mut self, m: &Message) -> std::io::Result<()> {
        fn text(out: &mut impl Write, s: &str) -> std::io::Result<()> {
            out.write_all(&(s.len() as u32).to_le_bytes())?;
            out.write_all(s.as_bytes())
        }
        let out = &mut self.out;
        text(out, &m.message_id)?;
        out.write_all(&(m.line as i64).to_le_bytes())?;
        text(out, m.phone.digits())?;
        text(out, m.sender.as_str())?;
        text(out, &m.text)?;
        text(out, m.encoding.as_str())?;
        out.write_all(&i64::from(m.segments).to_le_bytes())?;
        text(out, self.send_at.text(m.send_at))?;
        text(out, self.expires_at.text(m.expires_at))?;
        text(out, m.timezone.name())
    }

    pub fn finish(self) -> std::io::Result<(std::fs::File, u64)> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok((file, self.rows))
    }
}

impl RowSink for Spool {
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        if let RowOutcome::Accepted(m) = outcome {
            if let Err(e) = self.put(m) {
                let rejection = internal("spool", &e);
                self.failed = Some(e);
                return Err(rejection);
            }
            self.rows += 1;
        }
        Ok(())
    }
}

/// Runs `process` with a [`Spool`] in an unnamed file in `dir` as its sink:
/// the file (to be read back from the start), its row count, the summary.
pub fn spool_rows(
    dir: &std::path::Path,
    process: &mut dyn FnMut(&mut dyn RowSink) -> crate::process::Summary,
) -> Result<(std::fs::File, u64, crate::process::Summary), Rejection> {
    let file = tempfile::tempfile_in(dir)
        .map_err(|e| internal(&format!("spool in {}", dir.display()), e))?;
    let mut spool = Spool::new(file);
    let summary = process(&mut spool);
    let (file, rows) = spool.finish().map_err(|e| internal("spool", e))?;
    Ok((file, rows, summary))
}

/// Reads [`Spool`] rows back into reused buffers.
pub struct SpoolReader {
    input: BufReader<std::fs::File>,
    /// The text values of the current row, back to back; `ends` delimit them.
    text: String,
    ends: [usize; 8],
    ints: [i64; 2],
}

/// One spooled row, borrowing the reader's buffers.
pub struct SpooledRow<'a> {
    pub message_id: &'a str,
    pub line: i64,
    pub phone: &'a str,
    pub sender: &'a str,
    pub text: &'a str,
    pub encoding: &'a str,
    pub segments: i64,
    pub send_at: &'a str,
    pub expires_at: &'a str,
    pub timezone: &'a str,
}

impl SpoolReader {
    pub fn new(file: std::fs::File) -> SpoolReader {
        SpoolReader {
            input: BufReader::with_capacity(1 << 20, file),
            text: String::new(),
            ends: [0; 8],
            ints: [0; 2],
        }
    }

    pub fn next_row(&mut self) -> std::io::Result<SpooledRow<'_>> {
        let mut bytes = std::mem::take(&mut self.text).into_bytes();
        bytes.clear();
        // message_id, [line], phone, sender, text, encoding, [segments], send_at,
        // expires_at, timezone
        let mut field = 0;
        for slot in 0..10 {
            if slot == 1 || slot == 6 {
                let mut n = [0u8; 8];
                self.input.read_exact(&mut n)?;
                self.ints[usize::from(slot == 6)] = i64::from_le_bytes(n);
                continue;
            }
            let mut n = [0u8; 4];
            self.input.read_exact(&mut n)?;
            let len = u32::from_le_bytes(n) as usize;
            let start = bytes.len();
            bytes.resize(start + len, 0);
            self.input.read_exact(&mut bytes[start..])?;
            self.ends[field] = bytes.len();
            field += 1;
        }
        self.text = String::from_utf8(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let t = &self.text;
        let e = &self.ends;
        Ok(SpooledRow {
            message_id: &t[..e[0]],
            line: self.ints[0],
            phone: &t[e[0]..e[1]],
            sender: &t[e[1]..e[2]],
            text: &t[e[2]..e[3]],
            encoding: &t[e[3]..e[4]],
            segments: self.ints[1],
            send_at: &t[e[4]..e[5]],
            expires_at: &t[e[5]..e[6]],
            timezone: &t[e[6]..e[7]],
        })
    }
}

/// The last instant formatted as RFC 3339 text, kept for the next row.
#[derive(Default)]
struct TimeText(Option<(DateTime<Utc>, String)>);

impl TimeText {
    fn text(&mut self, t: DateTime<Utc>) -> &str {
        if self.0.as_ref().is_none_or(|(at, _)| *at != t) {
            self.0 = Some((t, rfc3339(t)));
        }
        &self.0.as_ref().expect("just set").1
    }
}
