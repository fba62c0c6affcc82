//! The staged rows of an archive, spooled to an unnamed file while the
//! archive is read, and read back from it by a back-end's thread as the file
//! grows ([`spool_pipelined`], [`Tail`]; see [`crate::queue::Queue::stage`]):
//! sequential writes, no lock, memory flat whatever the archive's size.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::intake::RowSink;
use crate::intake::error::{ErrorCode, Rejection};
use crate::intake::message::schedule::TimeText;
use crate::intake::message::{Message, RowOutcome};
use crate::queue::{QueueError, failed};

/// Rows are handed to the file (and to a [`Tail`]) in chunks of this size.
const CHUNK: usize = 256 << 10;

/// The staged rows of one archive. Per accepted row: a byte telling which of
/// the [`changed`] values differ from the row before, `line` and `segments` as
/// 8-byte integers, phone and text, then those changed values; each text as a
/// 4-byte length and its bytes. Most rows of an archive share their batch,
/// sender, encoding and (within a zone) times: written and bound once each.
struct Spool {
    file: std::fs::File,
    buf: Vec<u8>,
    rows: u64,
    failed: Option<std::io::Error>,
    /// Where the tail, on another thread, learns of flushed rows.
    shared: Arc<Shared>,
    // Most rows of an archive share their times: format each instant once.
    send_at: TimeText,
    expires_at: TimeText,
    /// The [`changed`] values of the row before.
    previous: [Vec<u8>; REPEATED],
}

/// Bits of the first byte of a spooled row and of [`SpooledRow::changed`]:
/// which values differ from the row before.
pub mod changed {
    pub const BATCH: u8 = 1;
    pub const SENDER: u8 = 1 << 1;
    pub const ENCODING: u8 = 1 << 2;
    pub const SEND_AT: u8 = 1 << 3;
    pub const EXPIRES_AT: u8 = 1 << 4;
    pub const TIMEZONE: u8 = 1 << 5;
}

/// How many values are written only when they change.
const REPEATED: usize = 6;

fn put_text(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

impl Spool {
    fn new(file: std::fs::File, shared: Arc<Shared>) -> Spool {
        Spool {
            file,
            buf: Vec::with_capacity(CHUNK + 4096),
            rows: 0,
            failed: None,
            shared,
            send_at: TimeText::default(),
            expires_at: TimeText::default(),
            previous: Default::default(),
        }
    }

    fn put(&mut self, m: &Message) {
        let batch = &*m.batch;
        // In the order of the bits of `changed`.
        let values: [&[u8]; REPEATED] = [
            batch.as_bytes(),
            m.sender.as_str().as_bytes(),
            m.encoding.as_str().as_bytes(),
            self.send_at.text(m.send_at).as_bytes(),
            self.expires_at.text(m.expires_at).as_bytes(),
            m.timezone.name().as_bytes(),
        ];
        let mut mask = 0u8;
        for (bit, (value, before)) in values.iter().zip(&mut self.previous).enumerate() {
            if self.rows == 0 || before.as_slice() != *value {
                mask |= 1 << bit;
                before.clear();
                before.extend_from_slice(value);
            }
        }
        let out = &mut self.buf;
        out.push(mask);
        out.extend_from_slice(&(m.line as i64).to_le_bytes());
        out.extend_from_slice(&i64::from(m.segments).to_le_bytes());
        put_text(out, m.phone.digits().as_bytes());
        put_text(out, m.text.as_bytes());
        for (bit, value) in values.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                put_text(out, value);
            }
        }
    }

    /// Writes the buffered rows and tells the tail they are there.
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.buf)?;
        let shared = &self.shared;
        shared
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Release);
        let at = shared.started.elapsed();
        shared.update(|p| {
            p.first.get_or_insert((at, self.rows));
            p.rows = self.rows;
        });
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.flush()
    }
}

impl RowSink for Spool {
    fn row(&mut self, outcome: &RowOutcome) -> Result<(), Rejection> {
        if let RowOutcome::Accepted(m) = outcome {
            self.put(m);
            self.rows += 1;
            if self.buf.len() >= CHUNK {
                if let Err(e) = self.flush() {
                    let rejection =
                        Rejection::new(ErrorCode::InternalError, format!("queue: spool: {e}"));
                    self.failed = Some(e);
                    return Err(rejection);
                }
                // The reader of the tail failed: stop reading the archive.
                if self.shared.progress().stopped {
                    return Err(Rejection::new(
                        ErrorCode::InternalError,
                        "queue: the queue stopped taking rows",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An unnamed file in `dir` (created when missing: the state folder of a
/// PostgreSQL node need not exist before its first archive).
fn spool_file(dir: &std::path::Path) -> Result<std::fs::File, QueueError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::tempfile_in(dir))
        .map_err(|e| failed(&format!("spool in {}", dir.display()), e))
}

/// What the writer of a spool has told its tail so far.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Rows flushed to the file.
    pub rows: u64,
    /// Since the archive began to be read.
    pub elapsed: std::time::Duration,
    /// When the first rows were flushed, and how many: what came before (a
    /// process's first archive loads the phone-number metadata, ~0.1 s) is
    /// not the reading speed.
    pub first: Option<(std::time::Duration, u64)>,
    /// The archive is read and every row flushed.
    pub done: bool,
    /// The archive was rejected as a whole (or could not be spooled): its rows
    /// are void, the tail's reader should stop and undo.
    pub void: bool,
    /// The tail's reader gave up; the writer stops reading the archive.
    pub stopped: bool,
}

impl Progress {
    /// Rows flushed since the first flush.
    pub fn rows_since_first(&self) -> u64 {
        self.first.map_or(0, |(_, rows)| self.rows - rows)
    }

    /// Rows flushed per second since the first flush.
    pub fn rate(&self) -> f64 {
        let Some((at, _)) = self.first else {
            return 0.0;
        };
        let secs = self.elapsed.saturating_sub(at).as_secs_f64();
        self.rows_since_first() as f64 / secs.max(1e-3)
    }
}

/// Shared by a spool's writer and its tail.
struct Shared {
    started: std::time::Instant,
    /// Bytes flushed: the tail reads the file no further.
    bytes: AtomicU64,
    state: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn progress(&self) -> Progress {
        self.snapshot(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `state` with the time elapsed now.
    fn snapshot(&self, state: &Progress) -> Progress {
        Progress {
            elapsed: self.started.elapsed(),
            ..*state
        }
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_all();
    }
}

/// The reading end of a spool that is still being written: rows as they are
/// flushed, from another thread.
pub struct Tail {
    shared: Arc<Shared>,
    reader: SpoolReader<TailFile>,
    read: u64,
    /// Rows known to be flushed (asked again only when all are read).
    available: u64,
}

impl Tail {
    /// Blocks until `ready` holds for the writer's progress (checked at every
    /// flush) or the writer is done; returns the progress then.
    pub fn wait_until(&self, ready: impl Fn(&Progress) -> bool) -> Progress {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let p = self.shared.snapshot(&state);
            if p.done || p.void || ready(&p) {
                return p;
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next row, waiting for the writer when needed; `None` once every row
    /// is read, or at once when the rows turned void.
    pub fn next_row(&mut self) -> std::io::Result<Option<SpooledRow<'_>>> {
        if self.read == self.available {
            let read = self.read;
            let p = self.wait_until(|p| p.rows > read);
            if p.void || p.rows == read {
                return Ok(None);
            }
            self.available = p.rows;
        }
        self.read += 1;
        self.reader.next_row().map(Some)
    }

    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.read
    }

    /// Whether the rows turned void (the archive was rejected as a whole).
    pub fn void(&self) -> bool {
        self.shared.progress().void
    }
}

/// The spool file read from its own offset, never past the flushed bytes.
struct TailFile {
    file: std::fs::File,
    offset: u64,
    /// Where the part of the file not yet given back begins.
    released: u64,
    shared: Arc<Shared>,
}

/// Read spool bytes are given back in steps of this size: the spool then
/// takes disk and page cache for the rows not inserted yet, not for the
/// whole archive (~140 bytes a row: 700 MB for 5M rows).
const RELEASE_STEP: u64 = 4 << 20;

impl Read for TailFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let flushed = self.shared.bytes.load(Ordering::Acquire);
        let n = buf.len().min((flushed - self.offset) as usize);
        let n = self.file.read_at(&mut buf[..n], self.offset)?;
        self.offset += n as u64;
        if self.offset - self.released >= RELEASE_STEP {
            let end = self.offset & !(RELEASE_STEP - 1);
            release(&self.file, self.released, end - self.released);
            self.released = end;
        }
        Ok(n)
    }
}

/// Frees the disk blocks and page cache of bytes read for good (a hole in
/// the file); whether the file system could.
fn release(file: &std::fs::File, offset: u64, len: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor and a plain range; only frees file
        // blocks. A file system without holes keeps the bytes, as before.
        unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            ) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
        false
    }
}

/// Runs `process` on this thread with a [`Spool`] as its sink while `consume`
/// reads the spooled rows on another as they are flushed (a [`Tail`]), so the
/// archive is read and its rows stored at the same time with memory flat: the
/// file is the buffer between the two. Returns the summary and what `consume`
/// returned; `consume` sees the rows turn void when the archive is rejected as
/// a whole, and the archive stops being read when `consume` returns early.
pub fn spool_pipelined<T: Send>(
    dir: &std::path::Path,
    process: &mut dyn FnMut(&mut dyn RowSink) -> crate::intake::Summary,
    consume: impl FnOnce(&mut Tail) -> T + Send,
) -> Result<(crate::intake::Summary, T), QueueError> {
    let file = spool_file(dir)?;
    let read_end = file.try_clone().map_err(|e| failed("spool", e))?;
    let shared = Arc::new(Shared {
        started: std::time::Instant::now(),
        bytes: AtomicU64::new(0),
        state: Mutex::new(Progress {
            rows: 0,
            elapsed: Default::default(),
            first: None,
            done: false,
            void: false,
            stopped: false,
        }),
        changed: Condvar::new(),
    });
    let mut tail = Tail {
        shared: shared.clone(),
        reader: SpoolReader::new(TailFile {
            file: read_end,
            offset: 0,
            released: 0,
            shared: shared.clone(),
        }),
        read: 0,
        available: 0,
    };
    let mut spool = Spool::new(file, shared.clone());
    std::thread::scope(|scope| {
        let consumer = std::thread::Builder::new()
            .name("smsdrop-queue".into())
            .spawn_scoped(scope, || {
                let out = consume(&mut tail);
                tail.shared.update(|p| p.stopped = true);
                out
            })
            .map_err(|e| failed("queue thread", e))?;
        // Should `process` panic, the rows turn void on the way out, so that
        // the consumer ends and the scope can unwind instead of waiting on it.
        let mut ending = Ending {
            shared: &shared,
            void: true,
        };
        let summary = process(&mut spool);
        let finished = spool.finish();
        let read_secs = shared.started.elapsed().as_secs_f64();
        ending.void = summary.error.is_some() || finished.is_err();
        drop(ending);
        let out = consumer
            .join()
            .map_err(|_| failed("queue thread", "panicked"))?;
        tracing::debug!(
            read_secs,
            stored_secs = shared.started.elapsed().as_secs_f64(),
            rows = shared.progress().rows,
            "rows staged"
        );
        finished.map_err(|e| failed("spool", e))?;
        Ok((summary, out))
    })
}

/// Tells the tail the writer is done when dropped: void unless the writer
/// says otherwise, so that a panic while reading voids the rows too.
struct Ending<'a> {
    shared: &'a Shared,
    void: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        let void = self.void;
        self.shared.update(|p| {
            p.done = true;
            p.void = void;
        });
    }
}

/// Reads [`Spool`] rows back: parsed where they lie in one buffer, no copy
/// per value but for the repeated ones, which outlive a refill of the buffer.
struct SpoolReader<R: Read> {
    input: R,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The [`changed`] values of the latest row.
    repeated: [Vec<u8>; REPEATED],
}

/// One spooled row, borrowing the reader's buffers; text values as UTF-8.
pub struct SpooledRow<'a> {
    /// Which of the [`changed`] values differ from the row before (all of them
    /// for the first row).
    pub changed: u8,
    pub line: i64,
    pub segments: i64,
    pub phone: &'a [u8],
    pub text: &'a [u8],
    pub batch: &'a [u8],
    pub sender: &'a [u8],
    pub encoding: &'a [u8],
    pub send_at: &'a [u8],
    pub expires_at: &'a [u8],
    pub timezone: &'a [u8],
}

/// Where the row-specific values of a row lie in the reader's buffer.
struct Parsed {
    changed: u8,
    line: i64,
    segments: i64,
    phone: std::ops::Range<usize>,
    text: std::ops::Range<usize>,
    /// Bytes of the whole row.
    len: usize,
}

/// Reads values off the front of a byte slice: `None` past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<std::ops::Range<usize>> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())?;
        Some(std::mem::replace(&mut self.at, end)..end)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let range = self.take(N)?;
        Some(self.bytes[range].try_into().expect("N bytes"))
    }

    /// A length-prefixed text.
    fn text(&mut self) -> Option<std::ops::Range<usize>> {
        let len = u32::from_le_bytes(self.array()?);
        self.take(len as usize)
    }
}

/// Parses the row at the start of `bytes`, copying its changed repeated values
/// into `repeated`; `None` when the row is not all there yet (nothing copied).
fn parse(bytes: &[u8], repeated: &mut [Vec<u8>; REPEATED]) -> Option<Parsed> {
    let mut c = Cursor { bytes, at: 0 };
    let [changed] = c.array()?;
    let line = i64::from_le_bytes(c.array()?);
    let segments = i64::from_le_bytes(c.array()?);
    let phone = c.text()?;
    let text = c.text()?;
    let mut values: [std::ops::Range<usize>; REPEATED] = Default::default();
    for (bit, value) in values.iter_mut().enumerate() {
        if changed & (1 << bit) != 0 {
            *value = c.text()?;
        }
    }
    // The whole row is there: only now the repeated values change.
    for (bit, value) in values.into_iter().enumerate() {
        if changed & (1 << bit) != 0 {
            repeated[bit].clear();
            repeated[bit].extend_from_slice(&bytes[value]);
        }
    }
    Some(Parsed {
        changed,
        line,
        segments,
        phone,
        text,
        len: c.at,
    })
}

impl<R: Read> SpoolReader<R> {
    fn new(input: R) -> SpoolReader<R> {
        SpoolReader {
            input,
            buf: vec![0; 1 << 20],
            start: 0,
            end: 0,
            repeated: Default::default(),
        }
    }

    /// Reads more bytes after the unread ones (moved to the front first; the
    /// buffer grows when one row does not fit).
    fn fill(&mut self) -> std::io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.input.read(&mut self.buf[self.end..])? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.end += n;
                Ok(())
            }
        }
    }

    fn next_row(&mut self) -> std::io::Result<SpooledRow<'_>> {
        let row = loop {
            match parse(&self.buf[self.start..self.end], &mut self.repeated) {
                Some(row) => break row,
                None => self.fill()?,
            }
        };
        let base = self.start;
        self.start += row.len;
        let at = |r: std::ops::Range<usize>| &self.buf[base + r.start..base + r.end];
        let r = &self.repeated;
        Ok(SpooledRow {
            changed: row.changed,
            line: row.line,
            segments: row.segments,
            phone: at(row.phone),
            text: at(row.text),
            batch: &r[0],
            sender: &r[1],
            encoding: &r[2],
            send_at: &r[3],
            expires_at: &r[4],
            timezone: &r[5],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::message::segments::SmsEncoding;
    use crate::intake::phone::Msisdn;
    use crate::intake::sender::Sender;
    use crate::intake::{Status, Summary};
    use chrono::{TimeZone, Utc};

    /// Rows whose shared values change now and then, and a text longer than
    /// the reader's buffer.
    fn rows() -> Vec<Message> {
        let zones = [chrono_tz::Europe::Moscow, chrono_tz::Asia::Vladivostok];
        (2..3000u64)
            .map(|line| {
                let zone = zones[(line / 7 % 2) as usize];
                let at = Utc
                    .timestamp_opt(1_900_000_000 + (line / 5 * 3600) as i64, 0)
                    .unwrap();
                let text = match line {
                    100 => "д".repeat(700_000),
                    _ => format!("text {line}"),
                };
                Message {
                    batch: if line < 2500 {
                        "g_20261123070000"
                    } else {
                        "g_x"
                    }
                    .into(),
                    line,
                    phone: Msisdn::parse(&format!("7903{:07}", line)).unwrap(),
                    sender: Sender::parse(if line % 11 == 0 { "OTHER" } else { "TESTSMS" })
                        .unwrap(),
                    text,
                    encoding: if line % 3 == 0 {
                        SmsEncoding::Ucs2
                    } else {
                        SmsEncoding::Gsm7
                    },
                    segments: (line % 4) as u32 + 1,
                    send_at: at,
                    expires_at: at + chrono::Duration::hours(24),
                    timezone: zone,
                }
            })
            .collect()
    }

    /// Rows read back are given back to the file system as the tail goes, and
    /// the rows not read yet stay whole.
    #[test]
    fn read_rows_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let probe = tempfile::tempfile_in(dir.path()).unwrap();
        probe.write_all_at(&[1; 1 << 16], 0).unwrap();
        if !release(&probe, 0, 1 << 16) {
            eprintln!("skipped: the file system of {:?} has no holes", dir.path());
            return;
        }
        // ~20 MiB in 40 rows of 0.5 MiB each.
        let messages: Vec<Message> = rows()
            .into_iter()
            .take(40)
            .enumerate()
            .map(|(i, mut m)| {
                m.text = format!("{i:02}").repeat(256 << 10);
                m
            })
            .collect();
        let (back, spooled, allocated) = spool_all(dir.path(), &messages, |tail| {
            let mut back = Vec::new();
            while let Some(row) = tail.next_row().unwrap() {
                back.push(row.text.to_vec());
            }
            let file = &tail.reader.input.file;
            let allocated = std::os::unix::fs::MetadataExt::blocks(&file.metadata().unwrap());
            (
                back,
                tail.shared.bytes.load(Ordering::Acquire),
                allocated * 512,
            )
        });
        assert_eq!(back.len(), messages.len());
        for (m, text) in messages.iter().zip(back) {
            assert!(text == m.text.as_bytes(), "line {}", m.line);
        }
        assert!(spooled > 20 << 20, "{spooled}");
        assert!(
            allocated <= RELEASE_STEP + CHUNK as u64,
            "{allocated} of {spooled} bytes still allocated"
        );
    }

    /// Spools `messages` as accepted rows while `consume` reads them back.
    fn spool_all<T: Send>(
        dir: &std::path::Path,
        messages: &[Message],
        consume: impl FnOnce(&mut Tail) -> T + Send,
    ) -> T {
        let rows = messages.len() as u64;
        let (_, out) = spool_pipelined(
            dir,
            &mut |sink| {
                for m in messages {
                    sink.row(&RowOutcome::Accepted(m.clone())).unwrap();
                }
                Summary {
                    batch: "g_20261123070000".into(),
                    status: Status::Accepted,
                    format: None,
                    rows,
                    accepted: rows,
                    rejected: 0,
                    error: None,
                    received_at: Utc::now(),
                    processed_at: Utc::now(),
                }
            },
            consume,
        )
        .unwrap();
        out
    }

    #[test]
    fn rows_come_back_as_spooled_with_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let messages = rows();
        let back = spool_all(dir.path(), &messages, |tail| {
            let mut back = Vec::new();
            let mut before: Option<[Vec<u8>; REPEATED]> = None;
            while let Some(row) = tail.next_row().unwrap() {
                let values = [
                    row.batch,
                    row.sender,
                    row.encoding,
                    row.send_at,
                    row.expires_at,
                    row.timezone,
                ]
                .map(<[u8]>::to_vec);
                // `changed` has exactly the bits of the values that differ.
                let mut want = 0;
                for (bit, value) in values.iter().enumerate() {
                    if before.as_ref().is_none_or(|b| b[bit] != *value) {
                        want |= 1 << bit;
                    }
                }
                assert_eq!(row.changed, want, "line {}", row.line);
                back.push((
                    row.line,
                    row.segments,
                    String::from_utf8(row.phone.to_vec()).unwrap(),
                    String::from_utf8(row.text.to_vec()).unwrap(),
                    values.clone().map(|v| String::from_utf8(v).unwrap()),
                ));
                before = Some(values);
            }
            back
        });
        assert_eq!(back.len(), messages.len());
        for (m, (line, segments, phone, text, values)) in messages.iter().zip(back) {
            assert_eq!(line, m.line as i64);
            assert_eq!(segments, i64::from(m.segments));
            assert_eq!(phone, m.phone.digits());
            assert_eq!(text, m.text);
            let batch = &*m.batch;
            assert_eq!(
                values,
                [
                    batch.to_owned(),
                    m.sender.as_str().to_owned(),
                    m.encoding.as_str().to_owned(),
                    crate::intake::message::schedule::rfc3339(m.send_at),
                    crate::intake::message::schedule::rfc3339(m.expires_at),
                    m.timezone.name().to_owned(),
                ]
            );
        }
    }
}
